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
    """The section's one problem (the first the flags' check finds) as a line with its key path; the folder
    probed, not made; class triggers not yet matched (the model is not loaded). Wrong types: the schema's."""
    section = data.get("recording")
    if not isinstance(section, dict) or not isinstance(section.get("dir"), str):
        return []
    values = {f.key: section.get(f.key, defaults[f.dest]) for f in fields_of(RECORDING)}
    numbers = [values[k] for k in ("pre_seconds", "post_seconds", "retain_days", "retain_gb")]
    if not isinstance(values["on"], list) or not all(isinstance(v, str) for v in values["on"]) \
            or not all(v is None or (isinstance(v, (int, float)) and not isinstance(v, bool)) for v in numbers):
        return []
    try:
        _parse(values, str(base_dir / values["dir"]), None)
    except UserError as exc:
        return [at_key(KeyPath(label).key("recording"), str(exc), _KEYS)]
    return []


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
        parse_triggers(config.recording.on, class_names)
    except UserError as exc:
        raise ConfigError([at_key(KeyPath(label).key("recording"), str(exc), _KEYS)]) from None


def _parse(values: Mapping[str, Any], folder: str, class_names: Optional[Sequence[str]]) -> Any:
    from recording.options import parse_record_options

    return parse_record_options(folder, values["on"], values["pre_seconds"], values["post_seconds"],
                                values["retain_days"], values["retain_gb"], class_names)
