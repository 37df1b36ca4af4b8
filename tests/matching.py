"""Comparing two detectors' results."""

from __future__ import annotations

from typing import Tuple

import numpy as np

from runtimes.detections import Detections


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    tl = np.maximum(a[:, None, :2], b[None, :, :2])
    br = np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.prod(np.clip(br - tl, 0, None), axis=2)
    area_a = np.prod(a[:, 2:] - a[:, :2], axis=1)
    area_b = np.prod(b[:, 2:] - b[:, :2], axis=1)
    return inter / np.maximum(area_a[:, None] + area_b[None] - inter, 1e-9)


def matched(reference: Detections, other: Detections, min_score: float, iou: float = 0.99) -> Tuple[int, int]:
    """(matched, total): reference detections scoring at least ``min_score`` that ``other`` has too, with
    the same label at IoU >= ``iou``."""
    ref = reference.filter(min_score=min_score)
    if not len(ref) or not len(other):
        return 0, len(ref)
    same = ref.labels[:, None] == other.labels[None, :]
    return int(((box_iou(ref.boxes, other.boxes) >= iou) & same).any(axis=1).sum()), len(ref)
