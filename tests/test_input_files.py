"""Zones files and sources files that must not crash or stall the camera app (issue #24): each once did.

Defect 4: a line to 1e300 was accepted and crashed the first drawn frame. Defect 5: nested YAML aliases
expanded to gigabytes. Defect 6: tracebacks instead of one line (tests/bad_input_files.py lists the rows).
Defect 9: a NaN dwell limit was accepted, a 3000-point polygon took 14 s to check.
"""

from __future__ import annotations

import itertools
import json
import warnings
from pathlib import Path

import numpy as np
import pytest

from analytics.polygon import first_crossing
from analytics.zone_file import MAX_COORDINATE, MAX_POINTS, load_zone_file, parse_zones
from analytics.zones import StreamCounter
from runtimes.errors import UserError
from streams.config import MAX_STREAMS, stream_specs
from tests.bad_input_files import BAD_SOURCES_FILES, BAD_ZONES_FILES, alias_bomb, write_row

CLASSES = ["__background__", "ellipse", "rectangle", "triangle"]


def refused(path: Path, call) -> str:
    """The one line ``call(path)`` is refused with (it must name the file)."""
    with pytest.raises(UserError) as info:
        call(path)
    message = str(info.value)
    assert "\n" not in message and str(path) in message, message
    return message


@pytest.mark.parametrize("row", BAD_ZONES_FILES, ids=[row[0] for row in BAD_ZONES_FILES])
def test_every_bad_zones_file_is_one_line_naming_the_file_and_where(tmp_path, row):
    pytest.importorskip("yaml")
    message = refused(write_row(tmp_path, row), lambda p: load_zone_file(p, ["cam0"], CLASSES))
    assert row[3] in message, message


@pytest.mark.parametrize("row", BAD_SOURCES_FILES, ids=[row[0] for row in BAD_SOURCES_FILES])
def test_every_bad_sources_file_is_one_line_naming_the_file_and_where(tmp_path, row):
    message = refused(write_row(tmp_path, row), lambda p: stream_specs([], p))
    assert row[3] in message, message


def test_a_line_far_outside_the_frame_is_refused_and_one_at_the_limit_counts_and_draws():
    """Defect 4: the limit is what the file may hold; everything within it counts and draws, warning-free."""
    far = {"lines": [{"name": "gate", "points": [[0, 0], [1e300, 10]]}]}
    with pytest.raises(UserError, match=r"lines\[0\]\.points\[1\]\[0\]: pixel coordinates must be within"):
        parse_zones(far, ["cam0"], CLASSES)
    edge = MAX_COORDINATE
    spec = parse_zones({"lines": [{"name": "gate", "points": [[-edge, -edge], [edge, edge]]}],
                        "zones": [{"name": "all", "polygon": [[-edge, -edge], [edge, -edge], [edge, edge]]}]},
                       ["cam0"], CLASSES)["cam0"]
    from analytics.overlay import draw_zones
    from analytics.tracker import Tracks

    counter = StreamCounter("cam0", spec, CLASSES)
    frame = np.zeros((48, 64, 3), np.uint8)
    tracks = Tracks(np.array([1, 2]), np.array([[10, 35, 20, 45], [40, 30, 50, 40]], np.float32),
                    np.array([0.9, 0.9], np.float32), np.array([1, 1]), np.zeros(0, np.int64))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # numpy's overflow and invalid-value warnings included
        counter.update(0, 0.0, tracks, (64, 48))
        zones, lines = counter.geometry()
        draw_zones(frame, zones, lines, counter.counts())
    assert counter.counts()["zones"]["all"]["total"] == 1  # (45, 35) is on the zone's side of y = x, (15, 40) not
    assert frame[24, 24].any() and frame.any(axis=2).sum() > 64  # the diagonal line crosses the frame


def test_yaml_aliases_are_refused_before_anything_expands(tmp_path):
    """Defect 5: a shared value (an anchor and its alias) is refused too, not only the bomb."""
    pytest.importorskip("yaml")
    shared = tmp_path / "shared.yaml"
    shared.write_text("lines:\n  - {name: a, points: &p [[0, 0], [9, 9]]}\n  - {name: b, points: *p}\n")
    assert "line 3, column 23: aliases (*p) are not read" in refused(shared, lambda p: load_zone_file(
        p, ["cam0"], CLASSES))
    bomb = tmp_path / "bomb.yaml"
    bomb.write_bytes(alias_bomb())
    assert "aliases (*a0) are not read" in refused(bomb, lambda p: load_zone_file(p, ["cam0"], CLASSES))


@pytest.mark.parametrize("text, suffix", [
    ('{"zones": [{"name": "bay", "polygon": [[0, 0], [9, 0], [9, 9]], "dwell_limit_s": NaN}]}', ".json"),
    ("zones:\n  - {name: bay, polygon: [[0, 0], [9, 0], [9, 9]], dwell_limit_s: .nan}\n", ".yaml"),
    ("zones:\n  - {name: bay, polygon: [[0, 0], [9, 0], [9, 9]], dwell_limit_s: .inf}\n", ".yaml"),
])
def test_a_dwell_limit_that_is_not_a_finite_number_is_refused(tmp_path, text, suffix):
    """Defect 9: NaN compared false with 0 and passed as a limit that never fires."""
    if suffix == ".yaml":
        pytest.importorskip("yaml")
    path = tmp_path / f"zones{suffix}"
    path.write_text(text)
    message = refused(path, lambda p: load_zone_file(p, ["cam0"], CLASSES))
    assert "zones[0].dwell_limit_s: give a finite number" in message


def star(points: int, radius: float = 400.0) -> list:
    """A star-shaped simple polygon of ``points`` corners around (500, 500)."""
    angles = np.arange(points) * 2 * np.pi / points
    radii = np.where(np.arange(points) % 2, radius, radius / 2)
    return np.round(np.stack([500 + radii * np.cos(angles), 500 + radii * np.sin(angles)], 1), 3).tolist()


def test_a_polygon_past_the_point_limit_is_refused_and_one_at_it_is_checked():
    """Defect 9: 3000 points took 14 s; past MAX_POINTS is refused at once, up to it is checked whole."""
    with pytest.raises(UserError, match=rf"zones\[0\]\.polygon: 3000 points, more than the {MAX_POINTS}"):
        parse_zones({"zones": [{"name": "z", "polygon": star(3000)}]}, ["cam0"], CLASSES)
    spec = parse_zones({"zones": [{"name": "z", "polygon": star(MAX_POINTS)}]}, ["cam0"], CLASSES)
    assert spec["cam0"].zones[0].points.shape == (MAX_POINTS, 2)
    crossed = star(MAX_POINTS)
    crossed[10], crossed[200] = crossed[200], crossed[10]
    with pytest.raises(UserError, match="edges .* cross"):
        parse_zones({"zones": [{"name": "z", "polygon": crossed}]}, ["cam0"], CLASSES)


def _touch_one_pair(p1, p2, q1, q2) -> bool:
    """The pairwise reference: whether segments p1-p2 and q1-q2 cross or touch (one pair at a time)."""
    def orient(a, b, c):
        return (b[0] - a[0]) * (c[1] - a[1]) - (b[1] - a[1]) * (c[0] - a[0])

    def within(a, b, c):
        return min(a[0], b[0]) <= c[0] <= max(a[0], b[0]) and min(a[1], b[1]) <= c[1] <= max(a[1], b[1])

    d1, d2, d3, d4 = orient(q1, q2, p1), orient(q1, q2, p2), orient(p1, p2, q1), orient(p1, p2, q2)
    if d1 * d2 < 0 and d3 * d4 < 0:
        return True
    return any(d == 0 and within(a, b, c) for d, a, b, c in
               ((d1, q1, q2, p1), (d2, q1, q2, p2), (d3, p1, p2, q1), (d4, p1, p2, q2)))


def test_the_all_pairs_crossing_check_finds_what_a_pair_by_pair_loop_finds():
    rng = np.random.default_rng(24)
    for trial in range(300):
        k = int(rng.integers(3, 9))
        points = rng.integers(0, 6, (k, 2)).astype(np.float64)  # a small grid: many touching and collinear
        edges = [(points[i], points[(i + 1) % k]) for i in range(k)]
        expected = next(((i + 1, j + 1) for i, j in itertools.combinations(range(k), 2)
                         if j > i + 1 and not (i == 0 and j == k - 1) and _touch_one_pair(*edges[i], *edges[j])),
                        None)
        assert first_crossing(points) == expected, (trial, points.tolist())


def test_yaml_reads_like_json_and_dates_stay_text(tmp_path):
    pytest.importorskip("yaml")
    data = {"coordinates": "normalized", "streams": {"cam0": {"zones": [
        {"name": "2024-05-01", "polygon": [[0.1, 0.1], [0.9, 0.1], [0.5, 0.9]], "classes": ["ellipse"],
         "dwell_limit_s": 2.5, "anchor": "bottom_center"}]}}}
    json_path, yaml_path = tmp_path / "z.json", tmp_path / "z.yml"
    json_path.write_text(json.dumps(data))
    yaml_path.write_text("coordinates: normalized\nstreams:\n  cam0:\n    zones:\n      - name: 2024-05-01\n"
                         "        polygon: [[0.1, 0.1], [0.9, 0.1], [0.5, 0.9]]\n        classes: [ellipse]\n"
                         "        dwell_limit_s: 2.5\n        anchor: bottom_center\n")
    a, b = (load_zone_file(p, ["cam0"], CLASSES)["cam0"].zones[0] for p in (json_path, yaml_path))
    assert (a.name, a.classes, a.dwell_limit_s, a.anchor, a.normalized) == \
        (b.name, b.classes, b.dwell_limit_s, b.anchor, b.normalized) == ("2024-05-01", [1], 2.5, "bottom_center", True)
    assert np.array_equal(a.points, b.points)


def test_a_key_given_twice_is_refused(tmp_path):
    path = tmp_path / "zones.json"
    path.write_text('{"lines": [], "lines": []}')
    assert "line 1, column 2: the key 'lines' is given twice" in refused(
        path, lambda p: load_zone_file(p, ["cam0"], CLASSES))


def test_as_many_sources_as_the_limit_are_read(tmp_path):
    listing = tmp_path / "sources.txt"
    listing.write_text("\ufeff# a byte-order mark, then the sources\n"
                       + "".join(f"s{i}=v{i}.mp4\n" for i in range(MAX_STREAMS)))
    specs = stream_specs([], listing)
    assert len(specs) == MAX_STREAMS and specs[-1].name == f"s{MAX_STREAMS - 1}"
    with pytest.raises(UserError, match=f"more than {MAX_STREAMS}"):
        stream_specs(["0"], listing)  # one --source more


def test_the_device_python_reads_yaml_zones_and_refuses_aliases(tmp_path):
    """Under Debian's Python (numpy 1.x, the distribution's PyYAML), as on a Jetson."""
    from tests.system_python import run_system_python

    good, bomb = tmp_path / "good.yaml", tmp_path / "bomb.yaml"
    good.write_text("zones:\n  - {name: bay, polygon: [[0, 0], [9, 0], [9, 9]], dwell_limit_s: 3}\n")
    bomb.write_bytes(alias_bomb())
    code = (f"import sys; sys.path.insert(0, {str(Path(__file__).resolve().parents[1])!r})\n"
            "from analytics.zone_file import load_zone_file\nfrom runtimes.errors import UserError\n"
            f"print(load_zone_file({str(good)!r}, ['cam0'], ['bg', 'a'])['cam0'].zones[0].points.tolist())\n"
            f"try:\n    load_zone_file({str(bomb)!r}, ['cam0'], ['bg', 'a'])\n"
            "except UserError as exc:\n    print(exc)\n")
    result = run_system_python(code, "python3-numpy python3-yaml")
    assert result.returncode == 0, result.stderr[-2000:]
    points, refusal = result.stdout.strip().splitlines()
    assert points == "[[0.0, 0.0], [9.0, 0.0], [9.0, 9.0]]" and "aliases (*a0) are not read" in refusal
