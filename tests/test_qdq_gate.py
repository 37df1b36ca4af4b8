"""Accuracy-gated Q/DQ INT8 (--max-map-drop on the explicit route): layers kept in float until the drop fits,
the model still in TensorRT's form and accepted by the build plans (and the TensorRT TEST DOUBLE, which verifies
nothing about TensorRT itself), bad input refused with one line."""

from __future__ import annotations

import contextlib
import io
import subprocess
import sys
from pathlib import Path

import pytest

from calibration.evaluation import evaluate_detector
from calibration.voc import VOCDataset
from export.build_engine import main as build
from export.onnx_model import load_onnx, read_metadata
from export.tensorrt_build import TensorRTOptions, has_qdq, plan_build
from runtimes.errors import UserError
from runtimes.loader import load_detector
from runtimes.tensorrt_engine_file import read_engine
from runtimes.tensorrt_support import Capabilities, parse_version
from tests.test_qdq import assert_tensorrt_qdq_form
from tests.test_tensorrt_orchestration import double  # noqa: F401  (the fixture installing the test double)

ROOT = Path(__file__).resolve().parents[1]
# 32 calibration images: the plain Q/DQ demo model loses 0.44 points on val here, one layer in float 0.16.
GATE = ["--target", "onnx", "--int8", "--calib-images", "32"]


def _run(argv):
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert build(argv) == 0
    return out.getvalue()


@pytest.fixture(scope="module")
def gated(demo_model, tmp_path_factory):
    folder = tmp_path_factory.mktemp("gated")
    stdout = _run(GATE + ["--max-map-drop", "0.2", "--output", str(folder)])
    return folder / "ssdlite320_shapes_int8_qdq.onnx", stdout


@pytest.mark.slow
def test_gate_keeps_the_most_sensitive_layers_in_float_until_the_budget_is_met(gated, demo_model):
    path, stdout = gated
    meta = read_metadata(load_onnx(path), str(path))
    gate = meta.extra["quantization"]["accuracy_gate"]
    assert gate["max_map_drop"] == 0.2 and gate["plain_map_drop"] > 0.2 >= gate["map_drop"]
    assert gate["kept_in_float"] and gate["kept_in_float"] == meta.extra["quantization"]["kept_in_float"]
    assert f"layers kept in float: {len(gate['kept_in_float'])} of 98 Conv layers" in stdout
    assert all(f"\n  {name}\n" in stdout for name in gate["kept_in_float"])  # ONNX node names, one a line
    assert "cost in speed (OpenVINO CPU latency" in stdout and "on openvino: FP32" in stdout
    assert "on the split the gate did not see:" in stdout and "(VOC2007/test)" in stdout
    # The recorded drop is what the model written does on the split.
    val = VOCDataset(demo_model[2], "2007", "val", meta.class_names[1:])
    measured = evaluate_detector(load_detector(path, "onnxruntime"), val, show_progress=False).map
    assert 100 * measured == pytest.approx(gate["int8_map"], abs=0.01)
    assert not [p for p in path.parent.iterdir() if p.name.startswith(".")]  # no work files left


@pytest.mark.slow
def test_gated_model_keeps_tensorrts_form_and_every_build_plan_accepts_it(gated):
    path, _ = gated
    model = load_onnx(path)
    meta = read_metadata(model, str(path))
    assert_tensorrt_qdq_form(model, kept_in_float=meta.extra["quantization"]["kept_in_float"])
    options = TensorRTOptions("int8", "auto", "entropy", 8, 1024, None, None, "host")
    for version in ("8.6.1", "10.3.0", "11.0.0"):
        plan = plan_build(Capabilities(parse_version(version)), options, has_qdq(meta))
        assert plan.int8_route == "explicit" and plan.onnx_variant == "fp32" and plan.calibrator is None
        assert ("INT8" in plan.builder_flags) == (version != "11.0.0")


@pytest.mark.slow
@pytest.mark.parametrize("version, flags", [("8.6.1", ["INT8", "FP16"]), ("10.3.0", ["INT8", "FP16"]),
                                            ("11.0.0", [])])
def test_the_builder_parses_the_gated_model_as_is(gated, double, tmp_path, version, flags):  # noqa: F811
    path, _ = gated
    trt, _ = double(version)
    build(["--target", "tensorrt", "--onnx", str(path), "--output", str(tmp_path)])
    assert trt.calls["parsed"] == path.read_bytes() and trt.calls["flags"] == flags
    assert trt.calls.get("calibrator") is None
    record = read_engine(tmp_path / "ssdlite320_shapes_int8_qdq_int8.engine")[1]
    assert record.build["int8_route"] == "explicit"
    assert record.metadata.extra["quantization"]["accuracy_gate"]["kept_in_float"]


@pytest.mark.slow
def test_a_budget_no_mix_meets_reports_the_best_and_writes_nothing(demo_model, tmp_path):
    with pytest.raises(UserError, match=r"no mix of up to 1 float layers meets --max-map-drop 0.0: best drop "
                                        r"\d+\.\d\d points with \d kept in float .*no model written"):
        build(GATE + ["--max-map-drop", "0", "--max-float-layers", "1", "--output", str(tmp_path)])
    assert list(tmp_path.iterdir()) == []


def test_negative_budget_is_one_line_and_exit_2(demo_model, tmp_path):
    result = subprocess.run([sys.executable, "export/build_engine.py", *GATE, "--max-map-drop", "-0.5",
                             "--output", str(tmp_path)], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "error: --max-map-drop must be 0 or more (the VOC07 mAP points INT8 may lose), got -0.5"]
    assert list(tmp_path.iterdir()) == []


def test_budget_without_a_validation_split_is_refused_before_any_work(demo_model, tmp_path):
    with pytest.raises(UserError, match="--max-map-drop needs a validation split: pass --val-data"):
        build(["--target", "onnx", "--int8", "--onnx", str(demo_model[1]), "--calib-data", str(demo_model[2]),
               "--max-map-drop", "0.1", "--output", str(tmp_path)])
    assert list(tmp_path.iterdir()) == []


def test_budget_needs_int8_and_the_explicit_route_on_tensorrt(double, tmp_path):  # noqa: F811
    with pytest.raises(UserError, match="--max-map-drop applies to INT8: add --int8"):
        build(["--target", "onnx", "--max-map-drop", "0.1", "--output", str(tmp_path)])
    double("10.3.0")  # auto picks the implicit calibrator on 10.x
    for route in ("auto", "implicit"):
        with pytest.raises(UserError, match="covers the explicit INT8 route .* add --int8-route explicit"):
            build(["--target", "tensorrt", "--int8", "--int8-route", route, "--max-map-drop", "0.1",
                   "--output", str(tmp_path)])
