"""The runtime interface every backend shares: batches, requests in flight, the registry, the typed input
contract; on ONNX Runtime and OpenVINO (TensorRT's are in tests/test_tensorrt_orchestration.py, on the
labelled test double)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from calibration.images import read_image
from runtimes.errors import UserError
from runtimes.loader import load_detector, register_runtime, registered_runtimes
from runtimes.metadata import ModelMetadata
from tests.matching import assert_record_matches
from tests.reference_models import voc_mini_images

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def frames(voc_mini):
    """Frames of different sizes: the voc-mini images as they are, and some resized."""
    images = [read_image(p)[0] for p in voc_mini_images()[:8]]
    return images[:4] + [cv2.resize(im, (w, h)) for im, (w, h) in zip(images[4:], [(640, 480), (200, 900),
                                                                                      (1280, 720), (33, 47)])]


@pytest.fixture(scope="module")
def dynamic_onnx():
    from export.demo_model import demo_onnx

    return demo_onnx(verbose=False, dynamic_batch=True)


def assert_identical(batched, singles):
    assert len(batched) == len(singles)
    for got, want in zip(batched, singles):
        np.testing.assert_array_equal(got.labels, want.labels)  # labels and order exact
        np.testing.assert_allclose(got.boxes, want.boxes, atol=1e-3, rtol=0)
        np.testing.assert_allclose(got.scores, want.scores, atol=1e-5, rtol=0)


def detectors(demo_model, dynamic_onnx, demo_irs):
    """(label, detector, expected max_batch): static and dynamic batch, on both CPU runtimes."""
    _, static_onnx, _ = demo_model
    return [("onnxruntime static", load_detector(static_onnx), 1),
            ("onnxruntime dynamic", load_detector(dynamic_onnx, max_batch=4), 4),
            ("openvino IR static", load_detector(demo_irs["fp32"]), 1),
            ("openvino dynamic onnx, max 3", load_detector(dynamic_onnx, "openvino", max_batch=3), 3),
            ("openvino dynamic onnx", load_detector(dynamic_onnx, "openvino"), 8)]


@pytest.mark.parametrize("count", [1, 3, 8])
def test_detect_batch_equals_single_calls(demo_model, dynamic_onnx, demo_irs, frames, count):
    some = frames[:count] if count < 8 else frames
    for label, detector, capacity in detectors(demo_model, dynamic_onnx, demo_irs):
        assert detector.max_batch == capacity, label
        singles = [detector(frame) for frame in some]
        assert sum(len(d) for d in singles) > 20, label  # the comparison is about real detections
        assert_identical(detector.detect_batch(some), singles)
        detector.close()


def test_a_batch_is_one_network_call_up_to_max_batch(dynamic_onnx, frames):
    detector = load_detector(dynamic_onnx, max_batch=3)
    calls = []
    infer = detector.infer
    detector.infer = lambda batch: calls.append(batch.shape[0]) or infer(batch)  # type: ignore[method-assign]
    detector.detect_batch(frames)  # 8 frames: 3 + 3 + 2
    assert calls == [3, 3, 2]


@pytest.mark.parametrize("depth", [1, 2, 4])
def test_requests_in_flight_equal_sync_calls_in_submission_order(demo_model, dynamic_onnx, demo_irs, frames, depth):
    for label, detector, capacity in detectors(demo_model, dynamic_onnx, demo_irs):
        singles = [detector(frame) for frame in frames]
        got = []
        with detector.requests(depth) as requests:
            for start in range(0, len(frames), capacity):
                requests.submit(frames[start:start + capacity], tag=start)
                got.extend(requests.results())  # whatever has finished, in order
            got.extend(requests.close())
        assert [r.tag for r in got] == list(range(0, len(frames), capacity)), label
        assert_identical([d for r in got for d in r.detections], singles)
        assert all(r.timings["inference"] > 0 for r in got)
        detector.close()


def test_an_exception_inside_a_request_reaches_the_caller_in_its_place(demo_model, demo_irs, frames):
    _, onnx_path, _ = demo_model
    # The third request fails, known by its frame's size: with two in flight, the requests may finish (and
    # be post-processed) out of order, so "the third post-processing call" need not be the third request's.
    batch = list(frames[:5])
    batch[2] = cv2.resize(batch[2], (321, 123))
    for detector in (load_detector(onnx_path), load_detector(demo_irs["fp32"])):
        def failing_third(outputs, sizes, post=detector.postprocessor.batch):
            if (123, 321) in [tuple(size) for size in sizes]:
                raise RuntimeError("boom in request 3")
            return post(outputs, sizes)

        detector.postprocessor.batch = failing_third  # type: ignore[method-assign]
        requests = detector.requests(2)
        for i, frame in enumerate(batch):
            requests.submit([frame], tag=i)
        taken = []
        with pytest.raises(RuntimeError, match="boom in request 3"):
            for result in requests.results(wait=True):
                taken.append(result.tag)
        assert taken == [0, 1]  # the results before the failed one were handed on first
        assert [r.tag for r in requests.close()] == [3, 4]


def test_a_failing_network_call_reaches_the_caller(demo_model, frames):
    _, onnx_path, _ = demo_model
    detector = load_detector(onnx_path)
    infer = detector.infer

    def fails_on_the_second_call(batch, calls=[]):  # noqa: B006 (the call count)
        calls.append(1)
        if len(calls) == 2:
            raise ValueError("network failed")
        return infer(batch)

    detector.infer = fails_on_the_second_call  # type: ignore[method-assign]
    requests = detector.requests(2)
    for tag in ("good", "bad", "after"):
        requests.submit([frames[0]], tag)
    results = requests.results(wait=True)
    assert next(results).tag == "good"
    with pytest.raises(ValueError, match="network failed"):
        next(results)
    assert [r.tag for r in requests.close()] == ["after"]


def test_bad_frames_in_a_batch_are_named_by_index(demo_model, frames):
    _, onnx_path, _ = demo_model
    detector = load_detector(onnx_path)
    with pytest.raises(ValueError, match=r"frame 2 of the batch: empty image"):
        detector.detect_batch([frames[0], frames[1], np.zeros((0, 5, 3), np.uint8)])
    with pytest.raises(ValueError, match=r"frame 1 of the batch: expected an \(H, W, 3\) uint8 BGR image, got float32"):
        detector.detect_batch([frames[0], frames[1].astype(np.float32)])


def test_a_static_batch_model_asked_for_a_larger_batch_says_how_to_export_one(demo_model):
    _, onnx_path, _ = demo_model
    with pytest.raises(UserError, match="static batch of 1.*--dynamic-batch"):
        load_detector(onnx_path, max_batch=8)


def test_the_dynamic_batch_export_records_it_in_the_metadata(dynamic_onnx, demo_model):
    _, static_onnx, _ = demo_model
    assert load_detector(dynamic_onnx).meta.input.dynamic_batch
    assert load_detector(static_onnx).meta.input.batch == 1


def test_unknown_url_schemes_list_the_registered_ones():
    with pytest.raises(UserError, match=r"no runtime opens 'ftp://' URLs; registered schemes: "):
        load_detector("ftp://host/model")
    with pytest.raises(UserError, match=r"unknown model type '\.pt'"):
        runtime_for_suffix = Path(__file__).with_suffix(".pt")
        runtime_for_suffix.write_bytes(b"x")
        try:
            load_detector(runtime_for_suffix)
        finally:
            runtime_for_suffix.unlink()


def test_a_runtime_registered_in_code_opens_its_urls(demo_model, frames):
    from tests.plugins.toy_runtime import open_toy

    register_runtime("toy", ["toy://"], open_toy)
    assert "toy" in registered_runtimes()
    toy = load_detector("toy://demo")
    assert toy.backend == "toy"
    _, onnx_path, _ = demo_model
    assert_identical([toy(f) for f in frames[:3]], [load_detector(onnx_path)(f) for f in frames[:3]])
    with pytest.raises(UserError, match="knows only toy://demo"):
        load_detector("toy://other")


def plugin_path(tmp_path: Path) -> str:
    """A folder holding a distribution's metadata that declares the toy runtime through the entry point group
    a third-party package would use: importlib.metadata finds it on the path."""
    dist = tmp_path / "ssd_edge_toy-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: ssd-edge-toy\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text("[ssd_edge.runtimes]\ntoy = tests.plugins.toy_runtime:RUNTIME\n")
    return os.pathsep.join([str(tmp_path), str(ROOT)])


def test_a_runtime_from_an_entry_point_opens_in_the_camera_app(tmp_path, demo_model, voc_mini):
    from tests.test_camera import write_video

    video = write_video(tmp_path / "clip.avi", voc_mini_images()[:6])
    env = dict(os.environ, PYTHONPATH=plugin_path(tmp_path))
    out = tmp_path / "toy.jsonl"
    result = subprocess.run([sys.executable, "apps/camera.py", "--model", "toy://demo", "--source", str(video),
                             "--headless", "--json", str(out)], cwd=ROOT, env=env, capture_output=True,
                            text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "toy on CPU" in result.stdout
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    assert [line["frame"] for line in lines] == list(range(6))
    _, onnx_path, _ = demo_model
    summary = json.loads(result.stdout.strip().splitlines()[-1][len("summary: "):])
    reference = load_detector(onnx_path, score_threshold=summary["score_threshold"])  # the camera's threshold
    capture = cv2.VideoCapture(str(video))
    for line in lines:
        ok, frame = capture.read()
        assert ok
        assert_record_matches(line["detections"], reference(frame))


def test_schema_1_metadata_still_loads_with_its_input_contract():
    old = {"arch": "ssd300_vgg16", "input_height": 300, "input_width": 300, "channel_order": "RGB",
           "mean": [123.0, 117.0, 104.0], "std": [1.0, 1.0, 1.0], "class_names": ["bg", "a"],
           "output_format": "decoded", "schema": 1,
           "extra": {"build": {"normalisation_in_graph": True, "precision": "int8", "nncf": {}}}}
    meta = ModelMetadata.from_json(json.dumps(old))
    assert (meta.input.layout, meta.input.normalisation_in_graph, meta.input.channel_order) == ("NHWC", True, "RGB")
    assert (meta.precision, meta.quantization, meta.schema) == ("int8", "nncf", 2)
    qdq = dict(old, extra={"precision": "int8", "quantization": {"route": "explicit Q/DQ"}})
    meta = ModelMetadata.from_json(json.dumps(qdq))
    assert (meta.input.layout, meta.quantization) == ("NCHW", "qdq")


@pytest.mark.parametrize("text", ["[]", "null", "3", '"text"', '{"arch": "x"}',
                                  '{"schema": 2, "arch": "a", "input_height": "300", "input_width": 300, '
                                  '"channel_order": "RGB", "mean": [1, 1, 1], "std": [1, 1, 1], '
                                  '"class_names": ["bg", "a"], "output_format": "decoded", "input": [1]}'])
def test_metadata_of_the_wrong_shape_is_one_clear_error(text):
    with pytest.raises(UserError, match="SSD metadata"):
        ModelMetadata.from_json(text, "m.onnx")
