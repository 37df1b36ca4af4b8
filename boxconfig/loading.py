"""A configuration file (YAML or JSON) -> a checked :class:`~boxconfig.config.BoxConfig`, or one
:class:`~boxconfig.problems.ConfigError` naming every problem, each on a line with its key path.

    config = load_config("/etc/ssd-edge/box.yaml", flag_defaults(camera_parser))

The text is read as data only (runtimes/data_file.py: no YAML aliases or tags, bounded size and nesting),
then checked against the schema, the cross-references and the zones, all before anything starts.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Dict, Mapping, Union

from boxconfig.config import BoxConfig, from_data
from boxconfig.cross_checks import cross_problems
from boxconfig.defaults import with_defaults
from boxconfig.gating_section import gating_problems
from boxconfig.problems import raise_if_any
from boxconfig.recording_section import recording_problems
from boxconfig.schema import box_schema
from boxconfig.validation import schema_problems
from boxconfig.zone_sections import check_zone_sections
from runtimes.data_file import parse_json, parse_yaml
from runtimes.text_file import read_text_file

MAX_FILE_BYTES = 1024 * 1024  # 256 streams with inline zones fit; a log file or a video given by mistake does not
MAX_DEPTH = 32  # the format nests about 12 deep (streams -> [i] -> zones -> zones -> [i] -> polygon -> [point])
YAML_SUFFIXES = (".yaml", ".yml")


def load_config(path: Union[str, Path], defaults: Mapping[str, Any]) -> BoxConfig:
    path = Path(path)
    return check_config(read_config_data(path), str(path), defaults, path.parent)


def read_config_data(path: Union[str, Path]) -> Any:
    """The file's data, as written (no defaults); the format by the suffix: .yaml/.yml YAML, else JSON."""
    label = str(path)
    text = read_text_file(path, label, MAX_FILE_BYTES, "give the path of a configuration file (YAML or JSON, see "
                                                       "docs/configuration.md)")
    parse = parse_yaml if Path(path).suffix.lower() in YAML_SUFFIXES else parse_json
    return parse(text, label, MAX_DEPTH)


def check_config(data: Any, label: str, defaults: Mapping[str, Any], base_dir: Path = Path(".")) -> BoxConfig:
    """``data`` (a file's, or one edited through the API) checked and with its defaults, as dataclasses;
    ConfigError with every problem. ``label`` starts each line (the file's name)."""
    return from_data(checked_data(data, label, defaults, base_dir), base_dir)


def checked_data(data: Any, label: str, defaults: Mapping[str, Any], base_dir: Path) -> Dict[str, Any]:
    schema = box_schema(dict(defaults))
    problems = schema_problems(data, schema, label) + cross_problems(data, label)
    if isinstance(data, dict):
        problems += check_zone_sections(data, label, base_dir)
        problems += gating_problems(data, label, defaults) + recording_problems(data, label, defaults, base_dir)
    raise_if_any(problems)
    return with_defaults(data, schema)
