"""The configuration file's JSON Schema (draft 7), with the camera flags' defaults in it.

It is data: the validator reads it (:mod:`boxconfig.validation`), ``python -m boxconfig schema`` prints it for an
editor that checks YAML or JSON as it is typed. An ``x-message`` is this project's text for a value the rule
refuses (a pattern says nothing a user can act on).
"""

from __future__ import annotations

from typing import Any, Dict, Optional, Sequence

from boxconfig.fields import CSI, MODEL, MOTION, OUTPUTS, RECORDING, SINKS, STREAM, TRACKING, WEBVIEW, fields_of
from streams.config import MAX_SOURCE_CHARS, MAX_STREAMS, NAME_PATTERN
from streams.gating import GateOptions
from webview.cli import DEFAULT_HOST

MAX_MODELS = 16  # each is a detector in memory; more than a box runs side by side
NAME_RULE = "use letters, digits, '_', '.', '-' (up to 64, starting with a letter or digit)"
ZONES = {"anyOf": [{"type": "null"}, {"type": "string", "minLength": 1, "maxLength": 4096}, {"type": "object"}],
         "default": None,
         "x-message": "give a zones file's path, or the zones and lines themselves (see docs/configuration.md)"}


def box_schema(defaults: Dict[str, Any]) -> Dict[str, Any]:
    """The schema, each flag's setting defaulting to ``defaults[dest]`` (:func:`boxconfig.defaults.flag_defaults`)."""
    return {
        "$schema": "http://json-schema.org/draft-07/schema#",
        "title": "ssd-edge box configuration",
        "type": "object",
        "additionalProperties": False,
        "required": ["models", "streams"],
        "properties": {
            "models": {"type": "object", "minProperties": 1, "maxProperties": MAX_MODELS,
                       "additionalProperties": _model(defaults)},
            "streams": {"type": "array", "minItems": 1, "maxItems": MAX_STREAMS, "items": _stream(defaults)},
            "zones": ZONES,
            "sinks": _section(SINKS, defaults, {"mqtt": _MQTT}),
            "webview": _section(WEBVIEW, defaults, {
                "bind": {"type": "string", "minLength": 1, "maxLength": 255, "default": DEFAULT_HOST},
                "port": {"type": ["integer", "null"], "minimum": 0, "maximum": 65535, "default": None}}),
            "outputs": _section(OUTPUTS, defaults),
            "csi": _section(CSI, defaults),
            "recording": _section(RECORDING, defaults),
        },
    }


_MQTT = {"type": ["object", "null"], "additionalProperties": False, "required": ["broker"], "default": None,
         "properties": {"broker": {"type": "string", "minLength": 1, "maxLength": 1024},
                        "username": {"type": ["string", "null"], "maxLength": 1024, "default": None},
                        "password": {"type": ["string", "null"], "maxLength": 1024, "default": None}}}
_NAME = {"type": "string", "pattern": f"^{NAME_PATTERN.pattern}$", "x-message": NAME_RULE}


def _model(defaults: Dict[str, Any]) -> Dict[str, Any]:
    return _section(MODEL, defaults, {
        "path": {"type": "string", "minLength": 1, "maxLength": 4096},
        "options": {"type": "object", "maxProperties": 64, "default": {},
                    "additionalProperties": {"type": ["string", "number", "boolean", "null"]}},
    }, required=("path",), default=None)


def _stream(defaults: Dict[str, Any]) -> Dict[str, Any]:
    return _section(STREAM, defaults, {
        "name": _NAME,
        "source": {"type": "string", "minLength": 1, "maxLength": MAX_SOURCE_CHARS, "pattern": "^[^\\x00-\\x1f]*$",
                   "x-message": "write the source as one line of plain text (no control characters)"},
        "model": {"type": "string", "minLength": 1},
        "zones": ZONES,
        "keep_classes": {"type": ["array", "null"], "minItems": 1, "maxItems": 1000, "default": None,
                         "items": {"type": "string", "minLength": 1, "maxLength": 256}},
        "tracking": _section(TRACKING, defaults),
        "interval": {"type": "integer", "default": GateOptions.interval},  # (its range: GateOptions' check)
        "motion": _section(MOTION, defaults),
        "record": {"type": "boolean", "default": True},  # recorded when recording.dir is set
    }, required=("name", "source"), default=None)


def _section(section: str, defaults: Dict[str, Any], extra: Optional[Dict[str, Any]] = None,
             required: Sequence[str] = (), default: Any = "{}") -> Dict[str, Any]:
    """An object of the flag settings of ``section`` (each with its flag's default) and ``extra`` properties.
    ``default``: what the object itself defaults to ("{}": an empty object, filled with its own defaults)."""
    properties = dict(extra or {})
    for field in fields_of(section):
        properties[field.key] = dict(field.schema, default=defaults[field.dest])
    schema: Dict[str, Any] = {"type": "object", "additionalProperties": False, "properties": properties}
    if required:
        schema["required"] = list(required)
    if default == "{}":
        schema["default"] = {}
    return schema
