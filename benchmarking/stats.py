"""Latency statistics: percentiles, means and rates from raw timings (seconds in, milliseconds out)."""

from __future__ import annotations

from typing import Dict, Sequence

import numpy as np

PERCENTILES = (50, 90, 99)


def summarize(seconds: Sequence[float]) -> Dict[str, float]:
    """p50/p90/p99 (linear interpolation between order statistics, numpy's default), mean, min, max and
    the count, in milliseconds."""
    ms = np.asarray(seconds, dtype=np.float64) * 1000.0
    if ms.size == 0:
        raise ValueError("no timings to summarize")
    out = {f"p{p}": float(np.percentile(ms, p)) for p in PERCENTILES}
    out.update(mean=float(ms.mean()), min=float(ms.min()), max=float(ms.max()), n=float(ms.size))
    return out


def fps(mean_ms: float, batch: int = 1) -> float:
    """Frames per second from the mean latency of one call processing ``batch`` frames."""
    return 1000.0 * batch / mean_ms if mean_ms > 0 else float("inf")


def iterations_for(first_ms: float, min_iterations: int = 50, min_seconds: float = 3.0,
                   max_iterations: int = 2000) -> int:
    """How many timed calls make a stable run: at least ``min_iterations`` and ``min_seconds``."""
    if first_ms <= 0:
        return max_iterations
    return int(min(max_iterations, max(min_iterations, np.ceil(1000.0 * min_seconds / first_ms))))
