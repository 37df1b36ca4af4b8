"""Comparing two detectors' results."""

from __future__ import annotations

from typing import Any, Dict, Optional, Sequence, Tuple

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


def assert_same_detections(ours: Detections, ref, score_tol: float = 1e-4, box_tol: float = 1e-3) -> None:
    """Same detections in the same order. Scores that differ by less than ``score_tol`` are ties: two
    runtimes (or two sorts) may order those either way, so a detection may sit anywhere inside its tie
    group, but nowhere else."""
    if isinstance(ref, Detections):
        ref = {"boxes": ref.boxes, "scores": ref.scores, "labels": ref.labels}
    assert len(ref["scores"]) > 5, "the reference model should detect something"
    assert len(ours) == len(ref["scores"]), (len(ours), len(ref["scores"]))
    np.testing.assert_allclose(ours.scores, ref["scores"], atol=score_tol, rtol=0)
    for i, (box, label, score) in enumerate(zip(ref["boxes"], ref["labels"], ref["scores"])):
        tie_group = np.flatnonzero(np.abs(ours.scores - score) <= score_tol)
        partners = [j for j in tie_group if ours.labels[j] == label and np.abs(ours.boxes[j] - box).max() <= box_tol]
        assert partners, f"reference detection {i} ({label}, {score:.6f}, {box}) has no counterpart"


def assert_record_matches(got: Sequence[Dict[str, Any]], want: Detections, box_atol: float = 2e-3,
                          score_atol: Optional[float] = 2e-6) -> None:
    """A JSON line's ``detections`` are ``want``, in order: the same labels, boxes within ``box_atol`` px and
    scores within ``score_atol`` (the line rounds boxes to 3 decimals and scores to 6; None: not compared)."""
    assert [d["label"] for d in got] == want.labels.tolist()
    np.testing.assert_allclose(np.array([d["box"] for d in got]).reshape(-1, 4), want.boxes, atol=box_atol)
    if score_atol is not None:
        np.testing.assert_allclose([d["score"] for d in got], want.scores, atol=score_atol)
