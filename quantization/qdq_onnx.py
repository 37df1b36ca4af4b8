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
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, Iterator, Optional, Sequence

from calibration.progress import progress
from calibration.stream import CalibrationSet, CalibrationStream
from export.onnx_model import load_onnx, save_checked, write_metadata
from runtimes.atomic import atomic_outputs
from runtimes.errors import UserError
from runtimes.hashing import sha256_file
from runtimes.metadata import INPUT_NAME, ModelMetadata
from runtimes.preprocess import Preprocessor

METHODS = ("minmax", "entropy", "percentile")
# Images per chunk for the histogram calibrators (at most; see build_qdq_onnx).
HISTOGRAM_CHUNK = 32
# The entropy calibrator's histogram, as TensorRT's entropy calibrator makes it (see build_qdq_onnx).
ENTROPY_HISTOGRAM = {"num_bins": 2048, "num_quantized_bins": 128}
# Recorded in the model; what TensorRT's explicit quantization needs (see the module docstring).
# Conv outputs stay float (ONNX Runtime's quantizer would otherwise also put Q/DQ after every Conv, the
# heads' included, rounding the network outputs to int8: their SQNR against FP32 was 22.3 dB on the demo
# model with it, 24.0 dB without); a tensor is quantized where a quantized Conv reads it.
QDQ_SETTINGS: Dict[str, Any] = {"format": "QDQ", "activations": "int8 symmetric", "weights": "int8 symmetric",
                                "per_channel": True, "ops": ["Conv"], "bias": "float", "conv_outputs": "float",
                                "recipe": 2}


@dataclass
class QDQReport:
    path: Path
    seconds: float
    record: Dict[str, Any] = field(default_factory=dict)


def build_qdq_onnx(source: Path, meta: ModelMetadata, images: CalibrationSet, output: Path,
                   method: str = "minmax", show_progress: bool = True, keep_in_float: Sequence[str] = (),
                   ranges_cache: Optional[Path] = None, extra_record: Optional[Dict[str, Any]] = None) -> QDQReport:
    """Quantize ``source`` (an exported FP32 ONNX) into ``output``, calibrated on ``images``.

    ``keep_in_float``: Conv node names (as in the ONNX file) left unquantized (ONNX Runtime's
    ``nodes_to_exclude``). ``ranges_cache``: a JSON file of calibrated tensor ranges (ONNX Runtime's
    calibration cache): written by the first call, read by later ones made from the same ``source``, images
    and ``method``, so that models differing only in ``keep_in_float`` are not calibrated again (the caller
    owns the file and its lifetime). ``extra_record`` is merged into the recorded quantization settings."""
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
    cached = ranges_cache is not None and Path(ranges_cache).is_file()
    samples = iter(()) if cached else progress(stream.samples(), len(stream.paths), "calibrating Q/DQ",
                                               show_progress)
    Reader = _reader_class(CalibrationDataReader, len(stream.paths), samples)
    calibrate = {"minmax": CalibrationMethod.MinMax, "entropy": CalibrationMethod.Entropy,
                 "percentile": CalibrationMethod.Percentile}[method]
    # (the entropy calibration below takes the same chunks)
    chunking = _histogram_chunking(len(stream.paths)) if method != "minmax" and not cached else {}
    start = time.monotonic()
    work = tempfile.mkdtemp(prefix=".qdq.", dir=Path(output).parent)
    with atomic_outputs(output) as (temp,), _quiet_root_logger(), _removed(Path(work)):
        if method == "entropy" and not cached:
            # quantize_static builds the entropy calibrator with 128 histogram bins and 128 quantized bins,
            # which leaves its KL search one candidate, the full range: MinMax under another name (every
            # scale of the demo model equal to MinMax's). Calibrated here with TensorRT's 2048-bin histogram
            # instead; quantize_static reads the ranges from the cache.
            ranges_cache = ranges_cache or Path(work) / "ranges.json"
            _entropy_ranges(source, Reader(), chunking["CalibStridedMinMax"], Path(work), Path(ranges_cache))
            cached = True
        quantize_static(
            str(source), str(temp), None if cached else Reader(), quant_format=QuantFormat.QDQ,
            op_types_to_quantize=["Conv"], per_channel=True, activation_type=QuantType.QInt8,
            weight_type=QuantType.QInt8, calibrate_method=calibrate, nodes_to_exclude=list(keep_in_float),
            calibration_cache_path=None if ranges_cache is None else str(ranges_cache),
            # No CalibMaxIntermediateOutputs: in onnxruntime 1.32 the MinMax calibrator discards (rather than
            # merges) each full chunk, so the ranges would come from the last few images only. MinMax keeps
            # just two numbers per tensor and image anyway; entropy/percentile keep whole activations, so
            # they need fewer --calib-images on big models.
            extra_options={"ActivationSymmetric": True, "WeightSymmetric": True, "QuantizeBias": False,
                           "OpTypesToExcludeOutputQuantization": ["Conv"], **chunking})
        record = {**_record(source, images, method, keep_in_float), **(extra_record or {})}
        model = load_onnx(temp)
        write_metadata(model, meta.replace(precision="int8", quantization="qdq",
                                           extra={**meta.extra, "quantization": record}))
        save_checked(model, temp)
    return QDQReport(output, time.monotonic() - start, record)


def _reader_class(base: Any, count: int, samples: Iterator[Any]) -> Any:
    """ONNX Runtime's calibration reader over ``samples`` (``count`` of them) in order; ``set_range`` is how
    the quantizer asks for one chunk at a time."""

    class Reader(base):
        def __init__(self) -> None:
            self.left = count

        def __len__(self) -> int:
            return count

        def set_range(self, start_index: int, end_index: int) -> None:
            self.left = end_index - start_index

        def get_next(self) -> Optional[Dict[str, Any]]:
            sample = next(samples, None) if self.left > 0 else None
            self.left -= 1
            return None if sample is None else {INPUT_NAME: sample}

    return Reader


def _histogram_chunking(count: int) -> Dict[str, Any]:
    """The histogram calibrators keep every image's activations until they build their histograms (GBs for a
    few hundred images); in chunks ("CalibStridedMinMax", which despite its name drives any calibrator, and
    which must divide the image count) they merge histograms chunk by chunk instead."""
    return {"CalibStridedMinMax": max(d for d in range(1, HISTOGRAM_CHUNK + 1) if count % d == 0)}


def _record(source: Path, images: CalibrationSet, method: str, keep_in_float: Sequence[str]) -> Dict[str, Any]:
    """The quantization record the model carries: route, quantizer, settings, calibration, source."""
    return {"route": "explicit Q/DQ", "quantizer": "onnxruntime.quantization.quantize_static", "method": method,
            **({"histogram": ENTROPY_HISTOGRAM} if method == "entropy" else {}), **QDQ_SETTINGS,
            "calibration": images.record(), "source_onnx_sha256": sha256_file(source),
            "kept_in_float": list(keep_in_float)}


def _entropy_ranges(source: Path, reader: Any, chunk: int, work: Path, cache: Path) -> None:
    """KL-divergence (entropy) ranges of the tensors Conv nodes read, symmetric, from a 2048-bin histogram
    merged ``chunk`` images at a time, written to ``cache`` (ONNX Runtime's calibration cache format)."""
    import importlib

    from onnxruntime.quantization import CalibrationMethod, create_calibrator

    # quantize_static's own cache writer; the module is shadowed by the function of the same name in the
    # package namespace, hence the import by module path.
    save_tensors_data = importlib.import_module("onnxruntime.quantization.quantize").save_tensors_data
    calibrator = create_calibrator(Path(source), ["Conv"], augmented_model_path=str(work / "augmented.onnx"),
                                   calibrate_method=CalibrationMethod.Entropy,
                                   extra_options={"symmetric": True, **ENTROPY_HISTOGRAM})
    for start in range(0, len(reader), chunk):
        reader.set_range(start, start + chunk)
        calibrator.collect_data(reader)
    save_tensors_data(calibrator.compute_data(), cache)


@contextlib.contextmanager
def _removed(folder: Path) -> Iterator[None]:
    try:
        yield
    finally:
        shutil.rmtree(folder, ignore_errors=True)


@contextlib.contextmanager
def _quiet_root_logger() -> Iterator[None]:
    """ONNX Runtime's quantizer logs advice ("consider pre-processing") on the root logger at WARNING."""
    logging.disable(logging.WARNING)
    try:
        yield
    finally:
        logging.disable(logging.NOTSET)
