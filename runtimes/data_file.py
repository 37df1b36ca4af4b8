"""JSON or YAML text a user wrote -> plain data (dicts, lists, strings, numbers, booleans, None), as data only.

What the standard parsers would let through is refused here, in one :class:`UserError` line that names the
file and the line: nesting deeper than ``max_depth`` (Python's parsers recurse, and a few kilobytes of
brackets end in a RecursionError), YAML aliases (``*name``: a few hundred bytes of nested aliases expand to
gigabytes once walked), YAML tags beyond JSON's types (``!!binary``, ``!!set``, ``!!timestamp``, merge keys,
``!anything``; a date is read as the string it is written as), a key given twice in one mapping, and
numbers longer than :data:`MAX_NUMBER_CHARS` characters (converting one costs time quadratic in its length).

YAML needs PyYAML (5.1 or newer: JetPack's python3-yaml works); the pure-Python loader is used because the
checks hook into its composer.
"""

from __future__ import annotations

import json
import re
from functools import lru_cache
from typing import Any, Dict, List, Tuple

from runtimes.errors import UserError
from runtimes.text_file import line_and_column

MAX_NUMBER_CHARS = 1000
_JSON_BRACKET = re.compile(r'[][{}"]')
_JSON_STRING_REST = re.compile(r'[^"\\]*(?:\\.[^"\\]*)*"', re.DOTALL)  # after the opening quote
_YAML = "tag:yaml.org,2002:"
_AS_STRINGS = (_YAML + "timestamp", _YAML + "value")
_YAML_TAGS = {_YAML + kind for kind in ("str", "int", "float", "bool", "null", "seq", "map")}


def parse_json(text: str, label: str, max_depth: int) -> Any:
    """``text`` as JSON (NaN and Infinity are read, as Python's json reads them; the caller checks ranges)."""
    _check_json_depth(text, label, max_depth)
    try:
        return json.loads(text, object_pairs_hook=_json_object, parse_int=_json_int)
    except json.JSONDecodeError as exc:
        raise UserError(f"{label}, line {exc.lineno}, column {exc.colno}: not valid JSON ({exc.msg}); "
                        "fix the file") from None
    except _Refused as exc:  # from the hooks, which know no position: found again in the text
        found = re.search(exc.pattern, text)
        where = ", line {}, column {}".format(*line_and_column(text, found.start())) if found else ""
        raise UserError(f"{label}{where}: {exc}") from None


class _Refused(ValueError):
    def __init__(self, problem: str, pattern: str) -> None:
        super().__init__(problem)
        self.pattern = pattern  # finds where in the text


def _json_object(pairs: List[Tuple[str, Any]]) -> Dict[str, Any]:
    result: Dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            raise _Refused(f"the key {key!r} is given twice in one object", re.escape(json.dumps(key)))
        result[key] = value
    return result


def _json_int(digits: str) -> int:
    if len(digits) > MAX_NUMBER_CHARS:
        raise _Refused(f"a number of {len(digits)} digits", f"[0-9]{{{MAX_NUMBER_CHARS + 1}}}")
    return int(digits)


def _check_json_depth(text: str, label: str, max_depth: int) -> None:
    """Refuses brackets nested deeper than ``max_depth`` (outside strings), in one pass over the text."""
    depth, pos = 0, 0
    while True:
        found = _JSON_BRACKET.search(text, pos)
        if found is None:
            return
        char, pos = found.group(), found.end()
        if char == '"':
            rest = _JSON_STRING_REST.match(text, pos)
            if rest is None:
                return  # an unterminated string: json.loads says where
            pos = rest.end()
        elif char in "[{":
            depth += 1
            if depth > max_depth:
                line, column = line_and_column(text, found.start())
                raise UserError(f"{label}, line {line}, column {column}: nested more than {max_depth} deep; "
                                "this file's format nests far less")
        else:
            depth -= 1


def parse_yaml(text: str, label: str, max_depth: int) -> Any:
    """``text`` as YAML with JSON's types only (see the module's docstring)."""
    try:
        import yaml
    except ImportError:
        raise UserError(f"{label}: reading YAML needs PyYAML (pip install pyyaml, or apt install python3-yaml); "
                        "or write the file as JSON") from None
    loader_class = _plain_loader()
    loader = None
    try:
        loader = loader_class(text, max_depth)  # (its reader refuses control characters here)
        return loader.get_single_data()
    except loader_class.Refused as exc:
        raise UserError(f"{label}{_yaml_where(exc.problem_mark)}: {exc.problem}") from None
    except yaml.MarkedYAMLError as exc:
        what = f"{exc.context}: {exc.problem}" if exc.context and exc.problem else exc.problem or exc.context
        raise UserError(f"{label}{_yaml_where(exc.problem_mark or exc.context_mark)}: not valid YAML ({what}); "
                        "fix the file") from None
    except yaml.reader.ReaderError as exc:
        line, column = line_and_column(text, exc.position)
        raise UserError(f"{label}, line {line}, column {column}: character U+{exc.character:04X} is not "
                        "allowed in YAML; remove it") from None
    finally:
        if loader is not None:
            loader.dispose()


def _yaml_where(mark: Any) -> str:
    return f", line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""


@lru_cache(maxsize=None)
def _plain_loader() -> Any:
    """PyYAML's SafeLoader with the checks above (made on first use: PyYAML is optional)."""
    import yaml

    class Refused(yaml.MarkedYAMLError):
        """Valid YAML that is not read (an alias, a tag, ...)."""

    def refuse(node_or_event: Any, problem: str) -> Exception:
        return Refused(problem=problem, problem_mark=node_or_event.start_mark)

    class PlainLoader(yaml.SafeLoader):
        # Dates and times, and a lone "=", stay the strings they are written as.
        yaml_implicit_resolvers = {
            first: [(tag, regexp) for tag, regexp in resolvers if tag not in _AS_STRINGS]
            for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()}

        def __init__(self, text: str, max_depth: int) -> None:
            super().__init__(text)
            self.max_depth, self.depth = max_depth, 0

        def compose_node(self, parent: Any, index: Any) -> Any:
            event = self.peek_event()
            if isinstance(event, yaml.AliasEvent):
                raise refuse(event, f"aliases (*{event.anchor}) are not read; write the value out in full")
            nests = isinstance(event, (yaml.SequenceStartEvent, yaml.MappingStartEvent))
            if nests and self.depth >= self.max_depth:
                raise refuse(event, f"nested more than {self.max_depth} deep; this file's format nests far less")
            self.depth += nests
            try:
                node = super().compose_node(parent, index)
            finally:
                self.depth -= nests
            _check_node(node, refuse)
            return node

    PlainLoader.Refused = Refused
    return PlainLoader


def _check_node(node: Any, refuse: Any) -> None:
    if node.tag == _YAML + "merge":
        raise refuse(node, "merge keys (<<) are not read; write the keys out in full")
    if node.tag not in _YAML_TAGS:
        tag = node.tag.replace(_YAML, "!!")
        raise refuse(node, f"the tag {tag} is not read: only strings, numbers, true/false, null, lists and "
                           "mappings")
    if node.tag in (_YAML + "int", _YAML + "float") and len(node.value) > MAX_NUMBER_CHARS:
        raise refuse(node, f"a number of {len(node.value)} characters")
    if node.tag == _YAML + "map":
        seen = set()
        for key, _ in node.value:
            if key.tag != _YAML + "map" and key.tag != _YAML + "seq":
                if (key.tag, key.value) in seen:
                    raise refuse(key, f"the key {key.value!r} is given twice in one mapping")
                seen.add((key.tag, key.value))
