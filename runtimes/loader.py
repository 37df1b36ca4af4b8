"""``load_detector(path)``: the one entry point from a model file to a :class:`Detector`.

The runtime is chosen by the file type (``.onnx`` -> ONNX Runtime, ``.xml`` -> OpenVINO, ``.engine`` /
``.plan`` -> TensorRT) unless ``runtime=`` names one; backends are imported only when used, so a machine
needs only the runtime it runs.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

from runtimes.detector import Detector
from runtimes.errors import UserError

RUNTIMES = ("onnxruntime", "openvino", "tensorrt")
_BY_SUFFIX = {".onnx": "onnxruntime", ".xml": "openvino", ".engine": "tensorrt", ".plan": "tensorrt"}


def runtime_for(path: Path, runtime: Optional[str] = None) -> str:
    if runtime is not None:
        if runtime not in RUNTIMES:
            raise UserError(f"unknown runtime '{runtime}': choose one of {', '.join(RUNTIMES)}")
        return runtime
    try:
        return _BY_SUFFIX[path.suffix.lower()]
    except KeyError:
        raise UserError(f"{path}: unknown model type '{path.suffix}'; expected .onnx (ONNX Runtime), "
                        ".xml (OpenVINO IR) or .engine/.plan (TensorRT)") from None


def load_detector(path: "str | Path", runtime: Optional[str] = None, **options: Any) -> Detector:
    """A detector for the model file at ``path``.

    Args:
        path: ``.onnx``, OpenVINO ``.xml`` or TensorRT ``.engine`` written by this toolkit.
        runtime: force a runtime ("onnxruntime", "openvino", "tensorrt"); an ``.onnx`` file can run on
            OpenVINO too.
        options: thresholds (``score_threshold``, ``iou_threshold``, ``topk_candidates``,
            ``max_detections``) and runtime options (e.g. OpenVINO's ``device``).
    """
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: no such model file; build one with python export/build_engine.py")
    if path.stat().st_size == 0:
        raise UserError(f"{path}: the model file is empty (an interrupted build?); rebuild it")
    chosen = runtime_for(path, runtime)
    if chosen == "onnxruntime":
        if path.suffix.lower() != ".onnx":
            raise UserError(f"{path}: ONNX Runtime runs .onnx files only")
        from runtimes.onnxruntime_runner import OnnxRuntimeDetector

        return OnnxRuntimeDetector(str(path), **options)
    if chosen == "openvino":
        from runtimes.openvino_runner import OpenVINODetector

        return OpenVINODetector(str(path), **options)
    from runtimes.tensorrt_runner import TensorRTDetector

    return TensorRTDetector(str(path), **options)
