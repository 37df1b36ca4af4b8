"""TensorRT on a real GPU (a Jetson or a desktop with TensorRT and pycuda). Skipped elsewhere, with the
reason. Run on the device from the repository root:

    python3 -m pytest -m gpu tests/gpu -s

It builds the demo model's engines with the toolkit's own CLI and checks them against ONNX Runtime, then
checks on the device what the offline double (tests/tensorrt_double.py) can only model: issue #20's points
(calibration errors and batches, plugins in a fresh process, CUDA contexts at driver level, timing caches)
and issue #13's batches and requests in flight on a real engine. Speed by precision is a benchmark's job, not a
test's (it depends on the device): `python3 apps/benchmark.py --runtimes tensorrt --precisions fp32,fp16,int8`.
"""

from __future__ import annotations

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


def _run_build(out: Path, *flags: str) -> "subprocess.CompletedProcess[str]":
    return subprocess.run([sys.executable, "export/build_engine.py", "--target", "tensorrt", "--output", str(out),
                           *flags], cwd=ROOT, capture_output=True, text=True, timeout=3600)


def _build(out: Path, *flags: str) -> str:
    result = _run_build(out, *flags)
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
    assert _driver_current_context() == 0  # nor at driver level


def test_calibration_cache_reused_then_rebuilt_when_the_images_change(demo_model, tmp_path):
    if not Capabilities(parse_version(__import__("tensorrt").__version__)).implicit_int8:
        pytest.skip("this TensorRT has no implicit calibration")
    first = _build(tmp_path, "--int8", "--int8-route", "implicit", "--calib-images", "64")
    assert "recalibrating" not in first
    again = _build(tmp_path, "--int8", "--int8-route", "implicit", "--calib-images", "64")
    assert "reusing it" in again
    changed = _build(tmp_path, "--int8", "--int8-route", "implicit", "--calib-images", "80")
    assert "recalibrating" in changed and "images" in changed


# -- issue #20 on the device ------------------------------------------------------------------------------

def _implicit_int8() -> bool:
    return Capabilities(parse_version(__import__("tensorrt").__version__)).implicit_int8


def _driver_current_context() -> int:
    """cuCtxGetCurrent at driver level (pycuda's get_current only sees pycuda's own stack)."""
    import ctypes

    driver = ctypes.CDLL("libcuda.so.1")
    context = ctypes.c_void_p()
    assert driver.cuCtxGetCurrent(ctypes.byref(context)) == 0
    return int(context.value or 0)


def test_foreign_calibration_cache_fails_the_build_and_stays(demo_model, tmp_path):
    if not _implicit_int8():
        pytest.skip("this TensorRT has no implicit calibration")
    theirs = tmp_path / "theirs.cache"
    theirs.write_bytes(b"TRT-8502-EntropyCalibration2\nimages: 3c010a14\n")
    result = _run_build(tmp_path, "--int8", "--int8-route", "implicit", "--calib-cache", str(theirs))
    assert result.returncode == 2 and "not a calibration cache written by this toolkit" in result.stderr
    assert "Traceback" not in result.stderr and "Exception caught" not in result.stderr
    assert theirs.read_bytes() == b"TRT-8502-EntropyCalibration2\nimages: 3c010a14\n"
    assert not list(tmp_path.glob("*.engine"))


@pytest.mark.parametrize("batch", [None, "1,2,4"])
def test_calibrator_feeds_every_image_at_the_network_batch(demo_model, tmp_path, monkeypatch, batch):
    """Real TensorRT takes full batches of the network's (or the calibration profile's) batch: 24
    images are 24 calls at static batch 1, 4 calls at --calib-batch 6 on the dynamic export."""
    if not _implicit_int8():
        pytest.skip("this TensorRT has no implicit calibration")
    from calibration import tensorrt_calibrator
    from export.build_engine import main

    served = []
    real = tensorrt_calibrator._BatchFeed.get_batch

    def counting(self, names):
        pointers = real(self, names)
        if pointers is not None:
            served.append(self.batcher.shape[0])
        return pointers

    monkeypatch.setattr(tensorrt_calibrator._BatchFeed, "get_batch", counting)
    flags = ["--target", "tensorrt", "--int8", "--int8-route", "implicit", "--calib-images", "24",
             "--calib-batch", "6", "--output", str(tmp_path)] + (["--batch", batch] if batch else [])
    assert main(flags) == 0
    assert served == ([1] * 24 if batch is None else [6] * 4)


def test_unreadable_image_during_calibration_stops_the_build(demo_model, tmp_path, monkeypatch):
    if not _implicit_int8():
        pytest.skip("this TensorRT has no implicit calibration")
    import calibration.stream as stream_module
    from calibration.images import UnreadableImage
    from export.build_engine import main
    from runtimes.errors import UserError

    real, calls = stream_module.read_image, []

    def flaky(path):
        calls.append(path)
        if len(calls) == 16 + 5:  # selection reads the 16 once, calibration reads them again
            raise UnreadableImage(f"{path.name}: truncated JPEG")
        return real(path)

    monkeypatch.setattr(stream_module, "read_image", flaky)
    with pytest.raises(UserError, match="became unreadable during calibration"):
        main(["--target", "tensorrt", "--int8", "--int8-route", "implicit", "--calib-images", "16",
              "--output", str(tmp_path)])
    assert not list(tmp_path.glob("*.engine")) and not list(tmp_path.glob("*.calib.cache"))


def test_batch_profile_for_a_static_onnx_is_a_clean_refusal(demo_model, tmp_path):
    result = _run_build(tmp_path, "--onnx", str(demo_model[1]), "--batch", "1,2,4")
    assert result.returncode == 2 and "static batch of 1" in result.stderr and "Traceback" not in result.stderr


@pytest.fixture(scope="module")
def dynamic_engine(demo_model, tmp_path_factory):
    out = tmp_path_factory.mktemp("dynamic")
    _build(out, "--batch", "1,2,4")
    return out / "ssdlite320_shapes_fp32.engine"


def test_dynamic_batch_engine_partial_batches_equal_single_calls(dynamic_engine, demo_model):
    detector = load_detector(dynamic_engine)
    assert detector.max_batch == 4
    frames = _frames(demo_model, 7)  # two calls of 4 and 3: the second a partial batch
    single = [detector(frame) for frame in frames]
    for one, batched in zip(single, detector.detect_batch(frames)):
        np.testing.assert_allclose(batched.boxes, one.boxes, atol=1e-3)
        np.testing.assert_array_equal(batched.labels, one.labels)
    detector.close()


@pytest.mark.parametrize("depth", [1, 2, 4])
def test_requests_in_flight_equal_sync_calls_in_order(dynamic_engine, demo_model, depth):
    detector = load_detector(dynamic_engine, max_batch=2)
    frames = _frames(demo_model, 12)
    expected = detector.detect_batch(frames)
    got = []
    with detector.requests(depth) as requests:
        for start in range(0, len(frames), 2):
            requests.submit(frames[start:start + 2], tag=start)
            got.extend(requests.results())
        got.extend(requests.close())
    assert [r.tag for r in got] == list(range(0, 12, 2))
    for one, result in zip(expected, [d for r in got for d in r.detections]):
        np.testing.assert_allclose(result.boxes, one.boxes, atol=1e-3)
    detector.close()
    assert _driver_current_context() == 0


def test_max_batch_outside_the_profile_is_refused(dynamic_engine):
    from runtimes.errors import UserError

    with pytest.raises(UserError, match="profile 1..4"):
        load_detector(dynamic_engine, max_batch=8)


def test_nms_engine_loads_in_a_fresh_process(engines):
    code = ("import numpy as np; from runtimes.loader import load_detector; "
            f"d = load_detector({str(engines['fp32_nms'])!r}); d(np.full((240, 320, 3), 114, np.uint8)); d.close()")
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]


def test_no_context_current_at_driver_level_after_close_on_another_thread(engines, demo_model):
    frame = _frames(demo_model, 1)[0]
    detector = load_detector(engines["fp32"])
    detector(frame)
    closer = threading.Thread(target=detector.close)
    closer.start()
    closer.join()
    assert _driver_current_context() == 0
    again = load_detector(engines["fp32"])  # the retained primary context is reused
    again(frame)
    again.close()
    assert _driver_current_context() == 0


def test_timing_cache_from_another_gpu_is_replaced(demo_model, tmp_path):
    """SSD_EDGE_FOREIGN_TIMING_CACHE may name a timing cache made on another GPU model; without it, a file
    TensorRT cannot use stands in for one."""
    import os
    import shutil

    foreign = tmp_path / "foreign.cache"
    source = os.environ.get("SSD_EDGE_FOREIGN_TIMING_CACHE")
    if source:
        shutil.copyfile(source, foreign)
    else:
        foreign.write_bytes(b"\x00" * 64)
    before = foreign.read_bytes()
    out = _build(tmp_path, "--timing-cache", str(foreign))
    assert "made on another GPU or TensorRT version" in out
    assert foreign.read_bytes() != before
    assert "made on another GPU" not in _build(tmp_path, "--timing-cache", str(foreign))
