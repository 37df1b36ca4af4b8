"""Accuracy-gated Q/DQ INT8 (--max-map-drop on the explicit route): layers kept in float until the drop fits,
the model still in TensorRT's form and accepted by the build plans (and the TensorRT TEST DOUBLE, which verifies
nothing about TensorRT itself), bad input refused with one line.

The gate is run on a copy of the demo model made hard to quantize at two layers (tests/hard_to_quantize.py),
so that what it must do follows from the model, not from one CPU's INT8 rounding: the demo model's own plain
Q/DQ drop is tenths of a point and differs between CPUs (docs/int8.md, "Tests on any CPU")."""

from __future__ import annotations

import contextlib
import io
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from calibration.evaluation import evaluate_detector
from calibration.images import read_image
from calibration.voc import VOCDataset
from export.build_engine import main as build
from export.onnx_model import load_onnx, read_metadata
from export.tensorrt_build import TensorRTOptions, has_qdq, plan_build
from runtimes.errors import UserError
from runtimes.loader import load_detector
from runtimes.preprocess import Preprocessor
from runtimes.tensorrt_engine_file import read_engine
from runtimes.tensorrt_support import Capabilities, parse_version
from tests.hard_to_quantize import GATE_BUDGET, HEAD_CONVS, with_outlier_channel
from tests.test_qdq import assert_tensorrt_qdq_form
from tests.test_tensorrt_orchestration import double  # noqa: F401  (the fixture installing the test double)

ROOT = Path(__file__).resolve().parents[1]
DEMO_INT8 = ["--target", "onnx", "--int8", "--calib-images", "32"]


@pytest.fixture(scope="module")
def hard_model(demo_model, tmp_path_factory):
    """The demo model with HEAD_CONVS fed an outlier channel; the stem stays, so the output names do."""
    return with_outlier_channel(demo_model[1], tmp_path_factory.mktemp("hard") / demo_model[1].name)


def _gate_args(hard_model, data):
    return DEMO_INT8 + ["--onnx", str(hard_model), "--calib-data", str(data), "--calib-split", "train",
                        "--val-data", str(data)]


def _run(argv):
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert build(argv) == 0
    return out.getvalue()


def test_the_outlier_channel_leaves_fp32_unchanged(demo_model, hard_model):
    """The construction's premise: the hard model is the demo model in FP32 (zero weights on the outlier)."""
    plain, hard = load_detector(demo_model[1]), load_detector(hard_model)
    jpegs = sorted((demo_model[2] / "VOCdevkit/VOC2007/JPEGImages").glob("*.jpg"))[:3]
    for path in jpegs:
        blob = Preprocessor(plain.meta)(read_image(path)[0])
        for name, value in plain.infer(blob).items():
            np.testing.assert_allclose(hard.infer(blob)[name], value, rtol=1e-4, atol=1e-4)


@pytest.fixture(scope="module")
def gated(demo_model, hard_model, tmp_path_factory):
    folder = tmp_path_factory.mktemp("gated")
    stdout = _run(_gate_args(hard_model, demo_model[2]) + ["--max-map-drop", str(GATE_BUDGET),
                                                           "--output", str(folder)])
    return folder / "ssdlite320_shapes_int8_qdq.onnx", stdout


@pytest.mark.slow
def test_gate_keeps_the_most_sensitive_layers_in_float_until_the_budget_is_met(gated, demo_model, hard_model):
    path, stdout = gated
    meta = read_metadata(load_onnx(path), str(path))
    gate = meta.extra["quantization"]["accuracy_gate"]
    assert gate["max_map_drop"] == GATE_BUDGET and gate["plain_map_drop"] > GATE_BUDGET >= gate["map_drop"]
    # The two layers the construction made sensitive, found by the ranking, and nothing else.
    assert sorted(gate["kept_in_float"]) == sorted(HEAD_CONVS)
    assert gate["kept_in_float"] == meta.extra["quantization"]["kept_in_float"]
    convs = sum(node.op_type == "Conv" for node in load_onnx(hard_model).graph.node)
    assert f"layers kept in float: 2 of {convs} Conv layers" in stdout
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
def test_a_budget_no_mix_meets_reports_the_best_and_writes_nothing(demo_model, hard_model, tmp_path):
    # Either head alone in float leaves the other destroyed: by construction over the budget.
    words = rf"no mix of up to 1 float layers meets --max-map-drop {GATE_BUDGET}: best drop (\d+\.\d\d) points"
    with pytest.raises(UserError, match=words + r" with \d kept in float .*no model written") as error:
        build(_gate_args(hard_model, demo_model[2]) + ["--max-map-drop", str(GATE_BUDGET), "--max-float-layers", "1",
                                                       "--output", str(tmp_path)])
    assert float(re.search(words, str(error.value)).group(1)) > GATE_BUDGET
    assert list(tmp_path.iterdir()) == []


def test_negative_budget_is_one_line_and_exit_2(demo_model, tmp_path):
    result = subprocess.run([sys.executable, "export/build_engine.py", *DEMO_INT8, "--max-map-drop", "-0.5",
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
