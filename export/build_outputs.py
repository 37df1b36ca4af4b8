"""Where a build's outputs go, what each records it was made from, and when an earlier one is kept: one
place for all three, whichever target or caller.

Names, from the source model's stem: ``STEM_PRECISION[_nms].xml`` (OpenVINO IR) and ``.engine`` (TensorRT);
the ONNX models ``STEM.onnx`` (FP32), ``STEM_fp16.onnx``, ``STEM_int8_qdq.onnx``, each ``..._nms.onnx`` with
EfficientNMS_TRT appended; ``STEM_int8_report/`` and ``STEM.calib.cache`` beside them.

Every output carries, in its metadata's ``extra`` under :data:`MADE_FROM`, what it was made from: the
source ONNX's hash, the target, precision, NMS and batch, the calibration images, and the recipe and tool
versions that shape the result. A request with ``reuse`` keeps an output whose record equals the one it
would write now (:func:`reusable`), and rebuilds it when anything in it changed.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Callable, Dict, Optional

from runtimes.errors import UserError
from runtimes.metadata import ModelMetadata

MADE_FROM = "made_from"
TARGET_SUFFIXES = {"onnx": ".onnx", "openvino": ".xml", "tensorrt": ".engine"}  # the model file each target writes
ONNX_VARIANTS = {"fp32": "", "fp16": "_fp16", "int8": "_int8_qdq"}


def model_file(output_dir: Path, stem: str, precision: str, nms: str, target: str) -> Path:
    """An IR or engine: ``STEM_PRECISION[_nms].xml`` or ``.engine``."""
    return output_dir / f"{stem}_{precision}{'_nms' if nms == 'engine' else ''}{TARGET_SUFFIXES[target]}"


def onnx_variant(output_dir: Path, stem: str, precision: str) -> Path:
    """The ONNX model at ``precision``: as exported, FP16, or Q/DQ INT8."""
    return output_dir / f"{stem}{ONNX_VARIANTS[precision]}{TARGET_SUFFIXES['onnx']}"


def with_nms(onnx_path: Path, output_dir: Path) -> Path:
    """``onnx_path`` with EfficientNMS_TRT appended."""
    return output_dir / f"{onnx_path.stem}_nms.onnx"


def int8_report_folder(output_dir: Path, stem: str) -> Path:
    return output_dir / f"{stem}_int8_report"


def calibration_cache(output_dir: Path, stem: str) -> Path:
    """The TensorRT implicit route's calibration cache."""
    return output_dir / f"{stem}.calib.cache"


def made_from(source_onnx: Path, target: str, precision: str, nms: str, calibration: Any = None,
              **settings: Any) -> Dict[str, Any]:
    """The record an output carries of what it was made from (JSON types, as read back from a file)."""
    from runtimes.hashing import sha256_file

    record = {"source_onnx_sha256": sha256_file(source_onnx), "target": target, "precision": precision,
              "nms": nms, "calibration": None if calibration is None else calibration.record(), **settings}
    return json.loads(json.dumps(record, sort_keys=True))


def stamped(meta: ModelMetadata, record: Dict[str, Any]) -> ModelMetadata:
    """``meta`` carrying ``record`` as what its file is made from (the builders keep ``extra`` as given)."""
    return meta.replace(extra={**meta.extra, MADE_FROM: record})


def recorded(path: Path) -> Optional[Dict[str, Any]]:
    """What the output at ``path`` records it was made from; None when it has no (readable) record."""
    try:
        meta = _file_metadata(Path(path))
    except UserError:
        return None
    return meta.extra.get(MADE_FROM) if meta is not None else None


def _file_metadata(path: Path) -> Optional[ModelMetadata]:
    if not path.is_file():
        return None
    suffix = path.suffix.lower()
    if suffix == ".onnx":
        from runtimes.metadata_io import onnx_file_metadata

        return onnx_file_metadata(path)
    if suffix == ".xml":
        try:
            import openvino as ov
        except ImportError:
            return None  # no OpenVINO here: nothing to keep, and the build says what to install
        from runtimes.openvino_runner import read_metadata

        return read_metadata(ov.Core().read_model(str(path)), str(path))
    if suffix == ".engine":
        from runtimes.tensorrt_engine_file import read_engine

        return read_engine(path)[1].metadata
    return None


def reusable(path: Path, record: Dict[str, Any], reuse: bool, log: Callable[[str], None] = print) -> bool:
    """Whether to keep the output at ``path`` (``reuse`` asked for, and it was made from ``record``)."""
    if reuse and recorded(path) == record:
        log(f"reusing {path.name} (built from the same inputs)")
        return True
    return False
