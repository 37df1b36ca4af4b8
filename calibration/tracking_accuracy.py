"""MOTA and IDF1 of a detector + :class:`analytics.tracker.ByteTracker` on the generated tracking set
(:mod:`calibration.synthetic_tracks`), with py-motmetrics, at a detection interval: the detector's boxes on
every ``interval``-th frame, the tracker's prediction alone on the frames between (``--interval N``).

The detector runs once per frame (:func:`detect_set`); each interval replays those detections, so intervals
compare on the same boxes. Ground-truth rows of objects less than half visible are left out (MOTChallenge's
convention), and so are the tracks that lie mostly inside such an object's box: a tracker neither has to find
an object hidden behind the band nor is punished for still seeing its visible part.

    sequences = detect_set(load_detector(demo_onnx(), score_threshold=0.05))
    summary = evaluate(sequences, interval=2)        # a pandas DataFrame, one row per sequence + "OVERALL"
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional

import numpy as np

from analytics.tracker import ByteTracker, Tracks, iou_matrix
from calibration.synthetic_tracks import GroundTruth, ensure_tracking_set, frame_paths, read_ground_truth, sequences_of
from runtimes.detections import Detections

MIN_VISIBILITY = 0.5
MATCH_IOU = 0.5
METRICS = ["mota", "idf1", "num_switches", "num_false_positives", "num_misses", "num_objects",
           "num_unique_objects", "mostly_tracked"]


@dataclass
class DetectedSequence:
    """One sequence of the set: its name, ground truth by 1-based frame number, the detections of each frame."""

    name: str
    truth: Dict[int, List[GroundTruth]]
    detections: List[Detections]


def detect_set(detector: Callable[[np.ndarray], Detections], root: Optional[Path] = None) -> List[DetectedSequence]:
    """The detector on every frame of the set (made on first use) -> its sequences with their detections."""
    import cv2

    root = ensure_tracking_set(verbose=False) if root is None else root
    out = []
    for sequence in sequences_of(root):
        detections = []
        for path in frame_paths(sequence):
            image = cv2.imread(str(path))
            if image is None:
                raise FileNotFoundError(f"{path}: not a readable image; delete the tracking set to remake it")
            detections.append(detector(image))
        out.append(DetectedSequence(sequence.name, read_ground_truth(sequence), detections))
    return out


def track(detections: List[Detections], tracker: ByteTracker, interval: int = 1) -> List[Tracks]:
    """The tracker over one sequence: ``update`` on frames 0, interval, 2 x interval, ..., ``predict`` between."""
    if interval < 1:
        raise ValueError(f"interval must be 1 or more, not {interval}")
    return [tracker.update(d.boxes, d.scores, d.labels) if i % interval == 0 else tracker.predict()
            for i, d in enumerate(detections)]


def _intersection_over_first(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(N, 4), (M, 4) boxes -> (N, M) area of the intersection over the area of a's box."""
    ix = np.clip(np.minimum(a[:, None, 2], b[None, :, 2]) - np.maximum(a[:, None, 0], b[None, :, 0]), 0, None)
    iy = np.clip(np.minimum(a[:, None, 3], b[None, :, 3]) - np.maximum(a[:, None, 1], b[None, :, 1]), 0, None)
    return ix * iy / np.maximum((a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1]), 1e-9)[:, None]


def accumulate(mm: Any, truth: Dict[int, List[GroundTruth]], tracks: List[Tracks]) -> Any:
    """A motmetrics ``MOTAccumulator`` of one sequence: ground truth against the tracks of each frame."""
    acc = mm.MOTAccumulator(auto_id=False)
    for number, frame_tracks in enumerate(tracks, 1):
        objects = truth.get(number, [])
        kept = [g for g in objects if g.visibility >= MIN_VISIBILITY]
        hidden = np.array([g.box for g in objects if g.visibility < MIN_VISIBILITY], float).reshape(-1, 4)
        gt_boxes = np.array([g.box for g in kept], float).reshape(-1, 4)
        hyp_boxes, hyp_ids = frame_tracks.boxes.astype(float), frame_tracks.ids
        if hidden.size and hyp_boxes.size:
            on_hidden = _intersection_over_first(hyp_boxes, hidden).max(axis=1) >= 0.5
            on_kept = (iou_matrix(hyp_boxes, gt_boxes).max(axis=1) >= MATCH_IOU if gt_boxes.size
                       else np.zeros(len(hyp_ids), bool))
            keep = ~(on_hidden & ~on_kept)
            hyp_boxes, hyp_ids = hyp_boxes[keep], hyp_ids[keep]
        # 1 - IoU, pairs below IoU 0.5 impossible (motmetrics' own iou_matrix calls np.asfarray, which numpy 2
        # removed; this is the same distance)
        distances = 1.0 - iou_matrix(gt_boxes, hyp_boxes)
        distances[distances > 1.0 - MATCH_IOU] = np.nan
        acc.update([g.track_id for g in kept], hyp_ids.tolist(), distances, frameid=number)
    return acc


def evaluate(sequences: List[DetectedSequence], interval: int = 1,
             make_tracker: Callable[[], ByteTracker] = ByteTracker) -> Any:
    """py-motmetrics summary (pandas DataFrame: :data:`METRICS` per sequence and ``OVERALL``) of a fresh
    tracker per sequence, run at ``interval``."""
    import motmetrics as mm

    accumulators = [accumulate(mm, s.truth, track(s.detections, make_tracker(), interval)) for s in sequences]
    return mm.metrics.create().compute_many(accumulators, names=[s.name for s in sequences], metrics=METRICS,
                                            generate_overall=True)
