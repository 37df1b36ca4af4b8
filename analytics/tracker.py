"""ByteTrack: multi-object tracking by associating every detection box, high- and low-scoring.

One :class:`ByteTracker` per stream. Each frame, tracks move by the constant-velocity Kalman filter
(:mod:`analytics.kalman`), then:

1. confirmed tracks (tracked or recently lost) are matched to the high-score detections by IoU; lost tracks
   left over get a second chance with a buffered IoU (boxes grown by ``lost_buffer``);
2. the confirmed tracks still unmatched that were seen last frame are matched to the low-score detections
   (a partly hidden object scores low: this is what keeps its identity through an occlusion);
3. tentative tracks are matched to the remaining high-score detections;
4. high-score detections left over start tentative tracks, which are confirmed after ``min_hits``
   consecutive matches; a tentative track that misses a frame is dropped; a confirmed track is removed
   after ``max_missed`` frames without a match.

On a frame the detector did not see (``--interval N``, motion gating), :meth:`ByteTracker.predict` moves the
tracks by the filter alone and reports them marked predicted: nothing is matched, so nothing is born, and a
track is neither counted as missed nor dropped for it. Frame counts stay in frames of the video: a lost track
keeps ageing on predicted frames (it is removed ``max_missed`` frames after the first detection that
missed it, whatever the interval), and a tentative track's run of hits counts the predicted frames between its matches.

Matching is a linear assignment (scipy's ``linear_sum_assignment``) on the cost ``1 - IoU``, optionally
weighted by the detection score as ByteTrack does. Association ignores the class (a detector that wavers
between two classes for one object must not split its track); a track's class is the one with the most
accumulated score over its matches.

Reference: Zhang et al., "ByteTrack: Multi-Object Tracking by Associating Every Detection Box", ECCV 2022.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import List, Sequence, Tuple

import numpy as np

from analytics import kalman

TENTATIVE, CONFIRMED = 0, 1


@dataclass
class Tracks:
    """The confirmed tracks matched in one frame (the tracker's output), track axis first.

    ids: (T,) int64, unique per stream, never reused. boxes: (T, 4) float32 ``(x1, y1, x2, y2)`` pixels
    (Kalman-corrected). scores: (T,) float32, the matched detection's score. labels: (T,) int64 class indices.
    removed: ids of confirmed tracks dropped in this frame (their objects are gone).
    predicted: True on a frame the detector did not see: the boxes are the filter's predictions and the
    scores those of each track's last match.
    """

    ids: np.ndarray
    boxes: np.ndarray
    scores: np.ndarray
    labels: np.ndarray
    removed: np.ndarray
    predicted: bool = False

    def __len__(self) -> int:
        return int(self.ids.shape[0])

    def to_list(self, class_names: Sequence[str]) -> List[dict]:
        """JSON-ready: ``[{"id", "label", "name", "score", "box": [x1, y1, x2, y2]}]``, each with
        ``"predicted": true`` on a frame the detector did not see."""
        marks = {"predicted": True} if self.predicted else {}
        return [{"id": int(i), "label": int(lab), "name": class_names[int(lab)], "score": round(float(s), 6),
                 "box": [round(float(v), 3) for v in b], **marks}
                for i, b, s, lab in zip(self.ids.tolist(), self.boxes, self.scores.tolist(), self.labels.tolist())]


def iou_matrix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(N, 4) and (M, 4) ``(x1, y1, x2, y2)`` boxes -> (N, M) intersection over union."""
    if a.shape[0] == 0 or b.shape[0] == 0:
        return np.zeros((a.shape[0], b.shape[0]))
    ix1 = np.maximum(a[:, None, 0], b[None, :, 0])
    iy1 = np.maximum(a[:, None, 1], b[None, :, 1])
    ix2 = np.minimum(a[:, None, 2], b[None, :, 2])
    iy2 = np.minimum(a[:, None, 3], b[None, :, 3])
    inter = np.clip(ix2 - ix1, 0, None) * np.clip(iy2 - iy1, 0, None)
    area_a = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
    area_b = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    return inter / np.maximum(area_a[:, None] + area_b[None, :] - inter, 1e-9)


def _grow(boxes: np.ndarray, fraction: float) -> np.ndarray:
    """(N, 4) boxes widened by ``fraction`` of their width and height on each side."""
    size = boxes[:, 2:] - boxes[:, :2]
    return np.concatenate([boxes[:, :2] - fraction * size, boxes[:, 2:] + fraction * size], axis=1)


def assign(cost: np.ndarray, allowed: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
    """Minimum-cost matching among the ``allowed`` pairs: (N, M) cost and bool mask -> (rows, cols) indices."""
    if not allowed.any():
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    from scipy.optimize import linear_sum_assignment

    # A pair outside the gate must never be chosen, not even to let another pair in: price it out.
    gated = np.where(allowed, cost, 1e6)
    rows, cols = linear_sum_assignment(gated)
    keep = allowed[rows, cols]
    return rows[keep].astype(np.int64), cols[keep].astype(np.int64)


class ByteTracker:
    """ByteTrack for one stream: :meth:`update` once per frame with that frame's detections.

    Keyword thresholds (defaults are ByteTrack's, except ``min_hits``):
        high_score: detections scoring at least this take part in the first association and can start tracks.
        low_score: detections between this and ``high_score`` are used only in the second association.
        new_track_score: a left-over detection needs at least this score to start a track.
        match_iou: minimum IoU of a first-association (and tentative-track) match.
        low_match_iou: minimum IoU of a second-association match (stricter: low scores are less reliable).
        min_hits: consecutive matches before a track is confirmed and reported (its birth).
        max_missed: frames a confirmed track survives unmatched before removal (occlusions shorter than this
            keep the id).
        lost_buffer: after the first association, lost tracks get a second chance at the high-score detections
            left, by the IoU of boxes grown by this fraction of their size on every side (Yang et al.'s buffered
            IoU, WACV 2023); 0 turns it off.
        fuse_score: rank first-association pairs by IoU times the detection score (ByteTrack's MOT17 setting);
            the gate stays ``match_iou`` on the plain IoU.
    """

    def __init__(self, *, high_score: float = 0.5, low_score: float = 0.1, new_track_score: float = 0.6,
                 match_iou: float = 0.2, low_match_iou: float = 0.5, min_hits: int = 3, max_missed: int = 30,
                 lost_buffer: float = 0.3, fuse_score: bool = True, num_classes: int = 0) -> None:
        if not 0.0 <= low_score <= high_score <= 1.0:
            raise ValueError(f"need 0 <= low_score ({low_score}) <= high_score ({high_score}) <= 1")
        if min_hits < 1 or max_missed < 0:
            raise ValueError(f"need min_hits >= 1 (got {min_hits}) and max_missed >= 0 (got {max_missed})")
        self.high_score, self.low_score, self.new_track_score = high_score, low_score, new_track_score
        self.match_iou, self.low_match_iou = match_iou, low_match_iou
        self.min_hits, self.max_missed, self.fuse_score = min_hits, max_missed, fuse_score
        self.lost_buffer = lost_buffer
        self._num_classes = max(int(num_classes), 1)
        self._next_id = 1
        self.frame_count = 0
        self._ids = np.zeros(0, np.int64)
        self._mean = np.zeros((0, 8))
        self._cov = np.zeros((0, 3, 4))
        self._state = np.zeros(0, np.int8)
        self._hits = np.zeros(0, np.int64)
        self._missed = np.zeros(0, np.int64)
        self._score = np.zeros(0, np.float32)
        self._class_votes = np.zeros((0, self._num_classes))

    def __len__(self) -> int:
        """Tracks alive (tentative, tracked and lost)."""
        return int(self._ids.shape[0])

    def update(self, boxes: np.ndarray, scores: np.ndarray, labels: np.ndarray) -> Tracks:
        """One frame: (N, 4) ``(x1, y1, x2, y2)`` pixel boxes, (N,) scores, (N,) class indices -> :class:`Tracks`."""
        self.frame_count += 1
        boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
        scores = np.asarray(scores, dtype=np.float32).reshape(-1)
        labels = np.asarray(labels, dtype=np.int64).reshape(-1)
        if labels.size and int(labels.max()) >= self._num_classes:
            grow = int(labels.max()) + 1 - self._num_classes
            self._class_votes = np.pad(self._class_votes, ((0, 0), (0, grow)))
            self._num_classes += grow

        self._mean, self._cov = kalman.predict(self._mean, self._cov)
        predicted = kalman.states_to_boxes(self._mean)

        high = np.nonzero(scores >= self.high_score)[0]
        low = np.nonzero((scores >= self.low_score) & (scores < self.high_score))[0]
        n = len(self)
        det_of_track = np.full(n, -1, np.int64)
        confirmed = np.nonzero(self._state == CONFIRMED)[0]
        tentative = np.nonzero(self._state == TENTATIVE)[0]

        # 1. confirmed tracks <-> high-score detections
        iou = iou_matrix(predicted[confirmed], boxes[high])
        similarity = iou * scores[high][None, :] if self.fuse_score else iou
        rows, cols = assign(1.0 - similarity, iou >= self.match_iou)
        det_of_track[confirmed[rows]] = high[cols]
        high_left = np.setdiff1d(high, high[cols], assume_unique=True)

        # 1b. lost tracks still unmatched <-> high-score detections left, by buffered IoU: both boxes grown
        # by ``lost_buffer`` of their size on every side, so a reappearing object whose prediction drifted
        # (its velocity was learnt from boxes shrinking as it went out of sight) is still found.
        lost = confirmed[(det_of_track[confirmed] < 0) & (self._missed[confirmed] > 0)]
        if self.lost_buffer > 0 and lost.size and high_left.size:
            iou = iou_matrix(_grow(predicted[lost], self.lost_buffer), _grow(boxes[high_left], self.lost_buffer))
            rows, cols = assign(1.0 - iou, iou >= self.match_iou)
            det_of_track[lost[rows]] = high_left[cols]
            high_left = np.setdiff1d(high_left, high_left[cols], assume_unique=True)

        # 2. confirmed tracks seen last frame and still unmatched <-> low-score detections
        waiting = confirmed[(det_of_track[confirmed] < 0) & (self._missed[confirmed] == 0)]
        iou = iou_matrix(predicted[waiting], boxes[low])
        rows, cols = assign(1.0 - iou, iou >= self.low_match_iou)
        det_of_track[waiting[rows]] = low[cols]

        # 3. tentative tracks <-> high-score detections left
        iou = iou_matrix(predicted[tentative], boxes[high_left])
        rows, cols = assign(1.0 - iou, iou >= self.match_iou)
        det_of_track[tentative[rows]] = high_left[cols]
        high_left = np.setdiff1d(high_left, high_left[cols], assume_unique=True)

        matched = np.nonzero(det_of_track >= 0)[0]
        dets = det_of_track[matched]
        self._mean[matched], self._cov[matched] = kalman.update(
            self._mean[matched], self._cov[matched], kalman.boxes_to_measurements(boxes[dets]))
        self._hits[matched] += 1
        self._missed[matched] = 0
        self._score[matched] = scores[dets]
        self._class_votes[matched, labels[dets]] += scores[dets]
        unmatched = det_of_track < 0
        self._missed[unmatched] += 1
        # An object going out of sight shrinks its boxes on the way: carried on, that size velocity would
        # collapse the predicted box before the object reappears. A lost track keeps its size.
        self._mean[unmatched, 6:] = 0.0
        # Confirmed only at a match: hits also count the predicted frames since, so a tentative track left
        # unmatched now must die as tentative, not be confirmed by the frames it was merely predicted.
        self._state[(self._state == TENTATIVE) & (self._hits >= self.min_hits) & ~unmatched] = CONFIRMED

        dead = (unmatched & (self._state == TENTATIVE)) | (self._missed > self.max_missed)
        removed = self._ids[dead & (self._state == CONFIRMED)]
        reported = np.nonzero((det_of_track >= 0) & (self._state == CONFIRMED))[0]
        out = Tracks(self._ids[reported].copy(), kalman.states_to_boxes(self._mean[reported]).astype(np.float32),
                     self._score[reported].copy(), np.argmax(self._class_votes[reported], axis=1).astype(np.int64),
                     removed)
        if dead.any():
            self._keep(~dead)

        births = high_left[scores[high_left] >= self.new_track_score]
        if births.size:
            self._start(boxes[births], scores[births], labels[births])
            if self.min_hits <= 1:  # born confirmed: reported in the frame that created them
                new = np.arange(len(self) - births.size, len(self))
                out = Tracks(np.concatenate([out.ids, self._ids[new]]),
                             np.concatenate([out.boxes, boxes[births].astype(np.float32)]),
                             np.concatenate([out.scores, scores[births]]),
                             np.concatenate([out.labels, labels[births]]), removed)
        return out

    def predict(self) -> Tracks:
        """One frame the detector did not see: every track moves by the filter, nothing is matched or born.

        Reported (``predicted=True``): the confirmed tracks matched at the last detection, at their predicted
        boxes. Tracks already lost age by one frame and are removed past ``max_missed`` as in :meth:`update`;
        a tentative track is not dropped (it was not looked for) and its run of hits goes on, so it is
        confirmed at its next match as many frames after its birth as with the detector on every frame.
        """
        self.frame_count += 1
        self._mean, self._cov = kalman.predict(self._mean, self._cov)
        lost = self._missed > 0
        self._missed[lost] += 1
        self._hits[(self._state == TENTATIVE) & ~lost] += 1
        dead = self._missed > self.max_missed
        removed = self._ids[dead & (self._state == CONFIRMED)]
        shown = np.nonzero((self._state == CONFIRMED) & ~lost)[0]
        out = Tracks(self._ids[shown].copy(), kalman.states_to_boxes(self._mean[shown]).astype(np.float32),
                     self._score[shown].copy(), np.argmax(self._class_votes[shown], axis=1).astype(np.int64),
                     removed, predicted=True)
        if dead.any():
            self._keep(~dead)
        return out

    def _keep(self, keep: np.ndarray) -> None:
        self._ids, self._mean, self._cov = self._ids[keep], self._mean[keep], self._cov[keep]
        self._state, self._hits, self._missed = self._state[keep], self._hits[keep], self._missed[keep]
        self._score, self._class_votes = self._score[keep], self._class_votes[keep]

    def _start(self, boxes: np.ndarray, scores: np.ndarray, labels: np.ndarray) -> None:
        k = boxes.shape[0]
        mean, cov = kalman.initiate(kalman.boxes_to_measurements(boxes))
        votes = np.zeros((k, self._num_classes))
        votes[np.arange(k), labels] = scores
        self._ids = np.concatenate([self._ids, np.arange(self._next_id, self._next_id + k, dtype=np.int64)])
        self._next_id += k
        self._mean = np.concatenate([self._mean, mean])
        self._cov = np.concatenate([self._cov, cov])
        state = CONFIRMED if self.min_hits <= 1 else TENTATIVE
        self._state = np.concatenate([self._state, np.full(k, state, np.int8)])
        self._hits = np.concatenate([self._hits, np.ones(k, np.int64)])
        self._missed = np.concatenate([self._missed, np.zeros(k, np.int64)])
        self._score = np.concatenate([self._score, scores.astype(np.float32)])
        self._class_votes = np.concatenate([self._class_votes, votes])
