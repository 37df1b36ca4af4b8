"""What export/build_engine.py asks of TensorRT for each option and version, checked against the TEST
DOUBLE in tests/tensorrt_double.py (labelled: it is not TensorRT and verifies nothing about TensorRT; the
real builds are in tests/gpu/)."""

from __future__ import annotations

import subprocess
import sys
import types

import pytest

from export.build_engine import main as build
from runtimes.errors import UserError
from runtimes.tensorrt_engine_file import read_engine
from tests.tensorrt_double import fake_cuda, fake_tensorrt


@pytest.fixture
def double(monkeypatch, demo_model):
    """install(version, **behaviour) puts the doubles in place of tensorrt and pycuda.driver."""

    def install(version: str, **behaviour):
        cuda = fake_cuda()
        trt = fake_tensorrt(version, cuda, **behaviour)
        package = types.ModuleType("pycuda")
        package.driver = cuda  # type: ignore[attr-defined]
        monkeypatch.setitem(sys.modules, "tensorrt", trt)
        monkeypatch.setitem(sys.modules, "pycuda", package)
        monkeypatch.setitem(sys.modules, "pycuda.driver", cuda)
        return trt, cuda

    return install


def test_jetpack5_int8_calibrates_with_pinned_batches_and_records_everything(double, tmp_path, capsys):
    trt, cuda = double("8.5.2.2")
    assert build(["--target", "tensorrt", "--int8", "--calib-images", "32", "--output", str(tmp_path)]) == 0
    calls = trt.calls
    assert calls["network_flags"] == 1 << 0  # EXPLICIT_BATCH, required on 8.x
    assert calls["flags"] == ["INT8", "FP16"] and calls["workspace"] == 1024 << 20
    assert calls["calibrator"].__mro__[2].__name__ == "IInt8EntropyCalibrator2"
    # The demo ONNX has a static batch of 1, which is what TensorRT calibrates at: 32 batches of 1 image.
    assert len(calls["batches"]) == 32 and len(cuda.copies) == 32 and len(set(cuda.copies)) == 32
    assert cuda.driver_current() is None and cuda.Context.get_current() is None  # every push popped
    plan, record = read_engine(tmp_path / "ssdlite320_shapes_int8.engine")
    assert plan.startswith(b"FAKE-PLAN") and record.tensorrt_version == "8.5.2.2"
    assert (record.gpu.name, record.gpu.compute_capability) == ("Fake GPU", "8.7")
    assert record.build["int8_route"] == "implicit" and record.build["calibration"]["images"] == 32
    assert record.build["calibration_cache"]["status"] == "written"
    assert record.rebuild_command.endswith("--target tensorrt --int8 --calib-images 32 --output " + str(tmp_path))
    assert (tmp_path / "timing-8.5.2.2-fake-gpu-sm87.cache").read_bytes() == b"FAKE-TIMING Fake GPU sm87\n"
    out = capsys.readouterr().out
    assert "trtexec --onnx=" in out and "--int8 --fp16" in out

    # The same build again: the cache is reused, TensorRT pulls no batches.
    trt, cuda = double("8.5.2.2")
    build(["--target", "tensorrt", "--int8", "--calib-images", "32", "--output", str(tmp_path)])
    assert trt.calls["batches"] == [] and "reusing it" in capsys.readouterr().out
    assert trt.calls["timing_cache_in"] == b"FAKE-TIMING Fake GPU sm87\n"
    # Different images: recalibrated, with the reason.
    trt, cuda = double("8.5.2.2")
    build(["--target", "tensorrt", "--int8", "--calib-images", "40", "--output", str(tmp_path)])
    assert len(trt.calls["batches"]) == 40 and "different images; recalibrating" in capsys.readouterr().out


def test_tensorrt11_int8_parses_the_qdq_model_strongly_typed(double, tmp_path):
    trt, _ = double("11.0.0")
    build(["--target", "tensorrt", "--int8", "--calib-images", "16", "--output", str(tmp_path)])
    qdq = tmp_path / "ssdlite320_shapes_int8_qdq.onnx"
    assert trt.calls["parsed"] == qdq.read_bytes()
    assert trt.calls["network_flags"] == 0 and trt.calls["flags"] == []  # always strongly typed, no INT8 flag
    assert trt.calls.get("calibrator") is None
    assert read_engine(tmp_path / "ssdlite320_shapes_int8.engine")[1].build["int8_route"] == "explicit"


def test_jetpack6_fp16_fixed_batch_on_a_dla_core_with_engine_nms(double, tmp_path, dynamic_onnx):
    trt, _ = double("10.3.0")
    build(["--target", "tensorrt", "--onnx", str(dynamic_onnx), "--fp16", "--batch", "2,2,2", "--dla-core", "1",
           "--nms", "engine", "--workspace", "256", "--output", str(tmp_path)])
    calls = trt.calls
    assert calls["network_flags"] == 0 and calls["flags"] == ["FP16", "GPU_FALLBACK"]
    assert calls["profiles"] == [("images", [2, 3, 320, 320], [2, 3, 320, 320], [2, 3, 320, 320])]
    assert calls["dla"] == (trt.DeviceType.DLA, 1) and calls["workspace"] == 256 << 20
    assert b"EfficientNMS_TRT" in calls["parsed"]
    record = read_engine(tmp_path / "ssdlite320_shapes_dynamic_fp16_nms.engine")[1]
    assert record.metadata.output_format == "nms" and record.build["batch_profile"] == [2, 2, 2]


@pytest.mark.parametrize("behaviour, words", [({"parse_ok": False}, "No importer registered for op: FancyOp0"),
                                              ({"build_ok": False}, "could not build the engine")])
def test_parser_and_builder_failures_are_errors_and_leave_no_engine(double, tmp_path, behaviour, words):
    double("10.3.0", **behaviour)
    with pytest.raises(UserError, match=words):
        build(["--target", "tensorrt", "--output", str(tmp_path)])
    assert not list(tmp_path.glob("*.engine*"))


def test_tensorrt11_fp16_parses_the_fp16_model_strongly_typed(double, tmp_path):
    trt, _ = double("11.0.0")
    build(["--target", "tensorrt", "--fp16", "--output", str(tmp_path)])
    assert trt.calls["parsed"] == (tmp_path / "ssdlite320_shapes_fp16.onnx").read_bytes()
    assert trt.calls["network_flags"] == 0 and trt.calls["flags"] == []
    assert read_engine(tmp_path / "ssdlite320_shapes_fp16.engine")[1].build["precision"] == "fp16"


# -- issue #20: the review against NVIDIA's sources; each test names its point --------------------------

import gc  # noqa: E402
import threading  # noqa: E402
import warnings  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

from calibration.stream import CalibrationStream, select_images  # noqa: E402
from calibration.synthetic import ensure_demo_dataset  # noqa: E402
from export.onnx_model import require_metadata  # noqa: E402
from runtimes.metadata import ModelMetadata  # noqa: E402
from runtimes.preprocess import Preprocessor  # noqa: E402
from runtimes.tensorrt_engine_file import EngineRecord, write_engine  # noqa: E402
from runtimes.tensorrt_support import GPUIdentity  # noqa: E402
from tests.tensorrt_double import plan_bytes  # noqa: E402

SMALL = ModelMetadata("ssdlite320_mobilenet_v3_large", 64, 64, "RGB", [123.0, 117.0, 104.0], [58.0, 57.0, 57.0],
                      ["__background__", "circle", "square", "triangle", "star", "cross"], output_format="decoded")


def _build(*args: str) -> int:
    return build(["--target", "tensorrt", *args])


@pytest.fixture(scope="module")
def dynamic_onnx(demo_model):
    """The demo ONNX with a dynamic batch axis (what build_engine.py exports for --batch)."""
    from export.demo_model import demo_onnx

    return demo_onnx(verbose=False, dynamic_batch=True)


def _engine(tmp_path: Path, version: str, batch=None, meta: ModelMetadata = SMALL, name: str = "small") -> Path:
    """An engine of the double: input (B, 3, 64, 64), decoded outputs; ``batch`` (min, opt, max) for a
    dynamic batch, else static batch 1."""
    dims = [3, meta.input_height, meta.input_width]
    if batch is None:
        inputs = [{"name": "images", "shape": [1, *dims]}]
    else:
        inputs = [{"name": "images", "shape": [-1, *dims], "profile": [[b, *dims] for b in batch]}]
    classes = len(meta.class_names)
    outputs = [{"name": "boxes", "shape": [-1 if batch else 1, 16, 4]},
               {"name": "scores", "shape": [-1 if batch else 1, 16, classes]}]
    path = tmp_path / f"{name}.engine"
    record = EngineRecord(meta, version, GPUIdentity("Fake GPU", "8.7"), {}, "python export/build_engine.py")
    write_engine(path, plan_bytes(inputs, outputs, version=version), record)
    return path


def _frames(count: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 256, (48 + 8 * i, 64 + 4 * i, 3), dtype=np.uint8) for i in range(count)]


def _detector(path: Path, **options):
    from runtimes.tensorrt_runner import TensorRTDetector

    return TensorRTDetector(str(path), **options)


# 1 -------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("version", ["8.5.2.2", "10.3.0"])
def test_p1_nms_engine_builds_and_loads_in_a_fresh_process(double, tmp_path, version):
    """#20.1: init_libnvinfer_plugins before parsing (10.x's parser no longer registers EfficientNMS_TRT)
    and before deserialising (a fresh process's registry is empty on every version)."""
    double(version)
    assert _build("--nms", "engine", "--output", str(tmp_path)) == 0
    trt, _ = double(version)  # a fresh process: empty plugin registry
    detector = _detector(tmp_path / "ssdlite320_shapes_fp32_nms.engine")
    assert "EfficientNMS_TRT" in trt.plugin_registry and detector.meta.output_format == "nms"
    detector.close()


# 2 -------------------------------------------------------------------------------------------------------

def _image_sums(meta, paths):
    stream = CalibrationStream(select_images(ensure_demo_dataset(), len(paths), 0, split="train"),
                               Preprocessor(meta), batch_size=1)
    return sorted(float(b.astype(np.float64).sum()) for b in stream)


def test_p2_calibration_feeds_every_image_at_the_static_network_batch(double, tmp_path, demo_model):
    """#20.2: a static batch-1 network calibrates one image per get_batch; TensorRT reads volume(network
    input) from the pointer, so with 8-image buffers it saw one image in eight."""
    trt, _ = double("8.5.2.2")
    assert _build("--int8", "--calib-images", "24", "--output", str(tmp_path)) == 0
    seen = sorted(trt.calls["calibration_images"])
    meta = require_metadata(demo_model[1])
    assert len(seen) == 24 and np.allclose(seen, _image_sums(meta, range(24)), rtol=1e-6)


def test_p2_calibration_of_a_dynamic_network_reads_the_calibration_profile(double, tmp_path, dynamic_onnx):
    """#20.2: a dynamic network calibrates at its calibration profile's OPT (= --calib-batch), which the
    batches must fill exactly."""
    trt, _ = double("10.3.0")
    assert _build("--onnx", str(dynamic_onnx), "--int8", "--calib-images", "24", "--calib-batch", "6",
                  "--calib-data", str(ensure_demo_dataset()), "--calib-split", "train", "--batch", "1,2,4",
                  "--output", str(tmp_path)) == 0
    assert trt.calls["calibration_profile"]["images"][1][0] == 6
    meta = require_metadata(dynamic_onnx)
    assert len(trt.calls["batches"]) == 4
    assert np.allclose(sorted(trt.calls["calibration_images"]), _image_sums(meta, range(24)), rtol=1e-6)


# 3 -------------------------------------------------------------------------------------------------------

def test_p3_foreign_calibration_cache_stops_the_build_and_is_left_alone(double, tmp_path):
    """#20.3: pyInt8.cpp swallows exceptions in read_calibration_cache; the refusal must still stop the build."""
    double("8.5.2.2")
    cache = tmp_path / "theirs.cache"
    cache.write_bytes(b"TRT-8502-EntropyCalibration2\nimages: 3c010a14\n")
    with pytest.raises(UserError, match="not a calibration cache written by this toolkit"):
        _build("--int8", "--calib-images", "16", "--calib-cache", str(cache), "--output", str(tmp_path))
    assert cache.read_bytes() == b"TRT-8502-EntropyCalibration2\nimages: 3c010a14\n"
    assert not list(tmp_path.glob("*.engine"))


@pytest.mark.parametrize("failure", [KeyboardInterrupt, "unreadable"])
def test_p3_failure_while_calibrating_stops_the_build_and_writes_no_cache(double, tmp_path, monkeypatch, failure):
    """#20.3: an exception in get_batch reads as "no more data" to TensorRT; it must reach the user and
    leave neither an engine nor a partial calibration cache."""
    import calibration.stream as stream_module
    from calibration.images import UnreadableImage, read_image

    double("8.5.2.2")
    calls = []

    def flaky(path):
        calls.append(path)
        if len(calls) == 5 + 16:  # select_images reads 16, then the calibration stream reads them again
            if failure is KeyboardInterrupt:
                raise KeyboardInterrupt
            raise UnreadableImage(f"{path.name}: truncated JPEG")
        return read_image(path)

    monkeypatch.setattr(stream_module, "read_image", flaky)
    expected = KeyboardInterrupt if failure is KeyboardInterrupt else UserError  # one line, no traceback
    with pytest.raises(expected, match=None if failure is KeyboardInterrupt else "became unreadable"):
        _build("--int8", "--calib-images", "16", "--output", str(tmp_path))
    assert not list(tmp_path.glob("*.engine")) and not list(tmp_path.glob("*.calib.cache"))


# 4 -------------------------------------------------------------------------------------------------------

def test_p4_batch_profile_for_a_static_model_is_refused_cleanly(double, tmp_path, demo_model):
    """#20.4: a profile for a static-batch input fails TensorRT's build; refuse it up front, without
    blaming the workspace."""
    trt, _ = double("10.3.0")
    with pytest.raises(UserError, match="static batch of 1") as err:
        _build("--onnx", str(demo_model[1]), "--batch", "1,2,4", "--output", str(tmp_path))
    assert "--workspace" not in str(err.value) and "--dynamic-batch" in str(err.value)
    assert trt.calls["errors"] == []  # refused before TensorRT built anything


def test_p4_dynamic_model_gets_its_profile(double, tmp_path, dynamic_onnx):
    """#20.4: a dynamic batch gets the --batch profile, and batch 1 (1,1,1) without --batch, as NVIDIA's
    sample does."""
    trt, _ = double("10.3.0")
    assert _build("--onnx", str(dynamic_onnx), "--batch", "1,2,4", "--output", str(tmp_path)) == 0
    assert trt.calls["profiles"][-1] == ("images", [1, 3, 320, 320], [2, 3, 320, 320], [4, 3, 320, 320])
    trt, _ = double("10.3.0")
    assert _build("--onnx", str(dynamic_onnx), "--output", str(tmp_path / "one")) == 0
    assert trt.calls["profiles"][-1] == ("images", [1, 3, 320, 320], [1, 3, 320, 320], [1, 3, 320, 320])


# 5 -------------------------------------------------------------------------------------------------------

def test_p5_dla_with_a_dynamic_profile_is_refused(double, tmp_path, dynamic_onnx):
    """#20.5: DLA needs min = opt = max."""
    trt, _ = double("10.3.0")
    with pytest.raises(UserError, match="DLA") as err:
        _build("--onnx", str(dynamic_onnx), "--fp16", "--dla-core", "0", "--batch", "1,2,4", "--output", str(tmp_path))
    assert "--batch 4,4,4" in str(err.value) and trt.calls["errors"] == []
    trt, _ = double("10.3.0")
    assert _build("--onnx", str(dynamic_onnx), "--fp16", "--dla-core", "0", "--batch", "2,2,2",
                  "--output", str(tmp_path)) == 0
    assert trt.calls["dla"] == (trt.DeviceType.DLA, 0)


# 6 -------------------------------------------------------------------------------------------------------

def test_p6_timing_cache_from_another_gpu_is_replaced_not_fatal(double, tmp_path, capsys):
    """#20.6: set_timing_cache returns False for another device's cache; the file is named per GPU."""
    trt, _ = double("10.3.0")
    assert _build("--output", str(tmp_path)) == 0
    names = [p.name for p in tmp_path.glob("timing-*.cache")]
    assert names == ["timing-10.3.0-fake-gpu-sm87.cache"]
    theirs = tmp_path / "shared.cache"
    theirs.write_bytes(b"FAKE-TIMING Xavier sm72\n")
    trt, _ = double("10.3.0")
    assert _build("--timing-cache", str(theirs), "--output", str(tmp_path)) == 0
    out = capsys.readouterr().out
    assert "timing cache" in out and "another GPU" in out
    assert theirs.read_bytes() == b"FAKE-TIMING Fake GPU sm87\n"


# 7 -------------------------------------------------------------------------------------------------------

def test_p7_build_frees_the_calibrators_buffers_and_leaves_no_context_current(double, tmp_path):
    """#20.7: the calibrator's device buffer, stream and pinned buffer are freed while the context lives;
    nothing stays current at driver level (detach of a primary context does not pop it)."""
    _, cuda = double("8.5.2.2")
    assert _build("--int8", "--calib-images", "16", "--output", str(tmp_path)) == 0
    gc.collect()
    assert cuda.gpu.leaked == [] and cuda.driver_current() is None and cuda.Context.get_current() is None
    assert cuda.gpu.memory == {}


def test_p7_failed_load_and_close_from_another_thread_release_everything(double, tmp_path):
    """#20.7: the __init__ error path and close() from another thread leave no buffer, no current context
    and no extra retain of the primary context."""
    _, cuda = double("10.3.0")
    bad = tmp_path / "bad.engine"
    record = EngineRecord(SMALL, "10.3.0", GPUIdentity("Fake GPU", "8.7"), {}, "rebuild")
    write_engine(bad, plan_bytes([{"name": "pixels", "shape": [1, 3, 64, 64]}],
                                 [{"name": "boxes", "shape": [1, 16, 4]}], version="10.3.0"), record)
    for _ in range(3):
        with pytest.raises(UserError, match="expected one input named 'images'"):
            _detector(bad)
    path = _engine(tmp_path, "10.3.0")
    for _ in range(3):
        detector = _detector(path)
        detector(_frames(1)[0])
        closer = threading.Thread(target=detector.close)
        closer.start()
        closer.join()
    gc.collect()
    assert cuda.gpu.leaked == [] and cuda.gpu.memory == {}
    assert cuda.driver_current() is None and cuda.gpu.retained <= 1


# 8 -------------------------------------------------------------------------------------------------------

def test_p8_named_tensors_on_jetpack5_without_deprecated_calls(double, tmp_path):
    """#20.8: 8.5 already has the named-tensor API; its binding API is deprecated."""
    double("8.5.2.2")
    path = _engine(tmp_path, "8.5.2.2")
    with warnings.catch_warnings():
        warnings.simplefilter("error", DeprecationWarning)
        detector = _detector(path)
        assert len(detector(_frames(1)[0])) > 0
        detector.close()


def test_p8_tensorrt11_sets_no_deprecated_network_flag_and_efficientnms_is_flagged(double, tmp_path, capsys):
    """#20.8: STRONGLY_TYPED is ignored (always on) in 11; EfficientNMS_TRT is deprecated since 10.12."""
    trt, _ = double("11.0.0")
    with warnings.catch_warnings():
        warnings.simplefilter("error", DeprecationWarning)
        assert _build("--output", str(tmp_path)) == 0
    assert trt.calls["network_flags"] == 0
    double("10.13.0")
    assert _build("--nms", "engine", "--output", str(tmp_path)) == 0
    assert "EfficientNMS_TRT is deprecated since TensorRT 10.12" in capsys.readouterr().out


# 9 -------------------------------------------------------------------------------------------------------

def test_p9_max_batch_comes_from_the_profile_and_is_checked(double, tmp_path):
    """#20.9: buffers sized from get_tensor_profile_shape's max; a max_batch outside the profile refused."""
    double("10.3.0")
    dynamic = _engine(tmp_path, "10.3.0", batch=(1, 2, 4), name="dynamic")
    detector = _detector(dynamic)
    assert detector.max_batch == 4
    detector.close()
    with pytest.raises(UserError, match=r"profile .*1\.\.4"):
        _detector(dynamic, max_batch=8)
    with pytest.raises(UserError, match="static batch of 1"):
        _detector(_engine(tmp_path, "10.3.0"), max_batch=2)


# 10 ------------------------------------------------------------------------------------------------------

def test_p10_one_logger_per_process_and_trtexec_gets_a_calibration_table(double, tmp_path, capsys):
    """#20.10: TensorRT keeps one logger pointer; trtexec --int8 needs --calib= with TensorRT's own table."""
    trt, _ = double("8.5.2.2")
    assert _build("--int8", "--calib-images", "16", "--output", str(tmp_path)) == 0
    engine = tmp_path / "ssdlite320_shapes_int8.engine"
    first, second = _detector(engine), _detector(engine)
    first.close()
    second.close()
    assert trt.calls["loggers"] == 1 and trt.calls["logger_conflicts"] == 0
    line = next(s for s in capsys.readouterr().out.splitlines() if s.startswith("trtexec equivalent"))
    calib = [a for a in line.split() if a.startswith("--calib=")]
    assert len(calib) == 1 and Path(calib[0][len("--calib="):]).read_bytes().startswith(b"TRT-FAKE-Entropy")


# -- issue #13: batches and requests in flight on the double ---------------------------------------------

def _same(a, b) -> bool:
    return (np.array_equal(a.boxes, b.boxes) and np.array_equal(a.scores, b.scores)
            and np.array_equal(a.labels, b.labels))


def test_detect_batch_equals_single_calls_with_partial_batches(double, tmp_path):
    """7 frames of different sizes through max_batch 3 (two full calls, one partial) give what 7 single calls
    give; the double's network makes each image's detections its own, so a row mix-up would show."""
    _, cuda = double("10.3.0")
    detector = _detector(_engine(tmp_path, "10.3.0", batch=(1, 2, 4)), max_batch=3)
    frames = _frames(7)
    single = [detector(frame) for frame in frames]
    assert len({tuple(d.labels.tolist()) + tuple(np.round(d.scores, 4).tolist()) for d in single}) == 7
    assert all(len(d) > 0 for d in single)
    batched = detector.detect_batch(frames)
    assert len(batched) == 7 and all(_same(a, b) for a, b in zip(single, batched))
    detector.close()
    assert cuda.gpu.memory == {} and cuda.driver_current() is None


@pytest.mark.parametrize("depth", [1, 2, 4])
def test_requests_in_flight_give_the_sync_detections_in_submission_order(double, tmp_path, depth):
    _, cuda = double("10.3.0")
    detector = _detector(_engine(tmp_path, "10.3.0", batch=(1, 2, 4)), max_batch=2)
    frames = _frames(9, seed=depth)
    expected = detector.detect_batch(frames)
    requests = detector.requests(depth)
    got = []
    for start in range(0, len(frames), 2):
        requests.submit(frames[start:start + 2], tag=start)
        got.extend(requests.results())
    got.extend(requests.close())
    assert [r.tag for r in got] == list(range(0, 9, 2))
    detections = [d for r in got for d in r.detections]
    assert len(detections) == 9 and all(_same(a, b) for a, b in zip(expected, detections))
    assert threading.active_count() < 10  # the request workers are gone
    detector.close()
    gc.collect()
    assert cuda.gpu.memory == {} and cuda.gpu.leaked == [] and cuda.driver_current() is None


def test_an_exception_inside_a_request_reaches_the_caller_in_its_place(double, tmp_path, monkeypatch):
    trt, _ = double("10.3.0")
    detector = _detector(_engine(tmp_path, "10.3.0", batch=(1, 2, 4)), max_batch=2)
    frames = _frames(3)
    real = trt.IExecutionContext.execute_async_v3
    runs = []

    def fail_second(self, handle):
        runs.append(handle)
        return False if len(runs) == 2 else real(self, handle)

    monkeypatch.setattr(trt.IExecutionContext, "execute_async_v3", fail_second)
    requests = detector.requests(2)
    for i, frame in enumerate(frames):
        requests.submit([frame], tag=i)
    results = requests.results(wait=True)
    assert next(results).tag == 0
    with pytest.raises(RuntimeError, match="TensorRT execution failed"):
        next(results)
    assert [r.tag for r in requests.close()] == [2]
    detector.close()


def test_requests_workers_push_the_cuda_context(double, tmp_path, monkeypatch):
    """Each worker thread synchronises its stream with the context current there (a thread without it
    fails in the double as in CUDA); nothing stays pushed on any thread afterwards."""
    _, cuda = double("10.3.0")
    detector = _detector(_engine(tmp_path, "10.3.0", batch=(1, 2, 4)), max_batch=2)
    seen = []
    real = cuda.Stream.synchronize

    def synchronize(self):
        seen.append((threading.current_thread().name, cuda.driver_current() is not None))
        real(self)

    monkeypatch.setattr(cuda.Stream, "synchronize", synchronize)
    with detector.requests(2) as requests:
        for frame in _frames(4):
            requests.submit([frame])
    names = {name for name, _ in seen}
    assert all(current for _, current in seen) and any(n.startswith("tensorrt-request") for n in names)
    detector.close()
    assert cuda.driver_current() is None


def test_tensorrt_runtime_is_registered_and_cheap_to_import():
    code = ("import sys, runtimes.tensorrt_runner as r; from runtimes.loader import runtime_for; "
            "assert r.RUNTIME.name == 'tensorrt' and runtime_for('m.plan').name == 'tensorrt'; "
            "assert 'tensorrt' not in sys.modules and 'pycuda' not in sys.modules")
    result = subprocess.run([sys.executable, "-c", code], cwd=Path(__file__).resolve().parents[1],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
