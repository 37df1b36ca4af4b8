"""The base class every runtime's detector derives from: preprocess -> infer -> post-process.

A backend implements :meth:`Detector.infer` (and may override :meth:`Detector.prepare` when it folds
pre-processing into its graph); the shared :class:`Preprocessor` and :class:`SSDPostprocessor` do the rest,
so every runtime returns the same :class:`Detections` for the same frame.
"""

from __future__ import annotations

import time
from typing import Any, Dict

import numpy as np

from runtimes.detections import Detections
from runtimes.metadata import ModelMetadata
from runtimes.postprocess import SSDPostprocessor
from runtimes.preprocess import Preprocessor, check_image

STAGES = ("preprocess", "inference", "postprocess")


class Detector:
    """Callable on a (H, W, 3) uint8 BGR image; returns :class:`Detections` in that image's pixels.

    Keyword thresholds (``score_threshold``, ``iou_threshold``, ``topk_candidates``, ``max_detections``)
    override the defaults stored in the model file. ``last_timings`` holds the seconds each stage of the
    latest call took.
    """

    backend = "base"

    def __init__(self, meta: ModelMetadata, path: str, **thresholds: Any) -> None:
        self.meta = meta
        self.path = path
        self.preprocessor = Preprocessor(meta)
        self.postprocessor = SSDPostprocessor(meta, **thresholds)
        self.last_timings: Dict[str, float] = {}

    @property
    def class_names(self):
        return self.meta.class_names

    @property
    def device(self) -> str:
        return "CPU"

    def prepare(self, image_bgr: np.ndarray) -> np.ndarray:
        """The network input for one frame (default: the shared preprocessing, (1, 3, H, W) float32)."""
        return self.preprocessor(image_bgr)

    def infer(self, batch: np.ndarray) -> Dict[str, np.ndarray]:
        """Run the network on prepared input; return its outputs by name (batch axis first)."""
        raise NotImplementedError

    def __call__(self, image_bgr: np.ndarray) -> Detections:
        image_size = check_image(image_bgr)
        t0 = time.perf_counter()
        batch = self.prepare(image_bgr)
        t1 = time.perf_counter()
        outputs = self.infer(batch)
        t2 = time.perf_counter()
        detections = self.postprocessor(outputs, image_size)
        t3 = time.perf_counter()
        self.last_timings = {"preprocess": t1 - t0, "inference": t2 - t1, "postprocess": t3 - t2}
        return detections

    def close(self) -> None:
        """Release runtime resources; the detector is unusable afterwards."""

    def __enter__(self) -> "Detector":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def describe(self) -> str:
        return f"{self.backend} on {self.device}: {self.meta.arch}, {self.meta.input_width}x{self.meta.input_height}"
