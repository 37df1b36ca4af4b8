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


def detect_with_raw_outputs(detector, image_bgr: np.ndarray) -> Tuple[Detections, np.ndarray, Dict[str, np.ndarray]]:
    """``detector(image_bgr)`` through the real Detector, with the network input it prepared and the raw
    outputs its runtime returned for that very call (recorded around ``infer``), so a reference decoder can
    be run on exactly the numbers the toolkit's post-processor saw: no second inference whose float noise
    could differ."""
    seen: Dict[str, Any] = {}
    infer = detector.infer

    def recording(batch: np.ndarray) -> Dict[str, np.ndarray]:
        seen["input"], seen["outputs"] = np.array(batch, copy=True), infer(batch)
        return seen["outputs"]

    detector.infer = recording
    try:
        detections = detector(image_bgr)
    finally:
        del detector.infer
    outputs = {name: np.array(value, copy=True)[:1] for name, value in seen["outputs"].items()}
    return detections, seen["input"], outputs


def assert_close_outputs(got: Dict[str, np.ndarray], want: Dict[str, np.ndarray], atol: float, rtol: float,
                         origin: str) -> None:
    """Each named output of ``want`` is in ``got`` with the same shape, within ``atol + rtol * |want|``."""
    for name, expected in want.items():
        actual = np.asarray(got[name], dtype=np.float32)
        expected = np.asarray(expected, dtype=np.float32)
        assert actual.shape == expected.shape, (origin, name, actual.shape, expected.shape)
        np.testing.assert_allclose(actual, expected, atol=atol, rtol=rtol, err_msg=f"{origin}: {name}")


def as_nchw_input(detector, prepared: np.ndarray) -> np.ndarray:
    """The (1, 3, H, W) normalised tensor a runner's prepared input stands for: itself for an exported
    graph's input; for OpenVINO's (1, H, W, 3) resized BGR pixels (its graph reorders and normalises), those
    pixels reordered to the model's channels and normalised with the file's mean and std."""
    if prepared.shape[1] == 3:
        return prepared
    pixels = prepared[..., ::-1] if detector.meta.channel_order == "RGB" else prepared
    mean, std = np.asarray(detector.meta.mean, np.float32), np.asarray(detector.meta.std, np.float32)
    return ((pixels - mean) / std).transpose(0, 3, 1, 2)
