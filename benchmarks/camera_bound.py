"""The arithmetic of benchmarks/cameras.py, pure functions: what one camera costs the box per second, the
box's bound on cameras from that, whether a run held its cameras, and the search for the largest N held.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, List, Optional, Sequence, Tuple

import numpy as np

MIN_HANDLED = 0.95  # of the frames each camera sent
MAX_P95_MS = 200.0  # capture to result


@dataclass(frozen=True)
class FrameCosts:
    """CPU seconds (summed over cores) one frame costs, by step. Every frame: ``decode`` (decoding and scaling
    to the model's size in GStreamer), ``gate`` (the motion test, 0 without ``--motion``), ``predict`` (the
    tracker's prediction, on a frame the detector skips). A detected frame: ``preprocess``,
    ``postprocess``, ``track`` (the tracker's update) and ``inference`` (the CPU one network call takes)."""

    decode: float
    preprocess: float
    postprocess: float
    inference: float
    track: float
    predict: float
    gate: float = 0.0

    def per_frame(self, detected: float) -> float:
        """Mean CPU seconds per frame when a share ``detected`` (0-1) of the frames goes to the detector."""
        per_detection = self.preprocess + self.postprocess + self.inference + self.track
        return self.decode + self.gate + detected * per_detection + (1.0 - detected) * self.predict


def camera_load(costs: FrameCosts, fps: float, detected: float) -> float:
    """CPU seconds one camera of ``fps`` frames/s costs per second (cores it keeps busy)."""
    return fps * costs.per_frame(detected)


def bound_cameras(cores: int, load: float) -> float:
    """Cameras the box holds at most: its ``cores`` over what one camera costs per second."""
    return cores / load if load > 0 else math.inf


def detected_share(interval: int) -> float:
    """The share of frames the detector sees at ``--interval`` (one in N)."""
    return 1.0 / interval


@dataclass(frozen=True)
class StreamResult:
    """One stream's figures over a run's measured window: ``handled`` the share of the frames its camera sent
    in the window that reached the stream's output (detected or tracked), ``p95_ms`` its latency p95."""

    handled: float
    p95_ms: Optional[float]
    frames: int
    detected: int


def stream_result(timestamps: Sequence[float], latencies_ms: Sequence[float], detected: Sequence[bool],
                  fps: float, window: Tuple[float, float]) -> StreamResult:
    """A stream's :class:`StreamResult` from its output's records (frame timestamps in s since the stream
    started, latencies, whether each was detected): the records inside ``window`` (start, end s) against
    the ``fps`` x its length frames the camera sent meanwhile."""
    start, end = window
    inside = [i for i, t in enumerate(timestamps) if start <= t < end]
    sent = fps * (end - start)
    p95 = float(np.percentile([latencies_ms[i] for i in inside], 95)) if inside else None
    return StreamResult(len(inside) / sent if sent > 0 else 0.0, p95, len(inside), sum(detected[i] for i in inside))


def held(streams: Sequence[StreamResult], min_handled: float = MIN_HANDLED, max_p95_ms: float = MAX_P95_MS) -> bool:
    """Every stream handled ``min_handled`` of its frames with a p95 latency of at most ``max_p95_ms``."""
    return bool(streams) and all(s.handled >= min_handled and s.p95_ms is not None and s.p95_ms <= max_p95_ms
                                 for s in streams)


def estimate_held(cameras: int, streams: Sequence[StreamResult], min_handled: float = MIN_HANDLED) -> int:
    """The cameras a run of ``cameras`` that was not held suggests trying next: as many as its worst stream's
    share of frames handled says the box kept up with (``cameras`` x handled / ``min_handled``), at most one
    fewer than it ran (a run that failed on latency alone steps down by one)."""
    worst = min((s.handled for s in streams), default=0.0)
    return max(0, min(cameras - 1, int(cameras * worst / min_handled)))


def largest_held(start: int, holds: Callable[[int], Tuple[bool, int]],
                 limit: int) -> Tuple[int, List[Tuple[int, bool]]]:
    """The largest N in 1..``limit`` for which ``holds(N)`` is held, searched from ``start``; ``holds(N)`` gives
    (held, the N to try next when not held, below N: :func:`estimate_held`). Up by one while held; down to the
    estimate when not, then up by one again, until N is held and N + 1 was not (or N is ``limit``); 0 when
    one camera is not held. Also every (N, held) tried, in order."""
    n = min(max(start, 1), limit)
    best, failed = 0, limit + 1  # the largest N held, the smallest N not held, so far
    tried: List[Tuple[int, bool]] = []
    while True:
        ok, estimate = holds(n)
        tried.append((n, ok))
        if ok:
            best = max(best, n)
        else:
            failed = min(failed, n)
        if best + 1 >= failed or best >= limit or failed <= 1:
            return best, tried
        n = n + 1 if ok else max(best + 1, min(estimate, n - 1), 1)
