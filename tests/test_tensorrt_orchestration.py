"""What export/build_engine.py asks of TensorRT for each option and version, checked against the TEST
DOUBLE in tests/tensorrt_double.py (labelled: it is not TensorRT and verifies nothing about TensorRT; the
real builds are in tests/gpu/)."""

from __future__ import annotations

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
        trt, cuda = fake_tensorrt(version, **behaviour), fake_cuda()
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
    assert type(calls["calibrator"]).__mro__[2].__name__ == "IInt8EntropyCalibrator2"
    assert len(calls["batches"]) == 4 and len(cuda.copies) == 4 and len(set(cuda.copies)) == 4  # 32 images / 8
    assert cuda.stack == []  # every pushed context popped
    plan, record = read_engine(tmp_path / "ssdlite320_shapes_int8.engine")
    assert plan == b"FAKE-PLAN" and record.tensorrt_version == "8.5.2.2"
    assert (record.gpu.name, record.gpu.compute_capability) == ("Fake GPU", "8.7")
    assert record.build["int8_route"] == "implicit" and record.build["calibration"]["images"] == 32
    assert record.build["calibration_cache"]["status"] == "written"
    assert record.rebuild_command.endswith("--target tensorrt --int8 --calib-images 32 --output " + str(tmp_path))
    assert (tmp_path / "timing-8.5.2.2.cache").read_bytes() == b"TIMING-CACHE"
    out = capsys.readouterr().out
    assert "trtexec --onnx=" in out and "--int8 --fp16" in out

    # The same build again: the cache is reused, TensorRT pulls no batches.
    trt, cuda = double("8.5.2.2")
    build(["--target", "tensorrt", "--int8", "--calib-images", "32", "--output", str(tmp_path)])
    assert trt.calls["batches"] == [] and "reusing it" in capsys.readouterr().out
    assert trt.calls["timing_cache_in"] == b"TIMING-CACHE"
    # Different images: recalibrated, with the reason.
    trt, cuda = double("8.5.2.2")
    build(["--target", "tensorrt", "--int8", "--calib-images", "40", "--output", str(tmp_path)])
    assert len(trt.calls["batches"]) == 5 and "different images; recalibrating" in capsys.readouterr().out


def test_tensorrt11_int8_parses_the_qdq_model_strongly_typed(double, tmp_path):
    trt, _ = double("11.0.0")
    build(["--target", "tensorrt", "--int8", "--calib-images", "16", "--output", str(tmp_path)])
    qdq = tmp_path / "ssdlite320_shapes_int8_qdq.onnx"
    assert trt.calls["parsed"] == qdq.read_bytes()
    assert trt.calls["network_flags"] == 1 << 1 and trt.calls["flags"] == []  # STRONGLY_TYPED, no INT8 flag
    assert trt.calls.get("calibrator") is None
    assert read_engine(tmp_path / "ssdlite320_shapes_int8.engine")[1].build["int8_route"] == "explicit"


def test_jetpack6_fp16_dynamic_batch_on_a_dla_core_with_engine_nms(double, tmp_path):
    trt, _ = double("10.3.0")
    build(["--target", "tensorrt", "--fp16", "--batch", "1,2,4", "--dla-core", "1", "--nms", "engine",
           "--workspace", "256", "--output", str(tmp_path)])
    calls = trt.calls
    assert calls["network_flags"] == 0 and calls["flags"] == ["FP16", "GPU_FALLBACK"]
    assert calls["profiles"] == [("images", [1, 3, 320, 320], [2, 3, 320, 320], [4, 3, 320, 320])]
    assert calls["dla"] == (trt.DeviceType.DLA, 1) and calls["workspace"] == 256 << 20
    assert b"EfficientNMS_TRT" in calls["parsed"]
    record = read_engine(tmp_path / "ssdlite320_shapes_fp16_nms.engine")[1]
    assert record.metadata.output_format == "nms" and record.build["batch_profile"] == [1, 2, 4]


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
    assert trt.calls["network_flags"] == 1 << 1 and trt.calls["flags"] == []
    assert read_engine(tmp_path / "ssdlite320_shapes_fp16.engine")[1].build["precision"] == "fp16"
