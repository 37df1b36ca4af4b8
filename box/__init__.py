"""The box run as a service (issue #27): the camera's streams grouped by model from a configuration
(boxconfig/), each model a detector and scheduler of its own, changed while it runs through
:class:`box.control.BoxControl` (the web view's /api routes, SIGHUP). See docs/configuration.md."""
