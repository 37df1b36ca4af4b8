"""ByteTracker on scripted detections: identities, birth, removal, occlusion, low-score continuation, and the
batched Kalman filter against the textbook 8 x 8 matrix filter."""

from __future__ import annotations

import numpy as np
import pytest

from analytics import kalman
from analytics.tracker import ByteTracker, iou_matrix


def _box(cx: float, cy: float, w: float = 40, h: float = 40) -> list:
    return [cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2]


def _frame(boxes, scores=None, labels=None):
    boxes = np.array(boxes, dtype=np.float32).reshape(-1, 4)
    n = boxes.shape[0]
    scores = np.full(n, 0.9, np.float32) if scores is None else np.array(scores, np.float32)
    labels = np.ones(n, np.int64) if labels is None else np.array(labels, np.int64)
    return boxes, scores, labels


def test_each_object_keeps_one_id_and_tracks_are_born_after_min_hits():
    tracker = ByteTracker(min_hits=3, num_classes=3)
    history = []
    for t in range(40):
        out = tracker.update(*_frame([_box(50 + 5 * t, 100), _box(400 - 4 * t, 300)], labels=[1, 2]))
        history.append(out)
    assert [len(o) for o in history[:2]] == [0, 0]  # tentative for two frames
    assert len(history[2]) == 2
    ids = {tuple(o.ids.tolist()) for o in history[2:]}
    assert ids == {(1, 2)}
    assert history[-1].labels.tolist() == [1, 2]
    # the Kalman-corrected box follows the detection
    assert np.abs(history[-1].boxes[0] - np.array(_box(50 + 5 * 39, 100))).max() < 1.0


def test_an_occlusion_shorter_than_max_missed_keeps_the_id_and_a_longer_one_removes_it():
    tracker = ByteTracker(min_hits=1, max_missed=5)
    seen = {}
    for t in range(30):
        hidden = 10 <= t < 14  # 4 frames without a detection
        out = tracker.update(*_frame([] if hidden else [_box(50 + 6 * t, 100)]))
        seen[t] = out.ids.tolist()
    assert seen[9] == seen[14] == seen[29] == [1]
    assert all(seen[t] == [] for t in range(10, 14))
    removed_at = None
    for t in range(30, 40):
        out = tracker.update(*_frame([]))
        if out.removed.size:
            removed_at = t
            assert out.removed.tolist() == [1]
    assert removed_at == 30 + 5  # the sixth frame in a row without a match
    out = tracker.update(*_frame([_box(50 + 6 * 40, 100)]))
    assert out.ids.tolist() == [2]  # ids are never reused


def test_low_score_detections_carry_a_track_through_a_partial_occlusion():
    def run(low_score: float):
        tracker = ByteTracker(min_hits=1, max_missed=1, low_score=low_score)
        ids = []
        for t in range(20):
            score = 0.3 if 8 <= t < 14 else 0.9  # a partly hidden object scores low
            ids.append(tracker.update(*_frame([_box(50 + 5 * t, 100)], [score])).ids.tolist())
        return ids

    with_low = run(0.1)
    without_low = run(0.5)  # low detections ignored: the track dies after max_missed and a new one starts
    assert all(i == [1] for i in with_low)
    assert without_low[19] != [1] and without_low[7] == [1]


def test_two_objects_crossing_keep_their_ids():
    tracker = ByteTracker(min_hits=1)
    last = None
    for t in range(60):
        a = _box(40 + 6 * t, 100 + 2 * t)
        b = _box(400 - 6 * t, 100 + 2 * t)
        out = tracker.update(*_frame([a, b], labels=[1, 2]))
        if len(out) == 2:
            last = dict(zip(out.labels.tolist(), out.ids.tolist()))
            assert last == {1: 1, 2: 2}, t
    assert last == {1: 1, 2: 2}


def test_a_track_takes_the_class_it_was_detected_as_most():
    tracker = ByteTracker(min_hits=1, num_classes=4)
    for t in range(10):
        label = 3 if t in (4, 7) else 2  # the detector wavers twice
        out = tracker.update(*_frame([_box(100 + 3 * t, 100)], labels=[label]))
        assert out.ids.tolist() == [1]
    assert out.labels.tolist() == [2]



def _run_at_interval(tracker: ByteTracker, frames, interval: int):
    """``update`` on frames 0, interval, ...; ``predict`` between (the camera's --interval)."""
    return [tracker.update(*_frame(boxes)) if t % interval == 0 else tracker.predict()
            for t, boxes in enumerate(frames)]


def test_predicted_frames_carry_the_tracks_along_their_motion_marked_predicted():
    frames = [[_box(50 + 6 * t, 100 + 2 * t)] for t in range(30)]
    out = _run_at_interval(ByteTracker(min_hits=2), frames, 3)
    assert [o.predicted for o in out[:6]] == [False, True, True, False, True, True]
    assert all(o.ids.tolist() == [1] for o in out[3:])  # one id throughout, reported on predicted frames too
    for t in range(20, 30):  # the velocity is learnt: the prediction follows the object between detections
        assert np.abs(out[t].boxes[0] - np.array(_box(50 + 6 * t, 100 + 2 * t))).max() < 2.0, t
    assert out[25].to_list(["bg", "thing"])[0]["predicted"] is True
    assert "predicted" not in out[24].to_list(["bg", "thing"])[0]  # a detected frame's records are unchanged
    assert not any(o.removed.size for o in out)


def test_a_tentative_track_survives_predicted_frames_and_is_born_when_it_would_be_at_interval_1():
    frames = [[_box(50 + 6 * t, 100)] for t in range(8)]
    every = _run_at_interval(ByteTracker(min_hits=3), frames, 1)
    second = _run_at_interval(ByteTracker(min_hits=3), frames, 2)
    first_reported = [next(t for t, o in enumerate(run) if len(o)) for run in (every, second)]
    assert first_reported == [2, 2]  # born after 3 frames of being seen in both (t = 0, 1, 2)
    # a detection at t = 0 only: its track never gets a second match, though by t = 4 it is min_hits frames old
    fleeting = ByteTracker(min_hits=3)
    out = _run_at_interval(fleeting, [[_box(50, 100)], [], [], [], [], []], 4)
    assert not any(len(o) for o in out) and len(fleeting) == 0  # dropped as tentative, never confirmed


def test_a_lost_track_ages_on_predicted_frames_and_is_removed_after_max_missed_frames():
    def removed_at(interval: int) -> int:
        tracker = ByteTracker(min_hits=1, max_missed=5)
        frames = [[_box(50 + 4 * t, 100)] if t <= 12 else [] for t in range(40)]
        out = _run_at_interval(tracker, frames, interval)
        gone = [t for t, o in enumerate(out) if o.removed.size]
        assert len(gone) == 1 and out[gone[0]].removed.tolist() == [1] and len(tracker) == 0
        return gone[0]

    assert removed_at(1) == 12 + 6  # the sixth frame in a row without a match
    # at interval N the first detection that misses the object comes up to N - 1 frames later; from then it
    # ages frame by frame, predicted frames included (not N times slower)
    assert 12 + 6 <= removed_at(2) <= 12 + 6 + 1
    assert 12 + 6 <= removed_at(4) <= 12 + 6 + 3


def test_thresholds_are_checked():
    with pytest.raises(ValueError, match="low_score"):
        ByteTracker(low_score=0.6, high_score=0.5)
    with pytest.raises(ValueError, match="min_hits"):
        ByteTracker(min_hits=0)


def test_iou_matrix():
    a = np.array([[0, 0, 10, 10], [0, 0, 5, 5]], float)
    b = np.array([[5, 0, 15, 10]], float)
    np.testing.assert_allclose(iou_matrix(a, b), [[50 / 150], [0.0]])
    assert iou_matrix(a, np.zeros((0, 4))).shape == (2, 0)


def _reference_kalman(measurements: np.ndarray, skip: set):
    """The textbook filter with full 8 x 8 matrices, for one track."""
    F = np.eye(8)
    F[:4, 4:] = np.eye(4)
    H = np.eye(4, 8)
    z0 = measurements[0]
    mean = np.concatenate([z0, np.zeros(4)])
    s = np.array([z0[2], z0[3], z0[2], z0[3]])
    P = np.diag(np.concatenate([(2 * kalman.STD_POSITION * s) ** 2, (10 * kalman.STD_VELOCITY * s) ** 2]))
    out = []
    for k, z in enumerate(measurements[1:], 1):
        s = np.abs(np.array([mean[2], mean[3], mean[2], mean[3]]))
        Q = np.diag(np.concatenate([(kalman.STD_POSITION * s) ** 2, (kalman.STD_VELOCITY * s) ** 2]))
        mean, P = F @ mean, F @ P @ F.T + Q
        if k not in skip:
            s = np.abs(np.array([mean[2], mean[3], mean[2], mean[3]]))
            R = np.diag((kalman.STD_POSITION * s) ** 2)
            S = H @ P @ H.T + R
            K = P @ H.T @ np.linalg.inv(S)
            mean, P = mean + K @ (z - H @ mean), P - K @ S @ K.T
        out.append((mean.copy(), P.copy()))
    return out


def test_the_batched_block_kalman_filter_equals_the_full_matrix_filter():
    rng = np.random.default_rng(0)
    steps = 25
    truth = np.array([[100 + 4 * t, 80 - 2 * t, 50 + 0.2 * t, 30] for t in range(steps)], float)
    measurements = truth + rng.normal(0, 1.5, truth.shape)
    skip = {7, 8, 15}
    reference = _reference_kalman(measurements, skip)
    mean, cov = kalman.initiate(measurements[:1])
    for k in range(1, steps):
        mean, cov = kalman.predict(mean, cov)
        if k not in skip:
            mean, cov = kalman.update(mean, cov, measurements[k:k + 1])
        ref_mean, ref_P = reference[k - 1]
        np.testing.assert_allclose(mean[0], ref_mean, rtol=1e-9, atol=1e-9)
        for i in range(4):  # the 2 x 2 block of coordinate i and its velocity
            block = [ref_P[i, i], ref_P[i, i + 4], ref_P[i + 4, i + 4]]
            np.testing.assert_allclose(cov[0, :, i], block, rtol=1e-9, atol=1e-9)
        off_block = ref_P.copy()
        for i in range(4):
            off_block[i, i] = off_block[i, i + 4] = off_block[i + 4, i] = off_block[i + 4, i + 4] = 0
        assert np.abs(off_block).max() < 1e-9  # the block structure the batched filter relies on
    assert abs(mean[0, 4] - 4) < 0.5 and abs(mean[0, 5] + 2) < 0.5  # velocity learnt


def test_same_tracks_and_counts_under_the_device_python(tmp_path):
    """Debian's /usr/bin/python3 (numpy 1.x, python3-scipy) stands in for JetPack: same ids, boxes and counts."""
    import json
    from pathlib import Path

    from tests.system_python import run_system_python
    from tests.test_zones import CLASSES, LINE, SIZE, crossing_scene

    root = Path(__file__).resolve().parents[1]
    frames, _ = crossing_scene()
    scene = tmp_path / "scene.json"
    scene.write_text(json.dumps([[d.boxes.tolist(), d.scores.tolist(), d.labels.tolist()] for d in frames]))
    code = f"""
import sys, json
sys.path.insert(0, {str(root)!r})
import numpy as np
from analytics.tracker import ByteTracker
from analytics.zone_file import parse_zones
from analytics.zones import StreamCounter
frames = json.load(open({str(scene)!r}))
tracker = ByteTracker(min_hits=2, num_classes=6)
counter = StreamCounter("cam0", parse_zones({LINE!r}, ["cam0"], {CLASSES!r})["cam0"], {CLASSES!r})
events = []
for t, (boxes, scores, labels) in enumerate(frames):
    last = tracker.update(np.array(boxes), np.array(scores), np.array(labels))
    events += counter.update(t, t / 10, last, {SIZE!r})
print(json.dumps({{"numpy": np.__version__, "ids": last.ids.tolist(), "boxes": last.boxes.tolist(),
                  "counts": counter.counts(), "events": [e.frame for e in events]}}))
"""
    result = run_system_python(code, "python3-numpy python3-scipy")
    assert result.returncode == 0, result.stderr[-2000:]
    device = json.loads(result.stdout.strip().splitlines()[-1])
    from analytics.zone_file import parse_zones
    from analytics.zones import StreamCounter

    tracker = ByteTracker(min_hits=2, num_classes=6)
    counter = StreamCounter("cam0", parse_zones(LINE, ["cam0"], CLASSES)["cam0"], CLASSES)
    events = []
    for t, d in enumerate(frames):
        last = tracker.update(d.boxes, d.scores, d.labels)
        events += counter.update(t, t / 10, last, SIZE)
    assert device["numpy"].startswith("1.")
    assert device["ids"] == last.ids.tolist()
    np.testing.assert_allclose(device["boxes"], last.boxes.tolist(), atol=1e-3)
    assert device["counts"] == counter.counts() and device["counts"]["lines"]["gate"]["in"] == 3
    assert device["events"] == [e.frame for e in events] and len(events) == 6
