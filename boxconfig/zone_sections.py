"""Zones in the configuration: a top-level ``zones`` (for any stream, by name, as a zones file holds them) and a
stream's own ``zones``; each is a zones file's path or its content inline, checked by analytics/zone_file.py,
the code that checks a ``--zones`` file, so the two formats cannot drift apart.

Class names need the model: :func:`check_zone_sections` checks everything else before any model loads (each
class a zone names is taken as known); :func:`stream_zones` checks again with the model's classes.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Set, Tuple

from analytics.zone_file import MAX_DEPTH, MAX_FILE_BYTES, StreamZones, parse_zones
from boxconfig.config import BoxConfig, to_data
from boxconfig.problems import line, raise_if_any
from runtimes.data_file import parse_json, parse_yaml
from runtimes.data_path import KeyPath
from runtimes.errors import UserError
from runtimes.text_file import read_text_file

_ORIGIN = "configuration"  # parse_zones labels its errors "--zones configuration: ": replaced by the key path
# "zones[2].polygon[1][0]: problem" -> the path into the section, then the problem; a problem with no path
# ("stream 'door' has two zones ...") has a space before its first colon.
_PATH_THEN_PROBLEM = re.compile(r"^((?:[A-Za-z0-9_-]+|\[[^\]]*\])(?:\.[A-Za-z0-9_-]+|\[[^\]]*\])*): (.*)$", re.DOTALL)
Section = Tuple[KeyPath, Any, Sequence[str]]  # where, the value (None, a path, the content), the streams it covers


def sections(data: Dict[str, Any], label: str) -> List[Section]:
    """The zones sections of the file's (validated) data: the top-level one for every stream, each stream's own."""
    streams = [s for s in data.get("streams", []) if isinstance(s, dict) and isinstance(s.get("name"), str)]
    found: List[Section] = [(KeyPath(label).key("zones"), data.get("zones"),
                                   list(dict.fromkeys(s["name"] for s in streams)))]
    for index, stream in enumerate(data.get("streams", [])):
        if isinstance(stream, dict) and isinstance(stream.get("name"), str):
            found.append((KeyPath(label).key("streams").index(index).key("zones"), stream.get("zones"),
                          [stream["name"]]))
    return found


def check_zone_sections(data: Dict[str, Any], label: str, base_dir: Path) -> List[str]:
    """One line per zones section that zone_file.py refuses (its first problem), classes not yet checked."""
    problems: List[str] = []
    for at, value, names in sections(data, label):
        if not isinstance(value, (str, dict)):
            continue  # none, or a wrong type the schema reports
        try:
            content = _content(value, at, base_dir)
            if content is not None:
                parse_zones(content, names, _named_classes(content), _ORIGIN)
        except UserError as exc:
            problems.append(_at(at, str(exc), value))
    return problems


def zones_of_model(config: BoxConfig, model: str, class_names: Sequence[str], label: str
                   ) -> Dict[str, StreamZones]:
    """{stream name: its zones and lines} for the streams of ``model``, checked with its classes (the camera
    calls this once the model is loaded); a ConfigError lists every problem."""
    return stream_zones(to_data(config), label, config.base_dir, class_names,
                        [s.name for s in config.streams_of(model)])


def stream_zones(data: Dict[str, Any], label: str, base_dir: Path, class_names: Sequence[str],
                 only: Optional[Sequence[str]] = None) -> Dict[str, StreamZones]:
    """{stream name: its zones and lines} from every section, with the model's classes, for the streams
    ``only`` (default: all); a ConfigError lists every section's problem and each name given to two zones or
    lines of one stream."""
    merged: Dict[str, StreamZones] = {}
    problems: List[str] = []
    every = [s["name"] for s in data.get("streams", [])]
    for at, value, names in sections(data, label):
        names = [n for n in names if only is None or n in only]
        if not names:
            continue
        try:
            content = _without_others(_content(value, at, base_dir), set(every) - set(names))
            parsed = parse_zones(content, names, class_names, _ORIGIN) if content is not None else {}
        except UserError as exc:
            problems.append(_at(at, str(exc), value))
            continue
        for name, zones in parsed.items():
            into = merged.setdefault(name, StreamZones())
            taken = {z.name for z in into.zones} | {ln.name for ln in into.lines}
            for twice in sorted(({z.name for z in zones.zones} | {ln.name for ln in zones.lines}) & taken):
                problems.append(line(at, f"stream {name!r} has a zone or line named {twice!r} in the top-level "
                                         "zones too; give each a name of its own"))
            into.zones += zones.zones
            into.lines += zones.lines
    raise_if_any(problems)
    return merged


def _without_others(content: Any, others: Set[str]) -> Any:
    """A section's content without the entries of streams another model serves (checked with its classes)."""
    if not isinstance(content, dict) or not isinstance(content.get("streams"), dict) or not others:
        return content
    return dict(content, streams={k: v for k, v in content["streams"].items() if k not in others})


def _content(value: Any, at: KeyPath, base_dir: Path) -> Any:
    """The section's zones: the value itself, or the zones file it names (relative to the configuration)."""
    if not isinstance(value, str):
        return value
    path = base_dir / value
    text = read_text_file(path, value, MAX_FILE_BYTES, "give the path of a zones file (JSON or YAML, see "
                                                        "docs/analytics.md)")
    yaml = path.suffix.lower() in (".yaml", ".yml")
    return (parse_yaml if yaml else parse_json)(text, value, MAX_DEPTH)


def _at(at: KeyPath, message: str, value: Any) -> str:
    """zone_file.py's line moved under the section's key path; in a zones file it names, after the file's name
    (``box.yaml: streams[0].zones: door.yaml: lines[0].points: ...``)."""
    prefix = f"--zones {_ORIGIN}: "
    if not message.startswith(prefix):  # the zones file's own text (no such file, not YAML): as it is
        return line(at, message)
    rest = message[len(prefix):]
    found = _PATH_THEN_PROBLEM.match(rest)
    if isinstance(value, str):
        return line(at, f"{value}: {rest}")
    if found is None:
        return line(at, rest)
    inner, problem = found.groups()
    return line(KeyPath(at.label, at.path + ("" if inner.startswith("[") else ".") + inner), problem)


def _named_classes(content: Any) -> List[str]:
    """Index 0 (the background, never a zone's class) and every class name the content gives."""
    names: List[str] = []

    def walk(value: Any, depth: int = 0) -> None:
        if depth > MAX_DEPTH:
            return
        if isinstance(value, dict):
            classes: Optional[Any] = value.get("classes")
            for item in classes if isinstance(classes, list) else [classes]:
                if isinstance(item, str) and item not in names:
                    names.append(item)
            for inner in value.values():
                walk(inner, depth + 1)
        elif isinstance(value, list):
            for inner in value:
                walk(inner, depth + 1)

    walk(content)
    return ["(background)"] + names
