"""The box's configuration file (issue #27): models, streams, zones, sinks and the web view in one YAML or JSON
file, checked before anything starts (every problem at once, one line each with its key path), the camera's
flags over it, shown with its secrets redacted, written back atomically, and compared for a reload.
See docs/configuration.md.

    from boxconfig.defaults import flag_defaults
    from boxconfig.flags import effective_config, given_flags
    from boxconfig.loading import read_config_data
    defaults = flag_defaults(parser)
    config = effective_config(read_config_data(path), given_flags(parser, argv), str(path), defaults, path.parent)
"""
