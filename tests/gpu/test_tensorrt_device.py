"""TensorRT on a real GPU (a Jetson or a desktop with TensorRT and pycuda). Skipped elsewhere, with the
reason. Run on the device from the repository root:

    python3 -m pytest -m gpu tests/gpu -s

It builds the demo model's engines with the toolkit's own CLI and checks them against ONNX Runtime.
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest

from calibration.evaluation import evaluate_detector
from calibration.images import read_image
from calibration.voc import VOCDataset
from runtimes.loader import load_detector
from runtimes.tensorrt_support import Capabilities, parse_version, unavailable_reason
from tests.matching import matched

ROOT = Path(__file__).resolve().parents[2]
REASON = unavailable_reason()
pytestmark = [pytest.mark.gpu, pytest.mark.skipif(REASON is not None, reason=f"needs TensorRT on a GPU: {REASON}")]


def _build(out: Path, *flags: str) -> str:
    result = subprocess.run([sys.executable, "export/build_engine.py", "--target", "tensorrt", "--output", str(out),
                             *flags], cwd=ROOT, capture_output=True, text=True, timeout=3600)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
    return result.stdout


@pytest.fixture(scope="module")
def engines(demo_model, tmp_path_factory):
    """{name: engine path} for fp32, fp16, int8 (the default route), int8 explicit and fp32 with engine NMS."""
    out = tmp_path_factory.mktemp("engines")
    built = {}
    for name, flags in (("fp32", ()), ("fp16", ("--fp16",)), ("int8", ("--int8",)),
                        ("fp32_nms", ("--nms", "engine"))):
        _build(out, *flags)
        suffix = "_nms" if name.endswith("_nms") else ""
        built[name] = out / f"ssdlite320_shapes_{name.split('_')[0]}{suffix}.engine"
    explicit = tmp_path_factory.mktemp("explicit")
    _build(explicit, "--int8", "--int8-route", "explicit")
    built["int8_explicit"] = explicit / "ssdlite320_shapes_int8.engine"
    return built


def _test_split(demo_model, detector):
    return VOCDataset(demo_model[2], "2007", "test", detector.class_names[1:])


def _frames(demo_model, count=30):
    folder = demo_model[2] / "VOCdevkit" / "VOC2007" / "JPEGImages"
    return [read_image(p)[0] for p in sorted(folder.glob("*.jpg"))[:count]]


def _assert_same_detections(reference, other, frames) -> None:
    """At least 99% of ``reference``'s detections scoring 0.3 or more found by ``other`` at IoU >= 0.99."""
    hits = total = 0
    for frame in frames:
        h, t = matched(reference(frame), other(frame), min_score=0.3, iou=0.99)
        hits, total = hits + h, total + t
    assert total > 0 and hits >= 0.99 * total


def test_fp32_engine_matches_onnxruntime(engines, demo_model):
    engine = load_detector(engines["fp32"])
    _assert_same_detections(load_detector(demo_model[1]), engine, _frames(demo_model))
    engine.close()


@pytest.mark.parametrize("name, budget", [("fp16", 0.2), ("int8", 1.0), ("int8_explicit", 1.0)])
def test_reduced_precision_map_drop(engines, demo_model, name, budget):
    fp32 = load_detector(demo_model[1])
    split = _test_split(demo_model, fp32)
    base = evaluate_detector(fp32, split, show_progress=False).map
    reduced = evaluate_detector(load_detector(engines[name]), split, show_progress=False).map
    print(f"{name}: mAP {100 * reduced:.2f} vs FP32 {100 * base:.2f}")
    assert 100 * (base - reduced) <= budget


def test_engine_nms_equals_host_nms(engines, demo_model):
    _assert_same_detections(load_detector(engines["fp32"]), load_detector(engines["fp32_nms"]), _frames(demo_model))


def test_latency_of_each_precision(engines, demo_model):
    frame = _frames(demo_model, 1)[0]
    medians = {}
    for name in ("fp32", "fp16", "int8"):
        detector = load_detector(engines[name])
        for _ in range(20):
            detector(frame)
        times = []
        for _ in range(200):
            detector(frame)
            times.append(detector.last_timings["inference"])
        medians[name] = statistics.median(times) * 1000
        detector.close()
    print("inference median ms: " + ", ".join(f"{k} {v:.2f}" for k, v in medians.items()))
    assert medians["fp16"] <= 1.1 * medians["fp32"] and medians["int8"] <= 1.1 * medians["fp32"]


def test_runner_works_from_a_worker_thread_and_releases_its_context(engines, demo_model):
    import pycuda.driver as cuda

    frame = _frames(demo_model, 1)[0]
    detector = load_detector(engines["fp32"])
    expected = detector(frame)
    results = []
    worker = threading.Thread(target=lambda: results.append(detector(frame)))
    worker.start()
    worker.join()
    np.testing.assert_allclose(results[0].boxes, expected.boxes, atol=1e-3)
    detector.close()
    assert cuda.Context.get_current() is None  # nothing left pushed on this thread


def test_calibration_cache_reused_then_rebuilt_when_the_images_change(demo_model, tmp_path):
    if not Capabilities(parse_version(__import__("tensorrt").__version__)).implicit_int8:
        pytest.skip("this TensorRT has no implicit calibration")
    first = _build(tmp_path, "--int8", "--int8-route", "implicit", "--calib-images", "64")
    assert "recalibrating" not in first
    again = _build(tmp_path, "--int8", "--int8-route", "implicit", "--calib-images", "64")
    assert "reusing it" in again
    changed = _build(tmp_path, "--int8", "--int8-route", "implicit", "--calib-images", "80")
    assert "recalibrating" in changed and "images" in changed
