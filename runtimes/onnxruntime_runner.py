"""ONNX Runtime on the CPU: the toolkit's reference runtime."""

from __future__ import annotations

from typing import Any, Dict, Optional, Sequence

import numpy as np

from runtimes.detector import Detector, batch_capacity, pad_batch
from runtimes.errors import UserError
from runtimes.loader import Runtime
from runtimes.metadata_io import onnx_session_metadata
from runtimes.requests import Requests, ThreadRequests


class OnnxRuntimeDetector(Detector):
    """Runs an exported ``.onnx`` file with ONNX Runtime.

    Args:
        path: an ONNX file written by ``export/export_onnx.py`` (it carries the SSD metadata).
        providers: ONNX Runtime execution providers (default: CPU).
        threads: intra-op threads (default: ONNX Runtime's choice, one per core).
        max_batch: images per network call for a dynamic-batch model (default 8); a static-batch model
            takes its own batch.
    """

    backend = "onnxruntime"

    def __init__(self, path: str, *, providers: Optional[Sequence[str]] = None, threads: Optional[int] = None,
                 max_batch: Optional[int] = None, **thresholds: Any) -> None:
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
        super().__init__(onnx_session_metadata(self.session, str(path)), str(path), **thresholds)
        graph_input = self.session.get_inputs()[0]
        self.input_name = graph_input.name
        batch = graph_input.shape[0]
        self.static_batch = batch if isinstance(batch, int) and batch > 0 else None
        self.max_batch = batch_capacity(self.static_batch, max_batch, str(path))
        self.output_names = [o.name for o in self.session.get_outputs()]

    @property
    def device(self) -> str:
        provider = self.session.get_providers()[0]
        return "CPU" if provider == "CPUExecutionProvider" else provider.replace("ExecutionProvider", "")

    def infer(self, batch: np.ndarray) -> Dict[str, np.ndarray]:
        if self.static_batch is not None:
            batch = pad_batch(batch, self.static_batch)
        results = self.session.run(self.output_names, {self.input_name: batch})
        return dict(zip(self.output_names, results))

    def requests(self, depth: int = 1) -> Requests:
        # InferenceSession.run is thread-safe: requests are concurrent run() calls on one session, each with
        # the session's intra-op threads (so on a 2-core CPU more than 2 rarely pays).
        return ThreadRequests(self, depth)


RUNTIME = Runtime("onnxruntime", (".onnx",), OnnxRuntimeDetector)
