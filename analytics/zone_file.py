"""Reading and checking a zone file (JSON, or YAML when PyYAML is installed).

Format (every key but the points optional; ``coordinates`` may also be set per stream or per zone/line)::

    {
      "coordinates": "pixels",            # or "normalized": x and y in 0..1 of the frame width and height
      "zones": [...], "lines": [...],     # for every stream
      "streams": {                        # per stream, by the pipeline's stream name
        "door": {
          "zones": [{"name": "waiting", "polygon": [[100, 80], [300, 80], [300, 240], [100, 240]],
                     "classes": ["person"], "dwell_limit_s": 30, "anchor": "bottom_center"}],
          "lines": [{"name": "entry", "points": [[0, 200], [640, 200]], "classes": ["person"]}]
        }
      }
    }

A track is at its box's ``anchor`` point: "center" (default) or "bottom_center" (feet, for people seen from
above and in front). Line directions: "in" is a crossing from the left of the line to its right, as seen
standing on the first point looking at the second (on screen: a line drawn left to right counts "in" going
down); "out" is the other way.

Limits (a file beyond them is refused in one line naming the key path, e.g. ``zones[2].polygon[1][0]``):
see the constants below; docs/analytics.md gives the reasons.
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np

from analytics.polygon import first_crossing, signed_area
from runtimes.data_file import parse_json, parse_yaml
from runtimes.data_path import KeyPath, describe
from runtimes.text_file import read_text_file

ANCHORS = ("center", "bottom_center")
COORDINATES = ("pixels", "normalized")
MAX_FILE_BYTES = 128 * 1024  # dozens of full zones; PyYAML's pure-Python loader reads it in seconds
MAX_DEPTH = 16  # the format itself nests 7 deep (streams -> name -> zones -> [zone] -> polygon -> [point])
# Pixels: beyond any camera frame (a line may start outside it), and small enough that every coordinate
# fits OpenCV's drawing (int32) and the crossing arithmetic stays exact for whole pixels.
MAX_COORDINATE = 65536
MAX_POINTS = 256  # per polygon: each point costs every track a test every frame; outlines need far fewer
MAX_ITEMS = 64  # zones, or lines, in one list
MAX_NAME_CHARS = 64
_TOP_KEYS = ("coordinates", "zones", "lines", "streams")
_STREAM_KEYS = ("coordinates", "zones", "lines")
_ZONE_KEYS = ("name", "polygon", "classes", "dwell_limit_s", "anchor", "coordinates")
_LINE_KEYS = ("name", "points", "classes", "anchor", "coordinates")


@dataclass
class ZoneSpec:
    """A polygon zone. points: (K, 2) ``(x, y)`` vertices in order (K >= 3), pixels unless ``normalized``."""

    name: str
    points: np.ndarray
    classes: Optional[List[int]] = None  # class indices counted (None: every class)
    dwell_limit_s: Optional[float] = None
    anchor: str = "center"
    normalized: bool = False


@dataclass
class LineSpec:
    """A counting line: points (2, 2) ``[[xa, ya], [xb, yb]]``, pixels unless ``normalized``."""

    name: str
    points: np.ndarray
    classes: Optional[List[int]] = None
    anchor: str = "center"
    normalized: bool = False


@dataclass
class StreamZones:
    zones: List[ZoneSpec] = field(default_factory=list)
    lines: List[LineSpec] = field(default_factory=list)


def load_zone_file(path: "str | Path", stream_names: Sequence[str], class_names: Sequence[str]
                   ) -> Dict[str, StreamZones]:
    """Every stream's zones and lines, checked: a UserError names the first problem, where, and its fix."""
    return parse_zones(read_zone_data(path), stream_names, class_names, str(path))


def read_zone_data(path: "str | Path") -> Any:
    """The zone file's text as data (JSON, or YAML by the suffix), within the limits above; what it holds is
    checked by :func:`parse_zones`, which needs the model's classes."""
    label = f"--zones {path}"
    text = read_text_file(path, label, MAX_FILE_BYTES, "give the path of a zones file (JSON or YAML, see "
                                                       "docs/analytics.md)")
    yaml = Path(path).suffix.lower() in (".yaml", ".yml")
    return (parse_yaml if yaml else parse_json)(text, label, MAX_DEPTH)


def parse_zones(data: Any, stream_names: Sequence[str], class_names: Sequence[str], origin: str = "zones"
                ) -> Dict[str, StreamZones]:
    """The zone file's content (already parsed) -> {stream name: StreamZones} for every stream."""
    top = KeyPath(f"--zones {origin}")
    _mapping(data, top, _TOP_KEYS, 'an object with "zones", "lines" and/or "streams"')
    default_coords = _choice(data, "coordinates", "pixels", COORDINATES, top)
    shared = _stream_zones(data, class_names, default_coords, top)
    result = {name: StreamZones(list(shared.zones), list(shared.lines)) for name in stream_names}
    per_stream, at = data.get("streams", {}), top.key("streams")
    if not isinstance(per_stream, dict):
        raise at.error(f"map stream names to their zones and lines (got {describe(per_stream)})")
    for stream, entry in per_stream.items():
        place = at.key(stream)
        if stream not in result:
            raise place.error(f"stream {describe(stream)} is not one of this run's streams ({_some(stream_names)}); "
                              "rename it in the zone file")
        _mapping(entry, place, _STREAM_KEYS, 'an object with "zones" and/or "lines"')
        own = _stream_zones(entry, class_names, _choice(entry, "coordinates", default_coords, COORDINATES, place),
                            place)
        result[stream].zones += own.zones
        result[stream].lines += own.lines
    for stream, zones in result.items():
        named = Counter([z.name for z in zones.zones] + [ln.name for ln in zones.lines])
        doubles = sorted(n for n, count in named.items() if count > 1)
        if doubles:
            raise top.error(f"stream {stream!r} has two zones or lines named {doubles[0]!r}; give each a name of "
                            "its own")
    return result


def _stream_zones(entry: dict, class_names: Sequence[str], coords: str, at: KeyPath) -> StreamZones:
    zones, lines = _list(entry, "zones", at), _list(entry, "lines", at)
    return StreamZones([_zone(item, i, class_names, coords, at.key("zones").index(i)) for i, item in enumerate(zones)],
                       [_line(item, i, class_names, coords, at.key("lines").index(i)) for i, item in enumerate(lines)])


def _list(entry: dict, key: str, at: KeyPath) -> list:
    items, place = entry.get(key, []), at.key(key)
    if not isinstance(items, list):
        raise place.error(f"give a list (got {describe(items)})")
    if len(items) > MAX_ITEMS:
        raise place.error(f"{len(items)} entries, more than the {MAX_ITEMS} one list takes; split them across "
                          "streams or merge some")
    return items


def _zone(item: Any, index: int, class_names: Sequence[str], coords: str, at: KeyPath) -> ZoneSpec:
    name, normalized = _item(item, f"zone{index}", _ZONE_KEYS, coords, at)
    place = at.key("polygon")
    points = _points(item.get("polygon"), normalized, place)
    if points.shape[0] < 3:
        raise place.error(f"a polygon needs at least 3 points (got {points.shape[0]}); add its corners")
    crossing = first_crossing(points)
    if crossing is not None:
        raise place.error(f"the polygon's edges {crossing[0]} and {crossing[1]} cross; list the points in order "
                          "around the zone")
    if abs(signed_area(points)) < (1e-6 if normalized else 1.0):
        raise place.error("the polygon has no area (its points are on one line); give its corners")
    limit = item.get("dwell_limit_s")
    dwell_limit_s = None if limit is None else _number(limit, at.key("dwell_limit_s"))
    if dwell_limit_s is not None and dwell_limit_s <= 0:
        raise at.key("dwell_limit_s").error(f"give a positive number of seconds (got {describe(limit)})")
    return ZoneSpec(name, points, _classes(item.get("classes"), class_names, at.key("classes")), dwell_limit_s,
                    _choice(item, "anchor", "center", ANCHORS, at), normalized)


def _line(item: Any, index: int, class_names: Sequence[str], coords: str, at: KeyPath) -> LineSpec:
    name, normalized = _item(item, f"line{index}", _LINE_KEYS, coords, at)
    place = at.key("points")
    points = _points(item.get("points"), normalized, place)
    if points.shape[0] != 2:
        raise place.error(f"a line takes exactly 2 points (got {points.shape[0]}); use a zone for more")
    if np.allclose(points[0], points[1]):
        raise place.error("the line's two points are the same; give two distinct points")
    return LineSpec(name, points, _classes(item.get("classes"), class_names, at.key("classes")),
                    _choice(item, "anchor", "center", ANCHORS, at), normalized)


def _item(item: Any, default_name: str, keys: Sequence[str], coords: str, at: KeyPath) -> Tuple[str, bool]:
    """What a zone and a line open with: the object and its keys checked; its name, and whether its points are
    normalised."""
    _mapping(item, at, keys, f'an object with "name" and "{keys[1]}"')
    name = item.get("name", default_name)
    if not isinstance(name, str) or not 0 < len(name) <= MAX_NAME_CHARS or not name.isprintable():
        raise at.key("name").error(f"give a name of 1 to {MAX_NAME_CHARS} printable characters (got "
                                   f"{describe(name)})")
    return name, _choice(item, "coordinates", coords, COORDINATES, at) == "normalized"


def _points(value: Any, normalized: bool, at: KeyPath) -> np.ndarray:
    """[[x, y], ...] -> (K, 2) float64, every coordinate a finite number within range."""
    if not isinstance(value, list):
        raise at.error(f"give a list of [x, y] number pairs (got {describe(value)})")
    if len(value) > MAX_POINTS:
        raise at.error(f"{len(value)} points, more than the {MAX_POINTS} a zone or line takes; simplify the outline "
                       "(e.g. cv2.approxPolyDP)")
    low, high = (0, 1) if normalized else (-MAX_COORDINATE, MAX_COORDINATE)
    rows = []
    for i, pair in enumerate(value):
        if not isinstance(pair, list) or len(pair) != 2:
            raise at.index(i).error(f"give a point as [x, y] (got {describe(pair)})")
        for j, coordinate in enumerate(pair):
            if not low <= _number(coordinate, at.index(i).index(j)) <= high:
                raise at.index(i).index(j).error(
                    f"{'normalized' if normalized else 'pixel'} coordinates must be within {low}..{high} (got "
                    f"{describe(coordinate)}); "
                    + ('use "coordinates": "pixels" for pixel positions' if normalized else
                       "give a position on or near the frame"))
        rows.append(pair)
    return np.array(rows, dtype=np.float64).reshape(-1, 2)


def _number(value: Any, at: KeyPath) -> float:
    """A finite number (true/false are not numbers), as a float."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise at.error(f"give a number (got {describe(value)})")
    try:
        number = float(value)
    except OverflowError:  # an integer of more than 308 digits
        raise at.error(f"{describe(value)} is out of range; give a number of a sensible size") from None
    if not math.isfinite(number):
        raise at.error(f"give a finite number (got {describe(value)})")
    return number


def _classes(value: Any, class_names: Sequence[str], at: KeyPath) -> Optional[List[int]]:
    if value is None:
        return None
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not value:
        raise at.error(f"give a list of class names (got {describe(value)})")
    known = {n: i for i, n in enumerate(class_names) if i > 0}
    for i, name in enumerate(value):
        if not isinstance(name, str):
            raise at.index(i).error(f"give a class name (got {describe(name)})")
        if name not in known:
            raise at.index(i).error(f"class {name!r} is not among the model's classes ({_some(list(known))}); "
                                    "fix the name")
    return sorted({known[name] for name in value})


def _choice(item: dict, key: str, default: str, choices: Sequence[str], at: KeyPath) -> str:
    value = item.get(key, default)
    if not isinstance(value, str) or value not in choices:
        raise at.key(key).error(f"give one of {', '.join(choices)} (got {describe(value)})")
    return value


def _mapping(value: Any, at: KeyPath, keys: Sequence[str], what: str) -> None:
    if not isinstance(value, dict):
        raise at.error(f"give {what} (got {describe(value)})")
    unknown = [k for k in value if k not in keys]
    if unknown:
        raise at.error(f"unknown key {describe(unknown[0])} (expected {', '.join(keys)})")


def _some(names: Sequence[Any]) -> str:
    return ", ".join(map(repr, names[:8])) + (", ..." if len(names) > 8 else "")
