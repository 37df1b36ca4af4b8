"""Flags override the file: the camera's flags that the user gave (not their defaults) set the same settings
in the file's data, and the result is checked as a whole, so a bad flag is reported like a bad key (with
``(set by --flag)`` after it).

    given = given_flags(parser, argv)                           # {dest: value} of the flags on the command line
    config = effective_config(file_data, given, "box.yaml", flag_defaults(parser), base_dir)

Without a file, :func:`effective_config` of ``None`` makes the configuration from the flags alone (one model,
``--model``; the streams of ``--source``/``--sources``), so the camera runs one way whatever it was given.
"""

from __future__ import annotations

import argparse
import copy
import os
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Tuple

from boxconfig.config import BoxConfig, from_data
from boxconfig.defaults import with_defaults
from boxconfig.fields import FIELDS, MODEL, MOTION, STREAM, TRACKING
from boxconfig.loading import checked_data
from boxconfig.problems import ConfigError
from boxconfig.schema import box_schema
from runtimes.errors import UserError

PATH_FLAGS = ("model", "zones", "events", "output", "json", "sources", "record")  # relative to where the command runs
_ONE_MODEL = ("model", "runtime", "source", "sources")  # flags that say nothing of which model they mean


def given_flags(parser: argparse.ArgumentParser, argv: Optional[List[str]]) -> Dict[str, Any]:
    """{dest: value} of the options on the command line only: a flag left at its default must not override the
    file (argparse fills every default in; a copy of the parser without defaults does not)."""
    bare = copy.deepcopy(parser)
    for action in bare._actions:  # argparse has no public list of its options
        action.default = argparse.SUPPRESS
        action.required = False
    return vars(bare.parse_args(argv))


def effective_config(file_data: Any, given: Mapping[str, Any], label: str, defaults: Mapping[str, Any],
                     base_dir: Path = Path(".")) -> BoxConfig:
    """The file's data with the ``given`` flags over it, checked: every problem of both in one ConfigError."""
    schema = box_schema(dict(defaults))
    if file_data is None:
        file_data, label = {"models": {}, "streams": []}, "flags"
    else:  # the file's own problems first, as they are written (the flags then go into a sound structure)
        checked_data(file_data, label, defaults, base_dir)
    data, set_by = apply_flags(with_defaults(file_data, schema), given, schema)
    try:
        return from_data(checked_data(data, label, defaults, base_dir), base_dir)
    except ConfigError as exc:
        raise ConfigError([_naming_flag(text, label, set_by) for text in exc.lines]) from None


def apply_flags(data: Dict[str, Any], given: Mapping[str, Any], schema: Dict[str, Any]
                ) -> Tuple[Dict[str, Any], Dict[str, str]]:
    """``data`` (with its defaults) with the flags' values in; and {key path: the flag that set it}."""
    data = copy.deepcopy(data)
    set_by: Dict[str, str] = {}
    values = {dest: _plain(dest, value) for dest, value in given.items()}
    _one_model_flags(data, values, set_by)
    data = with_defaults(data, schema)  # (a model or streams the flags made)
    for field in FIELDS:
        if field.dest not in values or field.dest == "runtime":
            continue
        for path, holder in _holders(data, field.section):
            holder[field.key] = values[field.dest]
            set_by[f"{path}.{field.key}" if path else field.key] = field.flag
    _shaped_flags(data, values, set_by)
    return data, set_by


def _plain(dest: str, value: Any) -> Any:
    if dest in PATH_FLAGS and value is not None and "://" not in str(value):
        return os.path.abspath(str(value))
    return value


def _holders(data: Dict[str, Any], section: str) -> List[Tuple[str, Dict[str, Any]]]:
    if section == MODEL:
        return [(f"models.{name}", model) for name, model in data["models"].items()]
    if section in (STREAM, TRACKING, MOTION):
        inner = section if section != STREAM else ""
        return [(f"streams[{i}]{'.' + inner if inner else ''}", s[inner] if inner else s)
                for i, s in enumerate(data["streams"])]
    return [(section, data.setdefault(section, {}))]


def _one_model_flags(data: Dict[str, Any], values: Dict[str, Any], set_by: Dict[str, str]) -> None:
    """--model and --runtime set the one model (made when the file has none); --source and --sources replace the
    streams, which use it. With several models in the file they would be ambiguous: a UserError."""
    used = [f"--{dest}" for dest in _ONE_MODEL if dest in values]
    if not used:
        return
    if len(data["models"]) > 1:
        raise UserError(f"{used[0]}: the configuration has {len(data['models'])} models "
                        f"({', '.join(data['models'])}); set models and streams in the file")
    if not data["models"]:
        if "model" not in values:
            raise UserError("give --model or --config FILE")
        data["models"]["model"] = {}
    name, model = next(iter(data["models"].items()))
    for dest, key in (("model", "path"), ("runtime", "runtime")):
        if dest in values:
            model[key] = values[dest]
            set_by[f"models.{name}.{key}"] = f"--{dest}"
    if "source" in values or "sources" in values or not data["streams"]:
        from streams.config import stream_specs

        specs = stream_specs(values.get("source") or [], values.get("sources") and Path(values["sources"]))
        data["streams"] = [{"name": s.name, "source": s.source, "model": name} for s in specs]
        set_by["streams"] = "--source" if "source" in values else "--sources"


def _shaped_flags(data: Dict[str, Any], values: Dict[str, Any], set_by: Dict[str, str]) -> None:
    """Flags whose values the file writes in another shape."""
    if "keep_classes" in values:
        keep = [c.strip() for c in (values["keep_classes"] or "").split(",") if c.strip()] or None
        for index, stream in enumerate(data["streams"]):
            stream["keep_classes"] = keep
            set_by[f"streams[{index}].keep_classes"] = "--keep-classes"
    if "zones" in values:
        data["zones"], set_by["zones"] = values["zones"], "--zones"
    if "interval" in values:  # N for every stream, NAME=N for one: each stream's interval
        from streams.gating import gate_options

        gating = gate_options(values["interval"] or [])
        gating.check_streams([s["name"] for s in data["streams"]])
        every = any("=" not in text for text in values["interval"] or [])  # else only the streams named
        for index, stream in enumerate(data["streams"]):
            if every or stream["name"] in dict(gating.per_stream):
                stream["interval"] = gating.interval_of(stream["name"])
                set_by[f"streams[{index}].interval"] = "--interval"
    if "mqtt" in values:
        mqtt = data["sinks"].get("mqtt") or {}
        data["sinks"]["mqtt"] = dict(mqtt, broker=values["mqtt"])
        set_by["sinks.mqtt"] = "--mqtt"
    if "serve" in values:
        from webview.cli import parse_host_port

        data["webview"]["bind"], data["webview"]["port"] = parse_host_port(values["serve"])
        set_by["webview.bind"] = set_by["webview.port"] = "--serve"


def _naming_flag(text: str, label: str, set_by: Mapping[str, str]) -> str:
    """A problem's line, with the flag that set the value it is about."""
    path = text[len(label) + 2:].split(": ", 1)[0] if text.startswith(label + ": ") else ""
    flag = next((f for key, f in set_by.items() if path == key or path.startswith((key + ".", key + "["))), None)
    return f"{text} (set by {flag})" if flag else text
