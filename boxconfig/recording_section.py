"""The ``recording`` section (evidence clips, recording/): checked by the code that checks the ``--record*``
flags (recording/options.py), so the file and the flags take the same values, and made into the
:class:`~recording.options.RecordOptions` the box records with."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Sequence

from boxconfig.config import BoxConfig
from boxconfig.fields import RECORDING, fields_of
from boxconfig.flag_messages import at_key
from boxconfig.problems import ConfigError
from runtimes.data_path import KeyPath
from runtimes.errors import UserError

_KEYS = {field.flag: field.key for field in fields_of(RECORDING)}


def recording_problems(data: Dict[str, Any], label: str, defaults: Mapping[str, Any], base_dir: Path) -> List[str]:
    """Each key the flags' check refuses, as a line with its key path (each checked with the others at their
    defaults, so every problem is found at once); the folder probed, not made; class triggers not yet matched
    (no model is loaded). Wrong types: the schema's lines."""
    section = data.get("recording")
    if not isinstance(section, dict) or not isinstance(section.get("dir"), str):
        return []
    at = KeyPath(label).key("recording")
    values = {f.key: defaults[f.dest] for f in fields_of(RECORDING)}
    folder = str(base_dir / section["dir"])
    problems: List[str] = []
    for key in values:
        value = section.get(key, values[key])
        if key == "dir" or not _typed(key, value):
            continue
        try:
            _parse(dict(values, **{key: value}), folder, None)
        except UserError as exc:
            problems.append(at_key(at, str(exc), _KEYS))
    return list(dict.fromkeys(problems))  # (a bad folder is said once)


def _typed(key: str, value: Any) -> bool:
    if key == "record_on":
        return isinstance(value, list) and all(isinstance(v, str) for v in value)
    return value is None or (isinstance(value, (int, float)) and not isinstance(value, bool))


def record_options(config: BoxConfig, label: str) -> Any:
    """The checked :class:`~recording.options.RecordOptions` of ``config.recording`` (None without a ``dir``),
    the folder made, class triggers not yet matched (:func:`check_trigger_classes` once the models are
    loaded). A ConfigError with the key path when a value is refused."""
    from recording.options import check_folder

    section = config.recording
    if section.dir is None:
        return None
    try:
        options = _parse(vars(section), config.resolve(section.dir), None)
        check_folder(options.folder)
    except UserError as exc:
        raise ConfigError([at_key(KeyPath(label).key("recording"), str(exc), _KEYS)]) from None
    return options


def check_trigger_classes(config: BoxConfig, label: str, class_names: Sequence[str]) -> None:
    """Each ``class:NAME`` trigger names a class of a model of the box (``class_names``: all of theirs)."""
    from recording.options import parse_triggers

    try:
        parse_triggers(config.recording.record_on, class_names)
    except UserError as exc:
        raise ConfigError([at_key(KeyPath(label).key("recording"), str(exc), _KEYS)]) from None


def _parse(values: Mapping[str, Any], folder: str, class_names: Optional[Sequence[str]]) -> Any:
    from recording.options import parse_record_options

    return parse_record_options(folder, values["record_on"], values["pre_seconds"], values["post_seconds"],
                                values["retain_days"], values["retain_gb"], class_names)
