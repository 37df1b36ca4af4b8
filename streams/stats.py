"""Per-stream figures: frames, frame rate, latency percentiles, stale frames dropped, reopens. A figure with
nothing to measure (a percentile of no frames) is None, which JSON writes as null: never NaN, which is not
JSON."""

from __future__ import annotations

import collections
import threading
import time
from typing import Any, Deque, Dict, Optional

import numpy as np

LATENCY_WINDOW = 100_000  # latencies kept for the percentiles (a long live run keeps its latest)


def percentile(values: "Deque[float] | list", q: float) -> Optional[float]:
    """The ``q``-th percentile rounded to 3 decimals (milliseconds to the microsecond); None for no values."""
    return round(float(np.percentile(np.asarray(values), q)), 3) if len(values) else None


class StreamStats:
    """Counts for one stream, updated by its output, read by anyone."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.frames = 0
        self.latencies_ms: Deque[float] = collections.deque(maxlen=LATENCY_WINDOW)
        self.first: Optional[float] = None
        self.last: Optional[float] = None
        self.smoothed_fps = 0.0  # for the overlay: an exponential average of the instantaneous rate
        self._lock = threading.Lock()

    def add(self, latency_s: float) -> None:
        now = time.monotonic()
        with self._lock:
            if self.last is not None:
                rate = 1.0 / max(now - self.last, 1e-6)
                self.smoothed_fps = 0.9 * self.smoothed_fps + 0.1 * rate if self.smoothed_fps else rate
            self.first = self.first if self.first is not None else now
            self.last = now
            self.frames += 1
            self.latencies_ms.append(1000.0 * latency_s)

    def fps(self, elapsed_s: float) -> float:
        return self.frames / elapsed_s if elapsed_s > 0 else 0.0

    def summary(self, elapsed_s: float, dropped: int, reopens: int) -> Dict[str, Any]:
        with self._lock:
            latencies = list(self.latencies_ms)
        return {"frames": self.frames, "mean_fps": round(self.fps(elapsed_s), 3),
                "latency_p50_ms": percentile(latencies, 50), "latency_p95_ms": percentile(latencies, 95),
                "dropped_stale_frames": dropped, "reopens": reopens}
