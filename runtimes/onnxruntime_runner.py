"""ONNX Runtime on the CPU: the toolkit's reference runtime."""

from __future__ import annotations

from typing import Any, Dict, Optional, Sequence

import numpy as np

from runtimes.detector import Detector
from runtimes.errors import UserError
from runtimes.metadata import METADATA_KEY, ModelMetadata
from runtimes.preprocess import leave_cores_to_runtime


class OnnxRuntimeDetector(Detector):
    """Runs an exported ``.onnx`` file with ONNX Runtime.

    Args:
        path: an ONNX file written by ``export/export_onnx.py`` (it carries the SSD metadata).
        providers: ONNX Runtime execution providers (default: CPU).
        threads: intra-op threads (default: ONNX Runtime's choice, one per core).
    """

    backend = "onnxruntime"

    def __init__(self, path: str, *, providers: Optional[Sequence[str]] = None, threads: Optional[int] = None,
                 **thresholds: Any) -> None:
        try:
            import onnxruntime as ort
        except ImportError:
            raise UserError("onnxruntime is not installed: pip install onnxruntime") from None
        options = ort.SessionOptions()
        options.log_severity_level = 3
        if threads:
            options.intra_op_num_threads = int(threads)
        try:
            self.session = ort.InferenceSession(str(path), options,
                                                providers=list(providers or ["CPUExecutionProvider"]))
        except Exception as exc:  # ORT raises its own exception types for unreadable files
            raise UserError(f"{path}: ONNX Runtime cannot load it ({str(exc).splitlines()[0]}); "
                            "check that it is a complete ONNX file") from None
        props = self.session.get_modelmeta().custom_metadata_map
        if METADATA_KEY not in props:
            raise UserError(f"{path}: no SSD metadata in this ONNX file; convert it first with "
                            "python export/export_onnx.py --onnx-in " + str(path))
        super().__init__(ModelMetadata.from_json(props[METADATA_KEY], str(path)), str(path), **thresholds)
        if self.session.get_providers()[0] == "CPUExecutionProvider":
            leave_cores_to_runtime()
        self.input_name = self.session.get_inputs()[0].name
        self.output_names = [o.name for o in self.session.get_outputs()]

    def infer(self, batch: np.ndarray) -> Dict[str, np.ndarray]:
        results = self.session.run(self.output_names, {self.input_name: batch})
        return dict(zip(self.output_names, results))
