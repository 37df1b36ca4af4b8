"""Explicit INT8: a Q/DQ ONNX model, calibrated on the CPU from the shared calibration stream.

TensorRT builds a model with QuantizeLinear/DequantizeLinear pairs as INT8 on every version, including
11, which has no implicit calibration. ONNX Runtime's static quantizer makes it with the settings
TensorRT's explicit-quantization path expects: int8 everywhere with zero points of 0 (symmetric
activations and weights), per-channel weight scales, Q/DQ on Conv inputs only and biases left in float
(TensorRT fuses them itself). Because the result is plain ONNX, its accuracy is measured here with ONNX
Runtime and OpenVINO before any device sees it.
"""

from __future__ import annotations

import contextlib
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, Iterator, Optional

from calibration.progress import progress
from calibration.stream import CalibrationSet, CalibrationStream
from export.onnx_model import load_onnx, save_checked, write_metadata
from runtimes.atomic import atomic_outputs
from runtimes.errors import UserError
from runtimes.hashing import sha256_file
from runtimes.metadata import INPUT_NAME, ModelMetadata
from runtimes.preprocess import Preprocessor

METHODS = ("minmax", "entropy", "percentile")
# Recorded in the model; what TensorRT's explicit quantization needs (see the module docstring).
QDQ_SETTINGS: Dict[str, Any] = {"format": "QDQ", "activations": "int8 symmetric", "weights": "int8 symmetric",
                                "per_channel": True, "ops": ["Conv"], "bias": "float"}


@dataclass
class QDQReport:
    path: Path
    seconds: float
    record: Dict[str, Any] = field(default_factory=dict)


def build_qdq_onnx(source: Path, meta: ModelMetadata, images: CalibrationSet, output: Path,
                   method: str = "minmax", show_progress: bool = True) -> QDQReport:
    """Quantize ``source`` (an exported FP32 ONNX) into ``output``, calibrated on ``images``."""
    try:
        from onnxruntime.quantization import (
            CalibrationDataReader,
            CalibrationMethod,
            QuantFormat,
            QuantType,
            quantize_static,
        )
    except ImportError:
        raise UserError("the Q/DQ model is made with ONNX Runtime's quantizer: pip install onnxruntime "
                        "(on a desktop; copy the Q/DQ .onnx to the device)") from None
    if method not in METHODS:
        raise UserError(f"unknown Q/DQ calibration method '{method}': choose one of {', '.join(METHODS)}")
    stream = CalibrationStream(images, Preprocessor(meta))
    samples = progress(stream.samples(), len(stream.paths), "calibrating Q/DQ", show_progress)

    class Reader(CalibrationDataReader):
        def get_next(self) -> Optional[Dict[str, Any]]:
            sample = next(samples, None)
            return None if sample is None else {INPUT_NAME: sample}

    calibrate = {"minmax": CalibrationMethod.MinMax, "entropy": CalibrationMethod.Entropy,
                 "percentile": CalibrationMethod.Percentile}[method]
    start = time.monotonic()
    with atomic_outputs(output) as (temp,), _quiet_root_logger():
        quantize_static(
            str(source), str(temp), Reader(), quant_format=QuantFormat.QDQ, op_types_to_quantize=["Conv"],
            per_channel=True, activation_type=QuantType.QInt8, weight_type=QuantType.QInt8,
            calibrate_method=calibrate,
            # No CalibMaxIntermediateOutputs: in onnxruntime 1.32 the MinMax calibrator discards (rather than
            # merges) each full chunk, so the ranges would come from the last few images only. MinMax keeps
            # just two numbers per tensor and image anyway; entropy/percentile keep whole activations, so
            # they need fewer --calib-images on big models.
            extra_options={"ActivationSymmetric": True, "WeightSymmetric": True, "QuantizeBias": False})
        record = {"route": "explicit Q/DQ", "quantizer": "onnxruntime.quantization.quantize_static",
                  "method": method, **QDQ_SETTINGS, "calibration": images.record(),
                  "source_onnx_sha256": sha256_file(source)}
        model = load_onnx(temp)
        write_metadata(model, meta.replace(extra={**meta.extra, "precision": "int8", "quantization": record}))
        save_checked(model, temp)
    return QDQReport(output, time.monotonic() - start, record)


@contextlib.contextmanager
def _quiet_root_logger() -> Iterator[None]:
    """ONNX Runtime's quantizer logs advice ("consider pre-processing") on the root logger at WARNING."""
    logging.disable(logging.WARNING)
    try:
        yield
    finally:
        logging.disable(logging.NOTSET)
