"""benchmarks/cameras.py's arithmetic (benchmarks/camera_bound.py): the bound from per-frame costs, a run's
figures from its records, and the search for the largest N held. Pure functions: no timing here."""

from __future__ import annotations

import pytest

from benchmarks.camera_bound import (
    FrameCosts,
    StreamResult,
    bound_cameras,
    camera_load,
    detected_share,
    estimate_held,
    held,
    largest_held,
    stream_result,
)
from benchmarks.camera_scene import FPS, KEY_SHIFT, PHASES, moving_fraction, object_x

COSTS = FrameCosts(decode=0.006, preprocess=0.0008, postprocess=0.0003, inference=0.009, track=0.0003,
                   predict=0.00005, gate=0.0002)


def test_a_camera_costs_its_frames_and_the_detector_only_on_the_frames_it_sees():
    every = COSTS.decode + COSTS.gate + 0.0008 + 0.0003 + 0.009 + 0.0003
    assert COSTS.per_frame(1.0) == pytest.approx(every)
    half = COSTS.decode + COSTS.gate + 0.5 * (0.0008 + 0.0003 + 0.009 + 0.0003) + 0.5 * 0.00005
    assert COSTS.per_frame(detected_share(2)) == pytest.approx(half)
    load = camera_load(COSTS, 25, detected_share(4))
    assert load == pytest.approx(25 * COSTS.per_frame(0.25))
    # 2 cores over the cores one camera keeps busy; fewer detections, more cameras, never past decoding's
    assert bound_cameras(2, load) == pytest.approx(2 / load)
    bounds = [bound_cameras(2, camera_load(COSTS, 25, detected_share(k))) for k in (1, 2, 4)]
    assert bounds == sorted(bounds) and bounds[-1] < 2 / (25 * (COSTS.decode + COSTS.gate))


def test_a_stream_is_judged_on_its_window_against_the_frames_its_camera_sent():
    timestamps = [i / 25 for i in range(250)]  # 10 s at 25 FPS
    kept = [t for i, t in enumerate(timestamps) if i % 10]  # one frame in 10 lost
    latencies = [50.0] * len(kept)
    latencies[-1] = 900.0  # outside the window: not judged
    result = stream_result(kept, latencies, [True] * len(kept), 25, (2.0, 9.0))
    assert result.handled == pytest.approx(0.9, abs=0.01) and result.p95_ms == pytest.approx(50.0)
    assert not held([result]) and held([StreamResult(0.96, 150.0, 168, 168)])
    assert not held([StreamResult(0.99, 250.0, 170, 170), StreamResult(0.99, 100.0, 170, 170)])  # every stream
    assert not held([StreamResult(0.0, None, 0, 0)]) and not held([])


def test_the_search_finds_the_largest_n_held_from_either_side():
    def box(capacity: int, calls: list):
        def holds(n: int):
            calls.append(n)
            handled = min(1.0, capacity / n)
            return handled >= 0.95, estimate_held(n, [StreamResult(handled, 50.0, 1, 1)])
        return holds

    for capacity, start in ((5, 3), (5, 9), (5, 5), (1, 4), (0, 3), (12, 20)):
        calls: list = []
        n, tried = largest_held(start, box(capacity, calls), limit=16)
        assert n == min(capacity, 16), (capacity, start, tried)
        assert len(calls) == len(set(calls)) <= 4, tried  # no N run twice; the estimate jumps down
        if 0 < n < 16:
            assert (n, True) in tried and (n + 1, False) in tried
    assert largest_held(14, box(30, []), limit=16)[0] == 16  # the ceiling


def test_the_scene_moves_a_fifth_of_the_time():
    assert moving_fraction(30 * FPS) == pytest.approx(0.2, abs=0.01)


def test_independent_cameras_move_one_at_a_time():
    """The scene's variants (camera k plays k mod PHASES): past their grey starts, exactly one of them moves
    in any frame, so N cameras send the motion gate's peak of one in five, not all at once."""
    for t in range(KEY_SHIFT * PHASES + 1, 30 * FPS):
        assert sum(object_x(t, FPS, p) != object_x(t - 1, FPS, p) for p in range(PHASES)) == 1, t

