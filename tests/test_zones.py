"""Zones and lines on scripted scenes through the real tracker: exact crossing counts per class and
direction, dwell within one frame, normalised coordinates, the overlay, and bad zone files and options
(one clear line each)."""

from __future__ import annotations

import argparse
import json
from typing import Any, Dict, List, Sequence, Tuple

import numpy as np
import pytest

from analytics.cli import add_arguments, from_args
from analytics.pipeline import Analytics
from analytics.tracker import ByteTracker
from analytics.zone_file import load_zone_file, parse_zones
from analytics.zones import StreamCounter, points_in_polygon
from runtimes.detections import Detections
from runtimes.errors import UserError

CLASSES = ["__background__", "ellipse", "rectangle", "triangle", "star", "cross"]
FPS = 10.0
SIZE = (640, 480)  # width, height


def _detections(objects: Sequence[Tuple[float, float, int]], size: float = 40.0) -> Detections:
    """Objects (cx, cy, label) -> Detections with square boxes, score 0.9."""
    boxes = np.array([[x - size / 2, y - size / 2, x + size / 2, y + size / 2] for x, y, _ in objects],
                     np.float32).reshape(-1, 4)
    return Detections(boxes, np.full(len(objects), 0.9, np.float32),
                      np.array([lab for _, _, lab in objects], np.int64), CLASSES)


def crossing_scene() -> Tuple[List[Detections], Dict[str, Dict[str, int]]]:
    """80 frames around a horizontal line y = 240 from x = 100 to 540 (drawn left to right: down is "in").

    Returns the detections per frame and the counts a correct counter gives, per class.
    """
    paths = []  # (label, start frame, x0, y0, vx, vy), 8 px per frame vertically
    paths.append((1, 0, 150, 100, 0, 8))      # ellipse down: in
    paths.append((1, 5, 250, 120, 0, 8))      # ellipse down: in
    paths.append((2, 0, 350, 380, 0, -8))     # rectangle up: out
    paths.append((4, 10, 450, 400, 1, -8))    # star up: out
    paths.append((3, 0, 600, 100, 0, 8))      # triangle down beyond the segment's end: no count
    frames = []
    for t in range(80):
        objects = []
        for label, start, x0, y0, vx, vy in paths:
            if t >= start:
                y = y0 + vy * (t - start)
                if 20 < y < 460:
                    objects.append((x0 + vx * (t - start), y, label))
        # a star that jitters just above the line, never crossing it
        objects.append((200 + 5 * ((t // 3) % 2), 228 + 3 * (t % 2), 4))
        # a cross that crosses down (in) at frame ~15, then back up (out) at frame ~45
        y = 180 + 6 * t if t < 30 else 360 - 6 * (t - 30)
        objects.append((500, y, 5))
        frames.append(_detections(objects))
    expected = {"ellipse": {"in": 2, "out": 0}, "rectangle": {"in": 0, "out": 1}, "star": {"in": 0, "out": 1},
                "cross": {"in": 1, "out": 1}}
    return frames, expected


def run_counter(frames: List[Detections], spec_data: dict, stream: str = "cam0"):
    spec = parse_zones(spec_data, [stream], CLASSES)[stream]
    tracker = ByteTracker(min_hits=2, num_classes=len(CLASSES))
    counter = StreamCounter(stream, spec, CLASSES)
    events = []
    for t, dets in enumerate(frames):
        tracks = tracker.update(dets.boxes, dets.scores, dets.labels)
        events += counter.update(t, t / FPS, tracks, SIZE)
    return counter, events


LINE = {"lines": [{"name": "gate", "points": [[100, 240], [540, 240]]}]}


def test_line_counts_every_crossing_once_per_class_and_direction():
    frames, expected = crossing_scene()
    counter, events = run_counter(frames, LINE)
    counts = counter.counts()["lines"]["gate"]
    assert counts["by_class"] == expected
    assert (counts["in"], counts["out"]) == (3, 3)
    crossed = [e for e in events if e.type == "line_crossed"]
    assert len(crossed) == 6
    # the cross: one track, counted in then out
    cross_events = [(e.direction, e.track_id) for e in crossed if e.class_name == "cross"]
    assert [d for d, _ in cross_events] == ["in", "out"] and cross_events[0][1] == cross_events[1][1]
    assert len({e.track_id for e in crossed}) == 5  # every other track once


def test_normalised_coordinates_count_the_same():
    frames, expected = crossing_scene()
    w, h = SIZE
    spec = {"coordinates": "normalized",
            "lines": [{"name": "gate", "points": [[100 / w, 240 / h], [540 / w, 240 / h]]}]}
    counter, _ = run_counter(frames, spec)
    assert counter.counts()["lines"]["gate"]["by_class"] == expected


def test_class_filter_and_reversed_line_direction():
    frames, _ = crossing_scene()
    spec = {"lines": [{"name": "gate", "points": [[540, 240], [100, 240]], "classes": ["ellipse", "cross"]}]}
    counter, _ = run_counter(frames, spec)
    assert counter.counts()["lines"]["gate"]["by_class"] == {"ellipse": {"in": 0, "out": 2},
                                                             "cross": {"in": 1, "out": 1}}


def test_zone_dwell_is_measured_within_one_frame_and_the_limit_fires_once():
    # A rectangle walks right at 5 px/frame through a zone x in [200, 400]: its centre (97 + 5 t) is inside
    # on frames 21..60 (3.9 s at 10 FPS from the first to the last); a second object stays outside.
    frames = [_detections([(97 + 5 * t, 240, 2), (100, 80, 1)]) for t in range(90)]
    zone = {"zones": [{"name": "bay", "polygon": [[200, 150], [400, 150], [400, 330], [200, 330]],
                       "dwell_limit_s": 2.0}]}
    counter, events = run_counter(frames, zone)
    enter = [e for e in events if e.type == "zone_enter"]
    leave = [e for e in events if e.type == "zone_leave"]
    over = [e for e in events if e.type == "dwell_exceeded"]
    assert len(enter) == len(leave) == len(over) == 1
    assert enter[0].frame == 21 and leave[0].frame == 61  # the first frame inside, the first outside
    assert abs(leave[0].dwell_s - (60 - 21) / FPS) <= 1 / FPS + 1e-9
    assert leave[0].dwell_frames == 40
    assert over[0].frame == 21 + 20 and abs(over[0].dwell_s - 2.0) < 1e-9
    assert enter[0].class_name == "rectangle" and enter[0].zone == "bay"
    assert counter.counts()["zones"]["bay"] == {"total": 0, "by_class": {}, "entered": 1}


def test_zone_occupancy_per_class_while_inside():
    frames = [_detections([(300, 240, 2), (320, 260, 1), (330, 200, 1), (50, 50, 3)]) for _ in range(5)]
    zone = {"zones": [{"name": "bay", "polygon": [[200, 150], [400, 150], [400, 330], [200, 330]]}]}
    counter, events = run_counter(frames, zone)
    assert counter.counts()["zones"]["bay"]["by_class"] == {"rectangle": 1, "ellipse": 2}
    assert sum(e.type == "zone_enter" for e in events) == 3


def test_point_in_polygon_concave():
    poly = np.array([[0, 0], [10, 0], [10, 10], [5, 4], [0, 10]], float)  # a notch from the top
    pts = np.array([[5, 2], [5, 8], [1, 8], [9, 8], [11, 5]], float)
    assert points_in_polygon(pts, poly).tolist() == [True, False, True, True, False]


def _args(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    return parser.parse_args(list(argv))


def _zone_file(tmp_path, data) -> str:
    path = tmp_path / "zones.json"
    path.write_text(json.dumps(data))
    return str(path)


@pytest.mark.parametrize("data, words", [
    ({"zones": [{"name": "a", "polygon": [[0, 0], [10, 0]]}]}, "needs at least 3 points"),
    ({"zones": [{"name": "a", "polygon": [[0, 0], [10, 10], [10, 0], [0, 10]]}]}, "edges 1 and 3 cross"),
    ({"zones": [{"name": "a", "polygon": [[0, 0], [5, 5], [10, 10]]}]}, "has no area"),
    ({"zones": [{"name": "a", "polygon": "0,0 1,1"}]}, "list of [x, y] number pairs"),
    ({"streams": {"cam9": {"zones": []}}}, "stream 'cam9' is not one of this run's streams"),
    ({"zones": [{"name": "a", "polygon": [[0, 0], [9, 0], [9, 9]], "classes": ["dog"]}]},
     "class 'dog' is not among the model's classes"),
    ({"coordinates": "normalized", "lines": [{"name": "l", "points": [[0, 0], [2, 1]]}]}, "within 0..1"),
    ({"lines": [{"name": "l", "points": [[0, 0], [1, 1], [2, 2]]}]}, "exactly 2 points"),
    ({"zones": [{"name": "a", "polgon": [[0, 0], [9, 0], [9, 9]]}]}, "unknown key 'polgon'"),
])
def test_bad_zone_files_fail_with_one_clear_line(tmp_path, data, words):
    args = _args("--zones", _zone_file(tmp_path, data), "--events", str(tmp_path / "ev.jsonl"))
    with pytest.raises(UserError) as info:
        from_args(args, ["cam0"], CLASSES, log=lambda _: None)
    message = str(info.value)
    assert words in message and "\n" not in message and str(tmp_path / "zones.json") in message


def test_bad_options_fail_with_one_clear_line(tmp_path):
    zones = _zone_file(tmp_path, LINE)
    cases = [
        (("--zones", zones, "--webhook", "ftp://127.0.0.1/x"), "not an http:// or https:// URL"),
        (("--zones", zones, "--mqtt", "127.0.0.1:notaport/t"), "is not a number in 1..65535"),
        (("--webhook", "http://127.0.0.1:1/x"), "--webhook needs --zones"),
        (("--track", "--track-low-score", "0.7"), "above --track-high-score"),
        (("--track", "--track-match-iou", "1.5"), "--track-match-iou 1.5: give a number between 0 and 1"),
        (("--zones", str(tmp_path / "missing.json")), "no such file"),
    ]
    for argv, words in cases:
        with pytest.raises(UserError) as info:
            from_args(_args(*argv), ["cam0"], CLASSES, log=lambda _: None)
        assert words in str(info.value) and "\n" not in str(info.value), argv


def test_unreachable_broker_fails_at_start(tmp_path):
    import socket

    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    args = _args("--zones", _zone_file(tmp_path, LINE), "--events", str(tmp_path / "e.jsonl"),
                 "--mqtt", f"127.0.0.1:{port}/cams")
    with pytest.raises(UserError) as info:
        from_args(args, ["cam0"], CLASSES, log=lambda _: None)
    assert f"--mqtt 127.0.0.1:{port}: cannot connect to the MQTT broker" in str(info.value)
    assert "\n" not in str(info.value)


def test_yaml_zone_file_reads_like_json(tmp_path):
    pytest.importorskip("yaml")
    path = tmp_path / "zones.yaml"
    path.write_text("lines:\n  - name: gate\n    points: [[100, 240], [540, 240]]\n")
    spec = load_zone_file(path, ["cam0"], CLASSES)["cam0"]
    assert spec.lines[0].name == "gate" and spec.lines[0].points.tolist() == [[100, 240], [540, 240]]


def test_analytics_records_tracks_events_and_draws(tmp_path):
    args = _args("--zones", _zone_file(tmp_path, LINE), "--events", str(tmp_path / "events.jsonl"),
                 "--track-min-hits", "2", "--counts-every", "2")
    lines: List[str] = []
    analytics = from_args(args, ["cam0"], CLASSES, log=lines.append)
    assert isinstance(analytics, Analytics) and "1 zone(s)/line(s)" in lines[0]
    frames, expected = crossing_scene()
    records = []
    blank = np.zeros((SIZE[1], SIZE[0], 3), np.uint8)
    for t, dets in enumerate(frames):
        record: Dict[str, Any] = {"stream": "cam0", "frame": t, "timestamp": t / FPS,
                                  "detections": dets.to_list()}
        frame = blank.copy()
        analytics.process("cam0", record, dets, frame)
        records.append((record, frame))
    assert analytics.counts("cam0")["lines"]["gate"]["by_class"] == expected
    record, frame = records[40]
    assert {t["name"] for t in record["tracks"]} >= {"cross", "star"}
    assert all(set(t) == {"id", "label", "name", "score", "box"} for t in record["tracks"])
    assert frame[240, 320].any() and not blank.any()  # the line is drawn across the middle
    summary = analytics.close(timeout_s=2.0)
    written = [json.loads(x) for x in (tmp_path / "events.jsonl").read_text().splitlines()]
    emitted = [e for r, _ in records for e in r["events"]]
    assert written == emitted and [e["seq"] for e in written] == list(range(len(written)))
    assert sum(e["type"] == "counts" for e in written) == 3  # at 2, 4 and 6 s of stream time
    assert summary["sinks"][f"file {tmp_path / 'events.jsonl'}"] == {"sent": len(written), "failed": 0,
                                                                     "queued": 0}
    assert summary["streams"]["cam0"]["lines"]["gate"]["in"] == 3


def test_streams_processed_from_their_own_threads_count_independently(tmp_path):
    import threading

    names = [f"cam{i}" for i in range(4)]
    args = _args("--zones", _zone_file(tmp_path, LINE), "--events", str(tmp_path / "events.jsonl"),
                 "--track-min-hits", "2", "--counts-every", "0")
    analytics = from_args(args, names, CLASSES, log=lambda _: None)
    assert analytics is not None
    frames, expected = crossing_scene()
    errors: List[BaseException] = []

    def play(stream: str) -> None:
        try:
            for t, dets in enumerate(frames):
                analytics.process(stream, {"frame": t, "timestamp": t / FPS}, dets,
                                  np.zeros((SIZE[1], SIZE[0], 3), np.uint8))
                analytics.counts(names[(t + 1) % len(names)])  # a reader on another stream meanwhile
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=play, args=(n,)) for n in names]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    analytics.close(timeout_s=2)
    assert not errors
    for name in names:
        assert analytics.counts(name)["lines"]["gate"]["by_class"] == expected
    written = [json.loads(x) for x in (tmp_path / "events.jsonl").read_text().splitlines()]
    for name in names:
        assert [e["seq"] for e in written if e["stream"] == name] == list(range(6))


def test_nothing_asked_gives_no_analytics():
    assert from_args(_args(), ["cam0"], CLASSES) is None
