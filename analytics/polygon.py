"""The checks a zone's polygon must pass: its signed area, and whether two of its edges cross or touch.

The crossing check compares every pair of edges at once with numpy: k points give k x k arrays, which the
zone file's limit on points (analytics/zone_file.py) keeps small; a pure-Python loop over the pairs took
14 s for 3000 points (issue #24).
"""

from __future__ import annotations

from typing import Optional, Tuple

import numpy as np


def signed_area(points: np.ndarray) -> float:
    """(K, 2) polygon -> its area, positive when the points run counter-clockwise (y up)."""
    x, y = points[:, 0], points[:, 1]
    return 0.5 * float(np.dot(x, np.roll(y, -1)) - np.dot(y, np.roll(x, -1)))


def first_crossing(points: np.ndarray) -> Optional[Tuple[int, int]]:
    """The first pair (in row order) of non-adjacent edges, numbered from 1, that cross or touch, else None.
    Edge i runs from point i to point i + 1 (the last back to the first)."""
    k = points.shape[0]
    start, end = points, np.roll(points, -1, axis=0)
    # (row edge p, column edge q): on which side of the other each end lies (0: on its line)
    p1, p2 = start[:, None, :], end[:, None, :]
    q1, q2 = start[None, :, :], end[None, :, :]
    d1, d2 = _orient(q1, q2, p1), _orient(q1, q2, p2)
    d3, d4 = _orient(p1, p2, q1), _orient(p1, p2, q2)
    # (signs, not products: the product of two tiny values rounds to 0)
    crosses = (np.sign(d1) * np.sign(d2) < 0) & (np.sign(d3) * np.sign(d4) < 0)
    touches = ((d1 == 0) & _within(q1, q2, p1)) | ((d2 == 0) & _within(q1, q2, p2)) \
        | ((d3 == 0) & _within(p1, p2, q1)) | ((d4 == 0) & _within(p1, p2, q2))
    rows, cols = np.indices((k, k))
    apart = (cols > rows + 1) & ~((rows == 0) & (cols == k - 1))  # each pair once; neighbours share a corner
    found = np.argwhere((crosses | touches) & apart)
    return None if found.size == 0 else (int(found[0, 0]) + 1, int(found[0, 1]) + 1)


def _orient(a: np.ndarray, b: np.ndarray, c: np.ndarray) -> np.ndarray:
    """The z of (b - a) x (c - a): > 0 when c is left of a -> b, 0 on its line."""
    return (b[..., 0] - a[..., 0]) * (c[..., 1] - a[..., 1]) - (b[..., 1] - a[..., 1]) * (c[..., 0] - a[..., 0])


def _within(a: np.ndarray, b: np.ndarray, c: np.ndarray) -> np.ndarray:
    """Whether c lies in the box spanned by a and b (on the segment, when it is on its line)."""
    low, high = np.minimum(a, b), np.maximum(a, b)
    return ((low <= c) & (c <= high)).all(axis=-1)
