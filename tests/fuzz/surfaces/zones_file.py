"""Zones files, JSON and YAML: ``load_zone_file`` on edited copies of a valid file (a field replaced, deleted
or retyped; bytes damaged), polygons of random sizes and shapes, and hostile text (deep nesting, YAML
aliases and tags, huge numbers, bytes that are not UTF-8, keys given twice). What it accepts is then counted
against tracks and drawn on a frame, where a coordinate out of range once crashed (issue #24)."""

from __future__ import annotations

import json
import math
import random
from pathlib import Path
from typing import Any, Dict, Optional, Tuple

import numpy as np

from tests.bad_input_files import alias_bomb
from tests.fuzz.cases import Case, Parser, mutate, mutate_json, random_bytes

STREAMS = ["door", "yard"]
CLASSES = ["__background__", "ellipse", "rectangle", "triangle"]
FRAME_SIZE = (64, 48)  # width, height


def valid_zones() -> Dict[str, Any]:
    """A zones file using every key."""
    return {
        "coordinates": "pixels",
        "zones": [{"name": "bay", "polygon": [[4, 4], [40, 4], [40, 30], [4, 30]], "classes": ["ellipse"],
                   "dwell_limit_s": 2.5, "anchor": "bottom_center"}],
        "lines": [{"name": "gate", "points": [[0, 24], [64, 24]]}],
        "streams": {"door": {"coordinates": "normalized",
                             "zones": [{"name": "left", "polygon": [[0, 0], [0.5, 0], [0.5, 1], [0, 1]]}],
                             "lines": [{"name": "middle", "points": [[0.5, 0], [0.5, 1]], "classes": "triangle",
                                        "coordinates": "normalized"}]}},
    }


def random_polygon(rng: random.Random) -> list:
    """0 to 300 points: on a circle (a simple polygon), shuffled (mostly crossing), or from awkward values."""
    count = rng.choice([0, 1, 2, 3, 4, 5, 12, 255, 256, 257, 300])
    kind = rng.randrange(3)
    if kind == 0:
        angles = sorted(rng.uniform(0, 2 * math.pi) for _ in range(count))
        return [[round(32 + 30 * math.cos(a), 2), round(24 + 20 * math.sin(a), 2)] for a in angles]
    if kind == 1:
        return [[rng.randint(0, 63), rng.randint(0, 47)] for _ in range(count)]
    values = [0, 1, -1, 0.5, 65536, -65536, 65537, 1e300, -1e-300, 2 ** 63, 10 ** 400, 1e-9]
    return [[rng.choice(values), rng.choice(values)] for _ in range(count)]


def _hostile_json(rng: random.Random) -> Tuple[str, bytes]:
    depth = rng.choice([17, 1000, 50_000])
    good = json.dumps(valid_zones())
    return rng.choice([
        (f"nested {depth} deep", ("[" * depth + "]" * depth).encode()),
        (f"a polygon nested {depth} deep", good.replace("[[4, 4]", "[" * depth + "4" + "]" * depth + ", [4").encode()),
        ("a 400-digit coordinate", good.replace("[40, 4]", f"[{10 ** 399}, 4]").encode()),
        ("a 5000-digit coordinate", good.replace("[40, 4]", f"[{'9' * 5000}, 4]").encode()),
        ("coordinates 1e300", good.replace("[64, 24]", "[1e300, 24]").encode()),
        ("NaN dwell limit", good.replace("2.5", "NaN").encode()),
        ("Infinity as a coordinate", good.replace("[40, 30]", "[Infinity, 30]").encode()),
        ("a key given twice", good.replace('{"coordinates": "pixels",', '{"zones": [], "coordinates": "pixels",')
         .encode()),
        ("not UTF-8", good.replace("bay", "b\udce9y").encode("utf-8", "surrogateescape")),
        ("UTF-16", good.encode("utf-16")),
        ("a byte-order mark", b"\xef\xbb\xbf" + good.encode()),
    ])


def _hostile_yaml(rng: random.Random) -> Tuple[str, bytes]:
    depth = rng.choice([17, 1000, 20_000])
    polygon = "polygon: [[4, 4], [40, 4], [40, 30], [4, 30]]"
    base = "zones:\n  - name: bay\n    " + polygon + "\n"
    return rng.choice([
        ("nested aliases", alias_bomb()),
        ("an alias of a polygon", (base + "  - {name: two, polygon: *p}\n").replace("polygon: [", "polygon: &p [", 1)
         .encode()),
        (f"flow nested {depth} deep", ("[" * depth + "]" * depth).encode()),
        (f"block sequences nested {depth} deep", ("- " * depth + "x\n").encode()),
        ("a !!binary polygon", base.replace("polygon: [", "polygon: !!binary aGVsbG8= #[").encode()),
        ("a !!set polygon", base.replace(polygon, "polygon: !!set {a, b}").encode()),
        ("a date as a polygon", base.replace(polygon, "polygon: 2024-05-01").encode()),
        ("a date as a name", base.replace("name: bay", "name: 2024-05-01 10:00:00").encode()),
        ("a python tag", base.replace(polygon, "polygon: !!python/object/apply:os.getpid []").encode()),
        ("a custom tag", base.replace("name: bay", "name: !secret bay").encode()),
        ("a merge key", (base + "  - <<: {name: two}\n    " + polygon + "\n").encode()),
        ("a 400-digit coordinate", base.replace("[40, 4]", f"[{10 ** 399}, 4]").encode()),
        ("a 2000-digit coordinate", base.replace("[40, 4]", f"[{'9' * 2000}, 4]").encode()),
        ("a hex and a sexagesimal coordinate", base.replace("[40, 4]", "[0x28, 1:30]").encode()),
        (".nan dwell limit", (base + "    dwell_limit_s: .nan\n").encode()),
        ("two documents", (base + "---\n" + base).encode()),
        ("a tab", base.replace("    polygon", "\tpolygon").encode()),
        ("a NUL", base.replace("bay", "b\x00y").encode()),
        ("not UTF-8", base.encode().replace(b"bay", b"b\xe9y")),
        ("a key given twice", (base + "zones: []\n").encode()),
    ])


def _document(rng: random.Random, index: int, as_yaml: bool) -> Tuple[str, bytes]:
    kind = index % 6
    if kind == 0:
        return "as written", _render(valid_zones(), as_yaml)
    if kind == 1:
        what, data = mutate_json(valid_zones(), rng)
        return f"field {what}", _render(data, as_yaml)
    if kind == 2:
        data = valid_zones()
        data["zones"][0]["polygon"] = random_polygon(rng)
        return f"a polygon of {len(data['zones'][0]['polygon'])} points", _render(data, as_yaml)
    if kind == 3:
        what, damaged = mutate(_render(valid_zones(), as_yaml), rng)
        return f"bytes: {what}", damaged
    if kind == 4:
        return _hostile_yaml(rng) if as_yaml else _hostile_json(rng)
    what, data = random_bytes(rng)
    return f"random: {what}", data


def _render(data: Any, as_yaml: bool) -> bytes:
    if not as_yaml:
        return json.dumps(data).encode()
    import yaml

    return yaml.safe_dump(data, default_flow_style=None).encode()


def check_zones(result: Any) -> Optional[str]:
    """What the loaded zones must be, after they counted and drew (see :func:`_load_count_draw`)."""
    from analytics.polygon import first_crossing
    from analytics.zone_file import ANCHORS, MAX_COORDINATE, MAX_POINTS

    if set(result) != set(STREAMS):
        return f"streams {sorted(result)}"
    for zones in result.values():
        for item, fewest, most in [(z, 3, MAX_POINTS) for z in zones.zones] + [(ln, 2, 2) for ln in zones.lines]:
            points = item.points
            if not (np.isfinite(points).all() and np.abs(points).max() <= (1 if item.normalized else MAX_COORDINATE)):
                return f"{item.name}: coordinates out of range"
            if not fewest <= points.shape[0] <= most:
                return f"{item.name}: {points.shape[0]} points"
            if item.anchor not in ANCHORS or not (item.classes is None or set(item.classes) <= {1, 2, 3}):
                return f"{item.name}: anchor {item.anchor!r}, classes {item.classes}"
        for zone in zones.zones:
            if first_crossing(zone.points) is not None:
                return f"{zone.name}: a polygon whose edges cross"
            if zone.dwell_limit_s is not None and not 0 < zone.dwell_limit_s < float("inf"):
                return f"{zone.name}: dwell limit {zone.dwell_limit_s}"
    return None


def _load_count_draw(path: Path) -> Any:
    from analytics.overlay import draw_zones
    from analytics.tracker import Tracks
    from analytics.zone_file import load_zone_file
    from analytics.zones import StreamCounter

    result = load_zone_file(path, STREAMS, CLASSES)
    tracks = Tracks(np.array([1, 2]), np.array([[10, 10, 20, 20], [30, 20, 60, 40]], np.float32),
                    np.array([0.9, 0.8], np.float32), np.array([1, 3]), np.zeros(0, np.int64))
    for stream, spec in result.items():
        counter = StreamCounter(stream, spec, CLASSES)
        counter.update(0, 0.0, tracks, FRAME_SIZE)
        zones, lines = counter.geometry()
        draw_zones(np.zeros((FRAME_SIZE[1], FRAME_SIZE[0], 3), np.uint8), zones, lines, counter.counts())
    return result


def _maker(as_yaml: bool):
    def make(rng: random.Random, index: int, folder: Path, assets: Path) -> Case:
        what, data = _document(rng, index, as_yaml)
        path = folder / ("zones.yaml" if as_yaml else "zones.json")
        path.write_bytes(data)
        return Case(what, lambda: _load_count_draw(path), check_zones)
    return make


PARSERS = [
    Parser("zones file (JSON)", _maker(False), ci_count=36, full_count=300),
    Parser("zones file (YAML)", _maker(True), ci_count=36, full_count=300),
]
