"""The schedule measured at start (streams/schedule_probe.py): the choice, its cache and its key, the
static batch it compiles on OpenVINO, and what is given (--batch-size, --async-depth) obeyed unmeasured."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from streams.model_setup import ModelSetup, load, scheduled_detector
from streams.schedule_probe import ProbeOptions, candidates, choose

QUICK = dict(seconds=0.4, seconds_per_pair=0.1)  # the mechanics, not the figures: short windows


def test_candidates_and_ties_to_the_smaller_batch():
    options = ProbeOptions()
    assert candidates(4, 8, True, options) == [(1, 2), (1, 4), (2, 2), (2, 4), (4, 2), (4, 4)]
    assert candidates(3, 8, True, options) == [(1, 2), (1, 4), (2, 2), (2, 4)]  # no batch beyond the streams
    assert candidates(8, 4, True, options) == [(b, d) for b in (1, 2, 4) for d in (2, 4)]  # nor the model's
    assert candidates(4, 1, False, options) == [(1, 2), (1, 4)]  # a static batch: its own
    measured = {(1, 2): 100.0, (1, 4): 101.0, (2, 4): 102.0, (4, 2): 150.0, (4, 4): 149.0}
    assert choose(measured, 0.03) == (4, 4)  # best by far but for (4, 4), which ties it: more in flight
    assert choose({(1, 4): 100.0, (4, 4): 102.0}, 0.03) == (1, 4)  # within the tie: the smaller batch
    assert choose({(1, 4): 100.0, (4, 4): 110.0}, 0.03) == (4, 4)
    assert choose({(2, 2): 135.1, (2, 4): 138.6, (1, 4): 133.3}, 0.03) == (2, 4)  # (2, 2) ties, (1, 4) does not
    assert choose({(2, 4): 309.5, (4, 2): 312.4, (4, 4): 317.2}, options.tie) == (4, 4)  # the default tie: 1%


@pytest.fixture(scope="module")
def dynamic_onnx(tmp_path_factory):
    from export.demo_model import demo_onnx

    copy = tmp_path_factory.mktemp("probe") / "demo_dynamic.onnx"
    shutil.copy(demo_onnx(verbose=False, dynamic_batch=True), copy)
    return copy


def test_measured_once_then_cached_and_keyed(dynamic_onnx, tmp_path):
    cache = tmp_path / "schedules.json"
    lines = []
    probe = ProbeOptions(cache=cache, **QUICK)
    detector, schedule = scheduled_detector(ModelSetup(str(dynamic_onnx)), 2, lines.append, probe)
    with detector:
        assert detector.max_batch == schedule.batch  # compiled for the batch chosen
        assert "schedule measured in" in schedule.reason and "1x2" in schedule.reason and "2x4" in schedule.reason
    entry, = json.loads(cache.read_text())["entries"]
    assert (entry["batch"], entry["depth"]) == (schedule.batch, schedule.depth)
    assert entry["key"]["streams"] == 2 and entry["key"]["runtime"] == "onnxruntime" and entry["key"]["cores"] >= 1
    assert set(entry["fps"]) == {"1x2", "1x4", "2x2", "2x4"} and min(entry["fps"].values()) > 0

    # The same model, runtime, options, streams and machine: from the cache, unmeasured; the thresholds are
    # not part of the key.
    detector, again = scheduled_detector(ModelSetup(str(dynamic_onnx), score_threshold=0.6), 2, lines.append, probe)
    detector.close()
    assert (again.batch, again.depth) == (schedule.batch, schedule.depth) and f"from {cache}" in again.reason
    # Another stream count, another load option, another model's content: measured again, entries kept apart.
    import onnx

    changed = onnx.load(str(dynamic_onnx))
    changed.doc_string = "another model"
    onnx.save(changed, str(tmp_path / "changed.onnx"))
    one_pair = ProbeOptions(cache=cache, batches=(1,), depths=(2,), seconds=0.1)
    for setup, streams in ((ModelSetup(str(dynamic_onnx)), 3), (ModelSetup(str(dynamic_onnx), options={"threads": 1}),
                                                                2), (ModelSetup(str(tmp_path / "changed.onnx")), 2)):
        detector, other = scheduled_detector(setup, streams, lines.append, one_pair)
        detector.close()
        assert "schedule measured in" in other.reason
    assert len(json.loads(cache.read_text())["entries"]) == 4
    assert not lines  # nothing to complain about


def test_bad_cache_files_are_measured_over(dynamic_onnx, tmp_path):
    cache = tmp_path / "schedules.json"
    lines = []
    setup = ModelSetup(str(dynamic_onnx))
    quick = dict(batches=(1,), depths=(2,), seconds=0.1)
    for bad in ("{not json", " " * (1 << 20) + "{}"):  # (a file larger than 1 MB is not the cache's)
        cache.write_text(bad)
        lines.clear()
        detector, schedule = scheduled_detector(setup, 2, lines.append, ProbeOptions(cache=cache, **quick))
        detector.close()
        assert "schedule measured in" in schedule.reason and len(json.loads(cache.read_text())["entries"]) == 1
        assert len(lines) == 1 and "unreadable" in lines[0] and "measuring again" in lines[0]
    folder = tmp_path / "a-folder"
    folder.mkdir()  # not a regular file: never written over; the run goes on
    lines.clear()
    detector, schedule = scheduled_detector(setup, 2, lines.append, ProbeOptions(cache=folder, **quick))
    detector.close()
    assert folder.is_dir() and len(lines) == 2 and "not written" in lines[1]


def test_given_knobs_and_one_stream_are_not_measured(dynamic_onnx, tmp_path):
    cache = tmp_path / "schedules.json"
    probe = ProbeOptions(cache=cache, **QUICK)
    for setup, streams in ((ModelSetup(str(dynamic_onnx), batch_size=2), 4),
                           (ModelSetup(str(dynamic_onnx), async_depth=3), 4), (ModelSetup(str(dynamic_onnx)), 1)):
        detector, schedule = scheduled_detector(setup, streams, lambda _: None, probe)
        detector.close()
        assert "measured" not in schedule.reason
    assert not cache.exists()
    detector, schedule = scheduled_detector(ModelSetup(str(dynamic_onnx)), 4, lambda _: None, None)  # the rule
    detector.close()
    assert (schedule.batch, schedule.depth) == (1, 4) and not cache.exists()


def test_openvino_static_batch_pads_partial_calls(dynamic_onnx):
    """A dynamic-batch model compiled by OpenVINO for exactly 4 frames takes 1 to 4 (padded) and gives each
    frame what batch 1 gives it."""
    from runtimes.loader import registered_runtimes

    static = dict(registered_runtimes()["openvino"].static_batch_options)
    rng = np.random.default_rng(1)
    frames = [rng.integers(0, 256, (240, 320, 3), dtype=np.uint8) for _ in range(3)]
    setup = ModelSetup(str(dynamic_onnx), runtime="openvino")
    with load(ModelSetup(str(dynamic_onnx), "openvino", options=static), max_batch=4) as four, \
            load(setup, max_batch=1) as one:
        assert four.compiled.input(0).get_partial_shape()[0].get_length() == 4  # static, not 1..4
        with four.requests(2) as requests:
            requests.submit(frames, tag="three")
            requests.submit(frames[:1], tag="one")
            results = requests.close()
        singles = [one(frame) for frame in frames]
    assert [r.tag for r in results] == ["three", "one"]
    for got, want in zip(results[0].detections + results[1].detections, singles + singles[:1]):
        assert len(got) == len(want)
        np.testing.assert_allclose(got.boxes, want.boxes, atol=1e-2)
        np.testing.assert_allclose(got.scores, want.scores, atol=1e-4)
