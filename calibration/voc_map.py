"""PASCAL VOC detection metric: per-class AP and mAP at IoU 0.5, difficult objects ignored.

Two ways to summarise a precision/recall curve:

* ``"voc07"``: the VOC2007 11-point metric, mean of the best precision at recall >= 0, 0.1, ..., 1;
* ``"voc12"``: the VOC2010+ metric, the area under the monotone (interpolated) precision envelope.

Matching follows the devkit: detections of a class are taken by decreasing score over all images; one
whose best-overlapping ground truth has IoU > 0.5 is a true positive if that object is not yet taken, a
false positive if it is, and ignored if the object is ``difficult``; below 0.5 it is a false positive.
Boxes are continuous pixel corners (see :mod:`calibration.voc`), so IoU has no ``+1`` terms. A class
with no non-difficult object has no AP (NaN) and is left out of the mean.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Dict, List, Mapping, Sequence, Tuple

import numpy as np

METRICS = ("voc07", "voc12")


def iou_one_to_many(box: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    tl = np.maximum(box[:2], boxes[:, :2])
    br = np.minimum(box[2:], boxes[:, 2:])
    inter = np.prod(np.clip(br - tl, 0, None), axis=1)
    union = np.prod(box[2:] - box[:2]) + np.prod(boxes[:, 2:] - boxes[:, :2], axis=1) - inter
    return inter / np.maximum(union, np.finfo(np.float64).eps)


def average_precision(recall: np.ndarray, precision: np.ndarray, metric: str = "voc07") -> float:
    """AP of a precision/recall curve (arrays in detection order)."""
    if metric == "voc07":
        best = [precision[recall >= t].max(initial=0.0) for t in np.linspace(0.0, 1.0, 11)]
        return float(sum(best) / 11.0)  # sum first: a perfect curve scores exactly 1.0
    if metric == "voc12":
        mrec = np.concatenate([[0.0], recall, [1.0]])
        mpre = np.concatenate([[0.0], precision, [0.0]])
        mpre = np.maximum.accumulate(mpre[::-1])[::-1]
        steps = np.flatnonzero(mrec[1:] != mrec[:-1])
        return float(np.sum((mrec[steps + 1] - mrec[steps]) * mpre[steps + 1]))
    raise ValueError(f"unknown metric {metric!r}: choose one of {', '.join(METRICS)}")


@dataclass
class GroundTruth:
    """One image's objects: boxes (M, 4) continuous xyxy, labels (M,) names, difficult (M,) bool."""

    boxes: np.ndarray
    labels: Sequence[str]
    difficult: np.ndarray


@dataclass
class ImageDetections:
    """One image's detections: boxes (K, 4) xyxy pixels, scores (K,), labels (K,) names."""

    boxes: np.ndarray
    scores: np.ndarray
    labels: Sequence[str]


@dataclass
class MapResult:
    metric: str
    per_class: Dict[str, float]  # NaN where the class has no non-difficult object
    positives: Dict[str, int] = field(default_factory=dict)
    detections: Dict[str, int] = field(default_factory=dict)

    @property
    def map(self) -> float:
        values = [v for v in self.per_class.values() if not math.isnan(v)]
        return float(np.mean(values)) if values else float("nan")

    def table(self) -> str:
        lines = [f"{'class':<16} {'AP':>7} {'objects':>8} {'dets':>7}"]
        for name, ap in self.per_class.items():
            shown = "   n/a" if math.isnan(ap) else f"{100 * ap:6.2f}"
            lines.append(f"{name:<16} {shown:>7} {self.positives.get(name, 0):>8} {self.detections.get(name, 0):>7}")
        lines.append(f"{'mAP (' + self.metric + ')':<16} {100 * self.map:6.2f}")
        return "\n".join(lines)


def _class_ap(name: str, truth: Mapping[str, GroundTruth], dets: Mapping[str, ImageDetections],
              iou_threshold: float, metric: str) -> Tuple[float, int, int]:
    gt_boxes, gt_difficult, npos = {}, {}, 0
    for image_id, gt in truth.items():
        mask = np.array([label == name for label in gt.labels], dtype=bool)
        gt_boxes[image_id] = np.asarray(gt.boxes, dtype=np.float64).reshape(-1, 4)[mask]
        gt_difficult[image_id] = np.asarray(gt.difficult, dtype=bool)[mask]
        npos += int((~gt_difficult[image_id]).sum())
    ids: List[str] = []
    scores: List[float] = []
    boxes: List[np.ndarray] = []
    for image_id, det in dets.items():
        for box, score, label in zip(det.boxes, det.scores, det.labels):
            if label == name:
                ids.append(image_id)
                scores.append(float(score))
                boxes.append(np.asarray(box, dtype=np.float64))
    if npos == 0:
        return float("nan"), 0, len(scores)
    order = np.argsort(-np.asarray(scores), kind="stable")
    taken = {image_id: np.zeros(len(b), dtype=bool) for image_id, b in gt_boxes.items()}
    tp = np.zeros(len(order))
    fp = np.zeros(len(order))
    for rank, i in enumerate(order):
        candidates = gt_boxes.get(ids[i])
        if candidates is None or not len(candidates):
            fp[rank] = 1
            continue
        overlaps = iou_one_to_many(boxes[i], candidates)
        best = int(np.argmax(overlaps))
        if overlaps[best] > iou_threshold:
            if gt_difficult[ids[i]][best]:
                continue
            if not taken[ids[i]][best]:
                taken[ids[i]][best] = True
                tp[rank] = 1
            else:
                fp[rank] = 1
        else:
            fp[rank] = 1
    # Ignored (difficult) detections count as neither; drop them from the curve.
    counted = (tp + fp) > 0
    tp, fp = np.cumsum(tp[counted]), np.cumsum(fp[counted])
    recall = tp / npos
    precision = tp / np.maximum(tp + fp, np.finfo(np.float64).eps)
    return average_precision(recall, precision, metric), npos, len(scores)


def evaluate(truth: Mapping[str, GroundTruth], detections: Mapping[str, ImageDetections],
             class_names: Sequence[str], metric: str = "voc07", iou_threshold: float = 0.5) -> MapResult:
    """Per-class AP and mAP of ``detections`` against ``truth`` (both keyed by image id)."""
    if metric not in METRICS:
        raise ValueError(f"unknown metric {metric!r}: choose one of {', '.join(METRICS)}")
    result = MapResult(metric, {})
    for name in class_names:
        ap, npos, ndet = _class_ap(name, truth, detections, iou_threshold, metric)
        result.per_class[name] = ap
        result.positives[name] = npos
        result.detections[name] = ndet
    return result
