"""The explicit INT8 route's Q/DQ ONNX: made by the build CLI, in the form TensorRT expects, and accurate
on the demo test split with both CPU runtimes that run it here."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import numpy_helper

from calibration.evaluation import evaluate_detector
from calibration.voc import VOCDataset
from export.onnx_model import load_onnx, read_metadata
from export.tensorrt_build import has_qdq
from runtimes.loader import load_detector

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def qdq_build(demo_model, tmp_path_factory):
    out = tmp_path_factory.mktemp("qdq")
    result = subprocess.run([sys.executable, "export/build_engine.py", "--target", "onnx", "--int8", "--output",
                             str(out)], cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-2000:]
    return out / "ssdlite320_shapes_int8_qdq.onnx", result.stdout


def assert_tensorrt_qdq_form(model: onnx.ModelProto, kept_in_float=()) -> None:
    """Q/DQ on the data and weight inputs of every Conv but those ``kept_in_float`` (which take float inputs
    and weights), int8 per-channel weights, float biases, symmetric int8 (zero points of 0), no Q/DQ
    anywhere else (the network outputs stay float), and a model the ONNX checker accepts."""
    init = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
    producers = {o: n for n in model.graph.node for o in n.output}
    convs = [n for n in model.graph.node if n.op_type == "Conv"]
    assert len(convs) > 30 and set(kept_in_float) <= {c.name for c in convs}
    for conv in convs:
        data, weight = (producers.get(name) for name in conv.input[:2])
        if conv.name in kept_in_float:
            assert data is None or data.op_type != "DequantizeLinear", conv.name
            assert conv.input[1] in init and init[conv.input[1]].dtype == np.float32, conv.name
            continue
        assert data is not None and data.op_type == "DequantizeLinear", conv.name
        assert weight is not None and weight.op_type == "DequantizeLinear", conv.name
        if len(conv.input) > 2:  # biases stay float: TensorRT fuses them itself
            assert conv.input[2] in init and init[conv.input[2]].dtype == np.float32
        stored, scale = init[weight.input[0]], init[weight.input[1]]
        assert stored.dtype == np.int8 and scale.shape == (stored.shape[0],)  # per output channel
    for node in model.graph.node:
        if node.op_type in ("QuantizeLinear", "DequantizeLinear") and len(node.input) > 2:
            zero = init[node.input[2]]
            assert zero.dtype == np.int8 and not zero.any()  # symmetric int8: zero points of 0
    consumers = {}
    for node in model.graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node.op_type)
    for node in model.graph.node:  # Q/DQ only where a Conv reads (a residual Add may share it), so the
        if node.op_type == "DequantizeLinear":  # network outputs, read by no Conv, stay float
            assert "Conv" in consumers.get(node.output[0], []), node.name
    onnx.checker.check_model(model, full_check=True)


def test_qdq_model_has_the_form_tensorrt_expects(qdq_build):
    path, _ = qdq_build
    model = load_onnx(path)
    meta = read_metadata(model, str(path))
    assert has_qdq(meta) and meta.extra["quantization"]["calibration"]["images"] == 300
    assert meta.extra["quantization"]["kept_in_float"] == []
    assert_tensorrt_qdq_form(model)


def test_qdq_model_accuracy_within_one_point_of_fp32(qdq_build, demo_model):
    path, stdout = qdq_build
    _, fp32_onnx, data = demo_model
    assert "mAP (VOC07) on onnxruntime: FP32" in stdout and "mAP (VOC07) on openvino: FP32" in stdout
    test = VOCDataset(data, "2007", "test", read_metadata(load_onnx(path), "").class_names[1:])
    fp32 = evaluate_detector(load_detector(fp32_onnx), test, show_progress=False).map
    for runtime in ("onnxruntime", "openvino"):
        int8 = evaluate_detector(load_detector(path, runtime), test, show_progress=False).map
        print(f"demo test split, {runtime}: FP32 {100 * fp32:.2f}, Q/DQ INT8 {100 * int8:.2f}")
        assert 100 * (fp32 - int8) <= 1.0
