"""The running box (issue #27) at the library level, on the demo model and generated videos: two models side
by side, and one box changed while it runs: a stream added, a zone patched, FP32 swapped for INT8, a swap to
other class names refused, a stream removed with its outputs complete. Stalls are measured from the frames'
timestamps (capture times); the only fixed times are the issue's (1 s, 5 s)."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path
from typing import Any, Dict, List

import cv2
import numpy as np
import pytest

from tests.test_camera import write_video
from tests.test_camera_analytics import sequence_video

LEFT = {"coordinates": "normalized", "zones": [{"name": "left", "polygon": [[0, 0], [0.5, 0], [0.5, 1], [0, 1]]}]}
WHOLE = {"coordinates": "normalized", "zones": [{"name": "whole", "polygon": [[0, 0], [1, 0], [1, 1], [0, 1]]}]}


@pytest.fixture(scope="module")
def sequences():
    from calibration.synthetic_tracks import ensure_tracking_set

    return sorted(p for p in ensure_tracking_set().iterdir() if (p / "img1").is_dir())


def box(data: Dict[str, Any], base: Path):
    from box.runner import BoxRunner
    from boxconfig.__main__ import camera_defaults
    from boxconfig.loading import check_config

    defaults = camera_defaults()
    return BoxRunner(check_config(data, "test", defaults, base), log=lambda _: None), defaults


def records(path: Path) -> List[Dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def longest_gap(lines: List[Dict[str, Any]]) -> float:
    times = [r["timestamp"] for r in lines]
    return max(np.diff(times)) if len(times) > 1 else 0.0


def test_two_models_side_by_side_each_serve_their_streams(tmp_path, demo_model, demo_irs, sequences):
    video = sequence_video(sequences[0], tmp_path / "a.avi")
    runner, _ = box({"models": {"ir": {"path": str(demo_irs["fp32"])}, "onnx": {"path": str(demo_model[1])}},
                     "streams": [{"name": "a", "source": str(video), "model": "ir", "max_frames": 20},
                                 {"name": "b", "source": str(video), "model": "onnx", "max_frames": 20}],
                     "outputs": {"headless": True, "json": "out"}}, tmp_path)
    stop = threading.Event()
    runner.open(stop)
    kinds = {name: group.detector.describe().split()[0] for name, group in runner.groups.items()}
    summary = runner.run(stop)
    assert kinds == {"ir": "openvino", "onnx": "onnxruntime"}
    assert {m: list(s["streams"]) for m, s in summary["models"].items()} == {"ir": ["a"], "onnx": ["b"]}
    for name in "ab":
        lines = records(tmp_path / "out" / f"{name}.jsonl")
        assert [r["frame"] for r in lines] == list(range(20)) and {r["stream"] for r in lines} == {name}


def same(record: List[Dict[str, Any]], detections) -> bool:
    if len(record) != len(detections):
        return False
    return all(r["label"] == int(label) and abs(r["score"] - float(score)) < 1e-3 and
               np.allclose(r["box"], box_, atol=0.5)
               for r, label, score, box_ in zip(record, detections.labels, detections.scores, detections.boxes))


class OwnDetections:
    """A model's own detections of a video's frames (by index), each distinct frame detected once, on demand."""

    def __init__(self, model: Path, video: Path, threshold: float) -> None:
        from runtimes.loader import load_detector

        capture = cv2.VideoCapture(str(video))
        self.frames = []
        while True:
            ok, image = capture.read()
            if not ok:
                break
            self.frames.append(image)
        self.detector = load_detector(str(model), score_threshold=threshold)
        self.seen: Dict[bytes, Any] = {}

    def __call__(self, index: int):
        key = self.frames[index].tobytes()
        if key not in self.seen:
            self.seen[key] = self.detector(self.frames[index])
        return self.seen[key]


def other_classes_model(ir: Path, folder: Path) -> Path:
    """The demo IR with another name for its first class in its metadata (the same weights, input, batch)."""
    import shutil

    path = folder / "renamed.xml"
    path.write_text(ir.read_text().replace("&quot;ellipse&quot;", "&quot;oval&quot;"))
    shutil.copy(ir.with_suffix(".bin"), path.with_suffix(".bin"))
    return path


def test_a_running_box_takes_streams_zones_and_a_model_without_stalling(tmp_path, demo_model, demo_irs, sequences):
    from box.control import ControlError
    from box.control_impl import BoxController

    live = write_video(tmp_path / "live.avi", sorted((sequences[0] / "img1").glob("*.jpg")), (480, 360), 15.0, 3)
    filed = write_video(tmp_path / "file.avi", sorted((sequences[1] / "img1").glob("*.jpg")), (480, 360), 15.0, 3)
    runner, defaults = box({"models": {"m": {"path": str(demo_irs["fp32"])}},
                            "streams": [{"name": "s1", "source": str(live), "realtime": True, "zones": LEFT}],
                            "sinks": {"events_file": "events.jsonl"},
                            "outputs": {"headless": True, "json": "out", "video": "videos"}}, tmp_path)
    control = BoxController(runner, defaults)
    stop = threading.Event()
    runner.open(stop)
    threshold = runner.groups["m"].detector.score_threshold
    result: Dict[str, Any] = {}
    worker = threading.Thread(target=lambda: result.update(runner.run(stop)))
    worker.start()
    try:
        frames = lambda name: control.runner.statuses().get(name, {}).get("frames", 0)
        while frames("s1") < 10:
            time.sleep(0.05)
        for bad, status in (({"name": "a/b", "source": str(filed)}, 400), ({"name": "s3"}, 400),
                            ({"name": "s1", "source": str(filed)}, 409)):
            with pytest.raises(ControlError) as refused:
                control.add_stream(bad)
            assert refused.value.status == status
        with pytest.raises(ControlError) as refused:
            control.patch_stream("nope", {"zones": WHOLE})
        assert refused.value.status == 404

        added = time.monotonic()
        control.add_stream({"name": "s2", "source": str(filed)})
        while frames("s2") == 0:
            assert time.monotonic() - added < 5.0, "no frame of the added stream within 5 s"
            time.sleep(0.02)
        control.swap_model("m", {"path": str(demo_irs["int8"])})
        assert runner.groups["m"].detector.meta.precision == "int8"
        with pytest.raises(ControlError) as refused:
            control.swap_model("m", {"path": str(other_classes_model(Path(demo_irs["fp32"]), tmp_path))})
        assert refused.value.status == 422 and "class_map" in refused.value.message
        before = frames("s1")
        control.patch_stream("s1", {"zones": WHOLE})
        patched = time.monotonic()
        while frames("s1") < before + 15 or time.monotonic() - patched < 1.0:
            time.sleep(0.05)  # the old model kept running: s1 goes on after the refusal
        removed = control.remove_stream("s1")
    finally:
        worker.join(60)
        stop.set()
    assert not worker.is_alive() and result["models"]["m"]["streams"]["s2"]["frames"] == 240

    s1 = records(tmp_path / "out" / "s1.jsonl")  # complete: renamed into place when s1 was removed
    assert len(s1) == removed["frames"] and longest_gap(s1) <= 1.0
    video = cv2.VideoCapture(str(tmp_path / "videos" / "s1.mp4"))
    assert int(video.get(cv2.CAP_PROP_FRAME_COUNT)) == removed["frames"]
    zone_events = [e["zone"] for r in s1 for e in r["events"] if e.get("zone")]
    assert "whole" in zone_events and "left" not in zone_events[zone_events.index("whole"):]
    assert list(result["analytics"]["streams"]["s1"]["zones"]) == ["whole"]

    s2 = records(tmp_path / "out" / "s2.jsonl")
    assert [r["frame"] for r in s2] == list(range(240)) and longest_gap(s2) <= 1.0  # no frame lost in the swap
    int8, fp32 = (OwnDetections(demo_irs[p], filed, threshold) for p in ("int8", "fp32"))
    is_int8 = [same(r["detections"], int8(r["frame"])) for r in s2]
    cut = max((i for i, ok in enumerate(is_int8) if not ok), default=-1) + 1  # from here on, INT8's records
    assert 0 < cut < len(s2) and all(same(r["detections"], fp32(r["frame"])) for r in s2[:cut] if not
                                     is_int8[r["frame"]])  # before it, each record is FP32's or both models'
    int8.detector.close()
    fp32.detector.close()


def test_a_class_map_gives_the_new_models_detections_the_running_names():
    from box.control import ControlError
    from box.model_swap import relabelling
    from runtimes.detections import Detections

    old, new = ["bg", "ellipse", "star"], ["bg", "star", "oval"]
    relabel = relabelling("m", old, new, {"oval": "ellipse"})
    found = Detections(np.zeros((3, 4), np.float32), np.ones(3, np.float32), np.array([1, 2, 2]), new)
    assert relabel is not None and relabel(found).names == ["star", "ellipse", "ellipse"]
    assert relabel(Detections.empty(old)).class_names == old  # the old model's, drained after the swap
    for class_map, says in ((None, "class_map"), ({"oval": "square"}, "square"), ({"ring": "star"}, "ring"),
                            ({"star": "star"}, "oval")):
        with pytest.raises(ControlError) as refused:
            relabelling("m", old, new, class_map)
        assert refused.value.status == 422 and says in refused.value.message


def test_a_reload_adds_a_stream_and_gives_the_others_the_new_top_level_zones(tmp_path, demo_irs, sequences):
    from box.control_impl import BoxController
    from box.runner import BoxRunner
    from boxconfig.__main__ import camera_defaults
    from boxconfig.loading import load_config

    live = write_video(tmp_path / "live.avi", sorted((sequences[0] / "img1").glob("*.jpg")), (480, 360), 15.0, 2)
    data: Dict[str, Any] = {"models": {"m": {"path": str(demo_irs["fp32"])}},
                            "streams": [{"name": "s1", "source": str(live), "realtime": True}],
                            "zones": {"streams": {"s1": LEFT}}, "outputs": {"headless": True}}
    path = tmp_path / "box.json"
    path.write_text(json.dumps(data))
    defaults = camera_defaults()
    runner = BoxRunner(load_config(path, defaults), log=lambda _: None)
    control = BoxController(runner, defaults, path)
    stop = threading.Event()
    runner.open(stop)
    worker = threading.Thread(target=runner.run, args=(stop,))
    worker.start()
    try:
        assert control.reload() == {"changes": "no change", "restart_needed": []}
        data["streams"].append({"name": "s2", "source": str(live), "realtime": True, "max_frames": 5})
        data["zones"] = {"streams": {"s1": WHOLE}}
        path.write_text(json.dumps(data))
        answer = control.reload()
        assert answer["changes"] == "streams +s2; top-level zones changed"
        reloaded = runner.statuses()["s1"]["frames"]
        while runner.statuses()["s1"]["frames"] < reloaded + 3:  # (normalized zones are scaled on a frame)
            time.sleep(0.05)
        assert list(runner.analytics.counts("s1")["zones"]) == ["whole"]
        assert [s["name"] for s in control.list_streams()] == ["s1", "s2"]
    finally:
        stop.set()
        worker.join(30)
    assert not worker.is_alive()


def small_validation_set(demo_data: Path, folder: Path, count: int = 8) -> Path:
    """The first ``count`` images of the demo data set's test split, as a VOC folder of their own."""
    import shutil

    source = demo_data / "VOCdevkit" / "VOC2007"
    year = folder / "VOCdevkit" / "VOC2007"
    ids = (source / "ImageSets/Main/test.txt").read_text().split()[:count]
    for sub in ("JPEGImages", "Annotations", "ImageSets/Main"):
        (year / sub).mkdir(parents=True)
    for image_id in ids:
        shutil.copy(source / "JPEGImages" / f"{image_id}.jpg", year / "JPEGImages")
        shutil.copy(source / "Annotations" / f"{image_id}.xml", year / "Annotations")
    (year / "ImageSets/Main/test.txt").write_text("\n".join(ids) + "\n")
    return folder


def test_a_swap_is_refused_when_its_map_drops_more_than_allowed(tmp_path, demo_data, demo_irs, sequences):
    from box.control import ControlError
    from box.control_impl import BoxController

    validation = str(small_validation_set(demo_data, tmp_path / "val"))
    live = sequence_video(sequences[0], tmp_path / "live.avi")
    runner, defaults = box({"models": {"m": {"path": str(demo_irs["fp32"])}},
                            "streams": [{"name": "s1", "source": str(live), "realtime": True}],
                            "outputs": {"headless": True}}, tmp_path)
    control = BoxController(runner, defaults)
    stop = threading.Event()
    runner.open(stop)
    worker = threading.Thread(target=runner.run, args=(stop,))
    worker.start()
    try:
        # The same weights keeping only detections above 0.95: far fewer found, a lower mAP.
        with pytest.raises(ControlError) as refused:
            control.swap_model("m", {"path": str(demo_irs["fp32"]), "score_threshold": 0.95,
                                     "validation": validation, "max_map_drop": 0.01})
        assert refused.value.status == 422 and "max_map_drop" in refused.value.message
        assert runner.groups["m"].detector.score_threshold < 0.95  # the old model runs on
        running = runner.statuses()["s1"]["frames"]
        while runner.statuses()["s1"]["frames"] <= running:
            time.sleep(0.05)
    finally:
        stop.set()
        worker.join(30)
    assert not worker.is_alive()
