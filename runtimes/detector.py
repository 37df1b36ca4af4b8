"""The base class every runtime's detector derives from: preprocess -> infer -> post-process.

A backend implements :meth:`Detector.infer` on a prepared batch and sets ``max_batch`` (how many images one
network call takes); it may override :meth:`Detector.requests` with its own requests in flight, and
``self.preprocessor`` when its compiled graph takes another input than the file's (OpenVINO). The shared
:class:`Preprocessor` and :class:`SSDPostprocessor` do the rest, so every runtime returns the same
:class:`Detections` for the same frame, alone or in a batch.
"""

from __future__ import annotations

import time
from typing import Any, Dict, List, Sequence, Tuple

import numpy as np

from runtimes.detections import Detections
from runtimes.errors import UserError
from runtimes.metadata import ModelMetadata
from runtimes.postprocess import SSDPostprocessor
from runtimes.preprocess import Preprocessor, check_image
from runtimes.requests import Requests, SyncRequests

STAGES = ("preprocess", "inference", "postprocess")
DEFAULT_DYNAMIC_BATCH = 8  # images per call for a dynamic-batch model unless max_batch= says otherwise


def batch_capacity(graph_batch: "int | None", requested: "int | None", origin: str) -> int:
    """Images per network call: a static graph batch as it is (``requested`` must agree), a dynamic one
    (None or <= 0) ``requested`` or :data:`DEFAULT_DYNAMIC_BATCH`."""
    if graph_batch is not None and graph_batch > 0:
        if requested is not None and int(requested) != graph_batch:
            raise UserError(f"{origin}: the model has a static batch of {graph_batch}, so max_batch={requested} "
                            "cannot apply: export it with a dynamic batch axis (python export/export_onnx.py "
                            "--dynamic-batch, or python export/build_engine.py --batch 1,OPT,MAX)")
        return graph_batch
    if requested is not None and int(requested) < 1:
        raise UserError(f"{origin}: max_batch must be at least 1, got {requested}")
    return int(requested) if requested is not None else DEFAULT_DYNAMIC_BATCH


class Detector:
    """Callable on a (H, W, 3) uint8 BGR image; returns :class:`Detections` in that image's pixels.

    Keyword thresholds (``score_threshold``, ``iou_threshold``, ``topk_candidates``, ``max_detections``)
    override the defaults stored in the model file. ``default_score_threshold`` is a caller's own default in
    place of the model's (a camera's instead of the mAP one): used when ``score_threshold`` is not given,
    never below a threshold built into the model (NMS inside). ``last_timings`` holds the seconds each stage
    of the latest call took. ``max_batch`` images go into one network call (1 for a static batch-1 model).
    """

    backend = "base"
    max_batch = 1

    def __init__(self, meta: ModelMetadata, path: str, **thresholds: Any) -> None:
        self.meta = meta
        self.path = path
        self.preprocessor = Preprocessor(meta)
        default = thresholds.pop("default_score_threshold", None)
        if default is not None and thresholds.get("score_threshold") is None:
            floor = meta.score_threshold if meta.output_format == "nms" else float("-inf")
            thresholds["score_threshold"] = max(float(default), floor)
        self.postprocessor = SSDPostprocessor(meta, **thresholds)
        self.last_timings: Dict[str, float] = {}

    @property
    def class_names(self):
        return self.meta.class_names

    @property
    def score_threshold(self) -> float:
        """Detections kept score strictly above this."""
        return self.postprocessor.score_threshold

    @property
    def device(self) -> str:
        return "CPU"

    @property
    def shares_cpu(self) -> bool:
        """Whether inference runs on the CPU cores the host's pre-processing uses (see
        :func:`runtimes.preprocess.leave_cores_to_runtime`)."""
        return self.device.upper().startswith("CPU")

    def prepare(self, image_bgr: np.ndarray) -> np.ndarray:
        """The network input for one frame, with a batch axis of 1."""
        return self.preprocessor(image_bgr)

    def prepare_batch(self, frames: Sequence[np.ndarray],
                      first_index: int = 0) -> Tuple[np.ndarray, List[Tuple[int, int]]]:
        """The network input for ``frames`` (batch axis first) and each frame's (height, width); a frame that
        is not an (H, W, 3) uint8 image is a ValueError naming its index (``first_index`` + position)."""
        sizes = []
        for i, frame in enumerate(frames):
            try:
                sizes.append(check_image(frame))
            except ValueError as exc:
                raise ValueError(f"frame {first_index + i} of the batch: {exc}") from None
        prepared = [self.prepare(frame) for frame in frames]
        return (prepared[0] if len(prepared) == 1 else np.concatenate(prepared, axis=0)), sizes

    def infer(self, batch: np.ndarray) -> Dict[str, np.ndarray]:
        """Run the network on prepared input of B <= ``max_batch`` images; its outputs by name, batch axis
        first (at least B entries: a fixed-batch model may return padding after them)."""
        raise NotImplementedError

    def detect_batch(self, frames: Sequence[np.ndarray]) -> List[Detections]:
        """Detections for each of ``frames`` (any number, any sizes), ``max_batch`` frames per network call;
        the same as one call per frame. ``last_timings`` sums the stages over the calls."""
        results: List[Detections] = []
        totals = dict.fromkeys(STAGES, 0.0)
        for start in range(0, len(frames), self.max_batch):
            t0 = time.perf_counter()
            batch, sizes = self.prepare_batch(frames[start:start + self.max_batch], start)
            t1 = time.perf_counter()
            outputs = self.infer(batch)
            t2 = time.perf_counter()
            results.extend(self.postprocessor.batch(outputs, sizes))
            t3 = time.perf_counter()
            for stage, seconds in zip(STAGES, (t1 - t0, t2 - t1, t3 - t2)):
                totals[stage] += seconds
        self.last_timings = totals
        return results

    def __call__(self, image_bgr: np.ndarray) -> Detections:
        check_image(image_bgr)
        return self.detect_batch([image_bgr])[0]

    def requests(self, depth: int = 1) -> Requests:
        """Up to ``depth`` requests in flight (see :class:`runtimes.requests.Requests`); the base class runs
        each inside ``submit``, runtimes with concurrency of their own override this."""
        return SyncRequests(self, depth)

    def close(self) -> None:
        """Release runtime resources; the detector is unusable afterwards."""

    def __enter__(self) -> "Detector":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def describe(self) -> str:
        batch = f", batch {self.max_batch}" if self.max_batch > 1 else ""
        size = f"{self.meta.input_width}x{self.meta.input_height}"
        return f"{self.backend} on {self.device}: {self.meta.arch}, {size}{batch}"


def pad_batch(batch: np.ndarray, size: int) -> np.ndarray:
    """``batch`` padded with zeros to ``size`` images, for models with a fixed batch larger than the call's."""
    if batch.shape[0] >= size:
        return batch
    padding = np.zeros((size - batch.shape[0],) + batch.shape[1:], dtype=batch.dtype)
    return np.concatenate([batch, padding], axis=0)
