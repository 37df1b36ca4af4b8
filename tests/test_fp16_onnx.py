"""The FP16 ONNX model (TensorRT 11's FP16 route): float32 at its edges, float16 inside, and as accurate as
FP32 on the demo test split when OpenVINO runs it here."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
from onnx import TensorProto, numpy_helper

from calibration.evaluation import evaluate_detector
from calibration.voc import VOCDataset
from export.onnx_model import load_onnx, read_metadata
from runtimes.loader import load_detector

ROOT = Path(__file__).resolve().parents[1]


def test_fp16_onnx_from_the_cli(demo_model, tmp_path):
    result = subprocess.run([sys.executable, "export/build_engine.py", "--target", "onnx", "--fp16", "--output",
                             str(tmp_path)], cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "mAP (VOC07) on openvino: FP32" in result.stdout and "FP16" in result.stdout
    path = tmp_path / "ssdlite320_shapes_fp16.onnx"
    model = load_onnx(path)
    meta = read_metadata(model, str(path))
    assert meta.precision == "fp16" and meta.extra["fp16_onnx"]["keep_io_types"] is True
    assert {v.type.tensor_type.elem_type for v in [*model.graph.input, *model.graph.output]} == {TensorProto.FLOAT}
    weights = [numpy_helper.to_array(i) for i in model.graph.initializer if i.data_type in (1, 10)]
    assert sum(w.size for w in weights if w.dtype == np.float16) > 0.99 * sum(w.size for w in weights)

    _, fp32_onnx, data = demo_model
    test = VOCDataset(data, "2007", "test", meta.class_names[1:])
    fp32 = evaluate_detector(load_detector(fp32_onnx, "openvino"), test, show_progress=False).map
    fp16 = evaluate_detector(load_detector(path, "openvino"), test, show_progress=False).map
    print(f"demo test split, OpenVINO: FP32 {100 * fp32:.2f}, FP16 ONNX {100 * fp16:.2f}")
    assert abs(100 * (fp32 - fp16)) <= 0.2
