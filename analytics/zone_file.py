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
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

import numpy as np

from runtimes.errors import UserError

ANCHORS = ("center", "bottom_center")
COORDINATES = ("pixels", "normalized")
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
    """Every stream's zones and lines, checked: a UserError names the first problem and its fix."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"--zones {path}: no such file; give the path of a zone file (JSON or YAML)")
    text = path.read_text()
    if path.suffix.lower() in (".yaml", ".yml"):
        try:
            import yaml
        except ImportError:
            raise UserError(f"--zones {path}: reading YAML needs PyYAML (pip install pyyaml, or apt install "
                            "python3-yaml); or write the zone file as JSON") from None
        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise UserError(f"--zones {path}: not valid YAML ({str(exc).splitlines()[0]}); fix the file") from None
    else:
        try:
            data = json.loads(text)
        except ValueError as exc:
            raise UserError(f"--zones {path}: not valid JSON ({exc}); fix the file") from None
    return parse_zones(data, stream_names, class_names, str(path))


def parse_zones(data: Any, stream_names: Sequence[str], class_names: Sequence[str], origin: str = "zones"
                ) -> Dict[str, StreamZones]:
    """The zone file's content (already parsed) -> {stream name: StreamZones} for every stream."""
    where = f"--zones {origin}"
    if not isinstance(data, dict):
        raise UserError(f"{where}: the top level must be an object with \"zones\", \"lines\" and/or \"streams\"")
    _no_unknown_keys(data, ("coordinates", "zones", "lines", "streams"), where, "the top level")
    default_coords = _coordinates(data.get("coordinates", "pixels"), where)
    shared = _stream_zones(data, class_names, default_coords, where)
    result = {name: StreamZones(list(shared.zones), list(shared.lines)) for name in stream_names}
    per_stream = data.get("streams", {})
    if not isinstance(per_stream, dict):
        raise UserError(f"{where}: \"streams\" must map stream names to their zones and lines")
    for stream, entry in per_stream.items():
        if stream not in result:
            raise UserError(f"{where}: stream {stream!r} is not one of this run's streams "
                            f"({', '.join(map(repr, stream_names))}); rename it in the zone file")
        if not isinstance(entry, dict):
            raise UserError(f"{where}: stream {stream!r} must be an object with \"zones\" and/or \"lines\"")
        _no_unknown_keys(entry, ("coordinates", "zones", "lines"), where, f"stream {stream!r}")
        coords = _coordinates(entry.get("coordinates", default_coords), where)
        own = _stream_zones(entry, class_names, coords, f"{where}: stream {stream!r}")
        result[stream].zones += own.zones
        result[stream].lines += own.lines
    for stream, zones in result.items():
        names = [z.name for z in zones.zones] + [ln.name for ln in zones.lines]
        doubles = sorted({n for n in names if names.count(n) > 1})
        if doubles:
            raise UserError(f"{where}: stream {stream!r} has two zones or lines named {doubles[0]!r}; "
                            "give each a name of its own")
    return result


def _stream_zones(entry: dict, class_names: Sequence[str], coords: str, where: str) -> StreamZones:
    out = StreamZones()
    zones, lines = entry.get("zones", []), entry.get("lines", [])
    if not isinstance(zones, list) or not isinstance(lines, list):
        raise UserError(f"{where}: \"zones\" and \"lines\" must be lists")
    for i, item in enumerate(zones):
        out.zones.append(_zone(item, i, class_names, coords, where))
    for i, item in enumerate(lines):
        out.lines.append(_line(item, i, class_names, coords, where))
    return out


def _zone(item: Any, index: int, class_names: Sequence[str], coords: str, where: str) -> ZoneSpec:
    if not isinstance(item, dict):
        raise UserError(f"{where}: zone {index} must be an object with \"name\" and \"polygon\"")
    name = str(item.get("name", f"zone{index}"))
    what = f"{where}: zone {name!r}"
    _no_unknown_keys(item, _ZONE_KEYS, where, f"zone {name!r}")
    normalized = _coordinates(item.get("coordinates", coords), where) == "normalized"
    points = _points(item.get("polygon"), what, "polygon", normalized)
    if points.shape[0] < 3:
        raise UserError(f"{what}: a polygon needs at least 3 points (got {points.shape[0]}); add its corners")
    crossing = _self_intersection(points)
    if crossing is not None:
        raise UserError(f"{what}: the polygon's edges {crossing[0]} and {crossing[1]} cross; list the points "
                        "in order around the zone")
    if abs(_signed_area(points)) < (1e-6 if normalized else 1.0):
        raise UserError(f"{what}: the polygon has no area (its points are on one line); give its corners")
    limit = item.get("dwell_limit_s")
    if limit is not None and (not isinstance(limit, (int, float)) or isinstance(limit, bool) or limit <= 0):
        raise UserError(f"{what}: dwell_limit_s must be a positive number of seconds (got {limit!r})")
    return ZoneSpec(name, points, _classes(item.get("classes"), class_names, what),
                    None if limit is None else float(limit), _anchor(item.get("anchor", "center"), what), normalized)


def _line(item: Any, index: int, class_names: Sequence[str], coords: str, where: str) -> LineSpec:
    if not isinstance(item, dict):
        raise UserError(f"{where}: line {index} must be an object with \"name\" and \"points\"")
    name = str(item.get("name", f"line{index}"))
    what = f"{where}: line {name!r}"
    _no_unknown_keys(item, _LINE_KEYS, where, f"line {name!r}")
    normalized = _coordinates(item.get("coordinates", coords), where) == "normalized"
    points = _points(item.get("points"), what, "points", normalized)
    if points.shape[0] != 2:
        raise UserError(f"{what}: a line takes exactly 2 points (got {points.shape[0]}); use a zone for more")
    if np.allclose(points[0], points[1]):
        raise UserError(f"{what}: the line's two points are the same; give two distinct points")
    return LineSpec(name, points, _classes(item.get("classes"), class_names, what),
                    _anchor(item.get("anchor", "center"), what), normalized)


def _points(value: Any, what: str, key: str, normalized: bool) -> np.ndarray:
    try:
        points = np.array(value, dtype=np.float64)
    except (TypeError, ValueError):
        points = np.zeros(0)
    if value is None or points.ndim != 2 or points.shape[1] != 2 or not np.isfinite(points).all():
        raise UserError(f"{what}: \"{key}\" must be a list of [x, y] number pairs (got {json.dumps(value)[:60]})")
    if normalized and ((points < 0).any() or (points > 1).any()):
        raise UserError(f"{what}: normalized coordinates must be within 0..1 (got {points.min():g}..{points.max():g}); "
                        "use \"coordinates\": \"pixels\" for pixel positions")
    return points


def _classes(value: Any, class_names: Sequence[str], what: str) -> Optional[List[int]]:
    if value is None:
        return None
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not value:
        raise UserError(f"{what}: \"classes\" must be a list of class names")
    known = {n: i for i, n in enumerate(class_names) if i > 0}
    unknown = [str(v) for v in value if v not in known]
    if unknown:
        raise UserError(f"{what}: class {unknown[0]!r} is not among the model's classes "
                        f"({', '.join(list(known)[:8])}{', ...' if len(known) > 8 else ''}); fix the name")
    return sorted({known[v] for v in value})


def _anchor(value: Any, what: str) -> str:
    if value not in ANCHORS:
        raise UserError(f"{what}: anchor {value!r} is not one of {', '.join(ANCHORS)}")
    return str(value)


def _coordinates(value: Any, where: str) -> str:
    if value not in COORDINATES:
        raise UserError(f"{where}: coordinates {value!r} is not one of {', '.join(COORDINATES)}")
    return str(value)


def _no_unknown_keys(item: dict, allowed: Sequence[str], where: str, what: str) -> None:
    unknown = [k for k in item if k not in allowed]
    if unknown:
        raise UserError(f"{where}: unknown key {unknown[0]!r} in {what} (expected {', '.join(allowed)})")


def _signed_area(points: np.ndarray) -> float:
    x, y = points[:, 0], points[:, 1]
    return 0.5 * float(np.dot(x, np.roll(y, -1)) - np.dot(y, np.roll(x, -1)))


def _self_intersection(points: np.ndarray) -> Optional[tuple]:
    """The first pair of non-adjacent edges (numbered from 1) that touch or cross, else None."""
    k = points.shape[0]
    edges = [(points[i], points[(i + 1) % k]) for i in range(k)]
    for i in range(k):
        for j in range(i + 1, k):
            if j == i + 1 or (i == 0 and j == k - 1):
                continue  # neighbours share a corner
            if _segments_touch(*edges[i], *edges[j]):
                return (i + 1, j + 1)
    return None


def _segments_touch(p1: np.ndarray, p2: np.ndarray, q1: np.ndarray, q2: np.ndarray) -> bool:
    def orient(a, b, c) -> float:
        return float((b[0] - a[0]) * (c[1] - a[1]) - (b[1] - a[1]) * (c[0] - a[0]))

    def on_segment(a, b, c) -> bool:
        return min(a[0], b[0]) <= c[0] <= max(a[0], b[0]) and min(a[1], b[1]) <= c[1] <= max(a[1], b[1])

    d1, d2, d3, d4 = orient(q1, q2, p1), orient(q1, q2, p2), orient(p1, p2, q1), orient(p1, p2, q2)
    if ((d1 > 0) != (d2 > 0)) and ((d3 > 0) != (d4 > 0)) and d1 != 0 and d2 != 0 and d3 != 0 and d4 != 0:
        return True
    return ((d1 == 0 and on_segment(q1, q2, p1)) or (d2 == 0 and on_segment(q1, q2, p2))
            or (d3 == 0 and on_segment(p1, p2, q1)) or (d4 == 0 and on_segment(p1, p2, q2)))
