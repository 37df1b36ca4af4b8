"""The typed result every detector returns."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Sequence

import numpy as np


@dataclass
class Detections:
    """Detections in one image, sorted by decreasing score.

    boxes: (N, 4) float32 ``(x1, y1, x2, y2)`` in pixels of the original image.
    scores: (N,) float32 in 0..1.
    labels: (N,) int64 indices into ``class_names`` (0 is the background and never appears).
    """

    boxes: np.ndarray
    scores: np.ndarray
    labels: np.ndarray
    class_names: Sequence[str]

    @classmethod
    def empty(cls, class_names: Sequence[str]) -> "Detections":
        return cls(np.zeros((0, 4), np.float32), np.zeros(0, np.float32), np.zeros(0, np.int64), class_names)

    def __len__(self) -> int:
        return int(self.scores.shape[0])

    @property
    def names(self) -> List[str]:
        return [self.class_names[int(i)] for i in self.labels]

    def select(self, keep: np.ndarray) -> "Detections":
        return Detections(self.boxes[keep], self.scores[keep], self.labels[keep], self.class_names)

    def filter(self, min_score: Optional[float] = None, classes: Optional[Sequence[str]] = None) -> "Detections":
        """Keep detections scoring at least ``min_score`` and of the named ``classes``."""
        keep = np.ones(len(self), dtype=bool)
        if min_score is not None:
            keep &= self.scores >= min_score
        if classes is not None:
            wanted = [i for i, n in enumerate(self.class_names) if n in set(classes)]
            keep &= np.isin(self.labels, wanted)
        return self.select(keep)

    def to_list(self) -> List[Dict[str, Any]]:
        return [
            {"label": int(lab), "name": self.class_names[int(lab)], "score": round(float(s), 6),
             "box": [round(float(v), 3) for v in b]}
            for b, s, lab in zip(self.boxes, self.scores, self.labels)
        ]
