"""The accuracy-gated Q/DQ model built into a TensorRT engine on a real GPU (a Jetson or a desktop with TensorRT
and pycuda). Skipped elsewhere, with the reason. Run on the device from the repository root:

    python3 -m pytest -m gpu tests/gpu/test_qdq_gated_device.py -s

It builds an INT8 engine through the explicit route with --max-map-drop (the gate runs on the CPU with ONNX
Runtime before TensorRT sees the model) and checks the engine against its record and the budget. The model is
the demo model made hard to quantize at two head convs (tests/hard_to_quantize.py), so the gate must keep those
two in float whatever the CPU judging it (a Jetson's is an ARM core).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from calibration.evaluation import evaluate_detector
from calibration.voc import VOCDataset
from runtimes.loader import load_detector
from runtimes.tensorrt_engine_file import read_engine
from runtimes.tensorrt_support import unavailable_reason
from tests.hard_to_quantize import GATE_BUDGET, HEAD_CONVS, with_outlier_channel

ROOT = Path(__file__).resolve().parents[2]
REASON = unavailable_reason()
pytestmark = [pytest.mark.gpu, pytest.mark.skipif(REASON is not None, reason=f"needs TensorRT on a GPU: {REASON}")]


@pytest.fixture(scope="module")
def gated_engine(demo_model, tmp_path_factory):
    out = tmp_path_factory.mktemp("gated")
    _, onnx_path, data = demo_model
    hard = with_outlier_channel(onnx_path, tmp_path_factory.mktemp("hard") / onnx_path.name)
    result = subprocess.run([sys.executable, "export/build_engine.py", "--target", "tensorrt", "--int8", "--int8-route",
                             "explicit", "--onnx", str(hard), "--calib-data", str(data), "--calib-split", "train",
                             "--val-data", str(data), "--max-map-drop", str(GATE_BUDGET), "--output", str(out)],
                            cwd=ROOT, capture_output=True, text=True, timeout=3600)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
    return out / "ssdlite320_shapes_int8.engine", out / "ssdlite320_shapes_int8_qdq.onnx", result.stdout


def test_engine_is_built_from_the_gated_model_and_records_the_gate(gated_engine):
    engine, qdq, stdout = gated_engine
    record = read_engine(engine)[1]
    gate = record.metadata.extra["quantization"]["accuracy_gate"]
    assert record.build["int8_route"] == "explicit" and gate["max_map_drop"] == GATE_BUDGET
    assert gate["plain_map_drop"] > GATE_BUDGET >= gate["map_drop"]
    assert sorted(gate["kept_in_float"]) == sorted(HEAD_CONVS)
    assert "layers kept in float: 2 of" in stdout


def test_gated_engine_accuracy_on_the_device(gated_engine, demo_model):
    engine, qdq, _ = gated_engine
    detector = load_detector(engine)
    val = VOCDataset(demo_model[2], "2007", "val", detector.class_names[1:])
    fp32 = evaluate_detector(load_detector(demo_model[1]), val, show_progress=False).map
    int8 = evaluate_detector(detector, val, show_progress=False).map
    cpu = evaluate_detector(load_detector(qdq, "onnxruntime"), val, show_progress=False).map
    detector.close()
    print(f"demo val split: FP32 {100 * fp32:.2f}, gated Q/DQ on TensorRT {100 * int8:.2f}, on ONNX Runtime "
          f"{100 * cpu:.2f}")
    # TensorRT's INT8 kernels round differently from ONNX Runtime's: the gate's budget holds on the CPU judge,
    # the engine is held to the same one-point bound as the ungated explicit engine.
    assert 100 * (fp32 - int8) <= 1.0
