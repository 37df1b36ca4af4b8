"""Defaults: the camera flags' own (read from its argument parser, so each default has one home), and the walk
that fills them into a file's data or leaves them out of it (a written-back file keeps only what differs)."""

from __future__ import annotations

import argparse
import copy
from typing import Any, Dict, Iterator, Tuple

from boxconfig.fields import FIELDS, FLAG_DEFAULT


def flag_defaults(parser: argparse.ArgumentParser) -> Dict[str, Any]:
    """{flag dest: its default} for every setting of :data:`boxconfig.fields.FIELDS`, from the camera's parser
    (or the row's own ``default``, where the flag's None stands for a library's default). A dest the parser
    lacks is a RuntimeError: the camera and this table disagree (a bug, not a user's error)."""
    known = {action.dest for action in parser._actions}  # argparse has no public list of its options
    missing = sorted({f.dest for f in FIELDS} - known)
    if missing:
        raise RuntimeError(f"the camera's parser has no option for {', '.join(missing)}; update boxconfig/fields.py")
    return {f.dest: _plain(parser.get_default(f.dest)) if f.default is FLAG_DEFAULT else copy.deepcopy(f.default)
            for f in FIELDS}


def _plain(value: Any) -> Any:
    """A default as the file writes it (a Path default would be its text)."""
    return value if value is None or isinstance(value, (bool, int, float, str)) else str(value)


def with_defaults(data: Any, schema: Dict[str, Any]) -> Any:
    """A copy of ``data`` (valid against ``schema``) with every missing property that has a default filled in."""
    data = copy.deepcopy(data)
    for value, sub in _objects(data, schema):
        for key, prop in sub.get("properties", {}).items():
            if key not in value and "default" in prop:
                value[key] = copy.deepcopy(prop["default"])
    return data


def without_defaults(data: Any, schema: Dict[str, Any]) -> Any:
    """A copy of ``data`` without the properties equal to their default (and objects left empty by that,
    unless required): what a written-back file holds."""
    data = copy.deepcopy(data)
    for value, sub in reversed(list(_objects(data, schema))):  # innermost first: emptied objects go too
        required = set(sub.get("required", ()))
        for key, prop in sub.get("properties", {}).items():
            if key in value and key not in required and _is_default(value[key], prop):
                del value[key]
    return data


def _is_default(value: Any, prop: Dict[str, Any]) -> bool:
    if "default" in prop:
        default = prop["default"]  # (True == 1 in Python: a boolean equals only a boolean here)
        return bool(value == default and isinstance(value, bool) == isinstance(default, bool))
    return value == {} and prop.get("type") == "object"


def _objects(data: Any, schema: Dict[str, Any]) -> Iterator[Tuple[Dict[str, Any], Dict[str, Any]]]:
    """Every object in ``data`` with the schema it is checked against, outermost first (properties, maps of
    named entries and lists; not into ``anyOf``: a zones section is the zone file's format, checked there)."""
    if isinstance(data, dict) and schema.get("type") == "object":
        yield data, schema
        properties = schema.get("properties", {})
        entries = schema.get("additionalProperties")
        for key, value in data.items():
            sub = properties.get(key, entries if isinstance(entries, dict) else None)
            if sub is not None:
                yield from _objects(value, sub)
    elif isinstance(data, list) and isinstance(schema.get("items"), dict):
        for item in data:
            yield from _objects(item, schema["items"])
