"""A constant-velocity Kalman filter over many boxes at once (ByteTrack's motion model, batched).

State per track: ``(cx, cy, w, h, vcx, vcy, vw, vh)`` in pixels and pixels per frame; measurement: the box
centre and size ``(cx, cy, w, h)``. Process and measurement noise scale with the box size, as in ByteTrack
(a large box moves more pixels per frame than a small one).

The transition couples each coordinate only with its own velocity, and every noise term is diagonal, so
the 8 x 8 covariance stays block-diagonal: four independent 2 x 2 blocks ``[[pp, pv], [pv, vv]]``, one per
coordinate. They are stored as ``cov`` of shape (N, 3, 4) (rows pp, pv, vv; columns cx, cy, w, h) and the
filter is a few element-wise numpy operations over all tracks: the same numbers as the full matrix filter,
without batched 8 x 8 products or inverses (which cost more than the tracker's whole budget at 100 objects).
"""

from __future__ import annotations

from typing import Tuple

import numpy as np

# Noise as fractions of the box size (ByteTrack's values for its x, y, a, h model, used for x, y, w, h).
STD_POSITION = 1.0 / 20
STD_VELOCITY = 1.0 / 160


def boxes_to_measurements(boxes: np.ndarray) -> np.ndarray:
    """(N, 4) ``(x1, y1, x2, y2)`` -> (N, 4) ``(cx, cy, w, h)``."""
    boxes = np.asarray(boxes, dtype=np.float64)
    out = np.empty_like(boxes)
    out[:, 0] = (boxes[:, 0] + boxes[:, 2]) * 0.5
    out[:, 1] = (boxes[:, 1] + boxes[:, 3]) * 0.5
    out[:, 2] = boxes[:, 2] - boxes[:, 0]
    out[:, 3] = boxes[:, 3] - boxes[:, 1]
    return out


def states_to_boxes(mean: np.ndarray) -> np.ndarray:
    """(N, 8) states -> (N, 4) ``(x1, y1, x2, y2)``."""
    half_w = np.maximum(mean[:, 2], 1e-3) * 0.5
    half_h = np.maximum(mean[:, 3], 1e-3) * 0.5
    return np.stack([mean[:, 0] - half_w, mean[:, 1] - half_h, mean[:, 0] + half_w, mean[:, 1] + half_h], axis=1)


def _size_scale(mean: np.ndarray) -> np.ndarray:
    """(N, 4) per-coordinate scale: w, h, w, h."""
    w, h = np.abs(mean[:, 2]), np.abs(mean[:, 3])
    return np.stack([w, h, w, h], axis=1)


def initiate(measurements: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
    """New tracks at rest: (N, 4) measurements -> mean (N, 8), covariance blocks (N, 3, 4)."""
    n = measurements.shape[0]
    mean = np.zeros((n, 8))
    mean[:, :4] = measurements
    scale = _size_scale(mean)
    cov = np.zeros((n, 3, 4))
    cov[:, 0] = (2 * STD_POSITION * scale) ** 2
    cov[:, 2] = (10 * STD_VELOCITY * scale) ** 2
    return mean, cov


def predict(mean: np.ndarray, cov: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
    """One frame ahead for every track: mean (N, 8), cov (N, 3, 4) -> the same shapes."""
    if mean.shape[0] == 0:
        return mean, cov
    scale_sq = _size_scale(mean) ** 2
    new_mean = mean.copy()
    new_mean[:, :4] += mean[:, 4:]
    pp, pv, vv = cov[:, 0], cov[:, 1], cov[:, 2]
    new_cov = np.empty_like(cov)
    new_cov[:, 0] = pp + 2 * pv + vv + STD_POSITION ** 2 * scale_sq
    new_cov[:, 1] = pv + vv
    new_cov[:, 2] = vv + STD_VELOCITY ** 2 * scale_sq
    return new_mean, new_cov


def update(mean: np.ndarray, cov: np.ndarray, measurements: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
    """Correct tracks with their matched measurements: (K, 8), (K, 3, 4), (K, 4) -> (K, 8), (K, 3, 4)."""
    if mean.shape[0] == 0:
        return mean, cov
    pp, pv, vv = cov[:, 0], cov[:, 1], cov[:, 2]
    innovation = pp + (STD_POSITION ** 2) * _size_scale(mean) ** 2
    gain_p, gain_v = pp / innovation, pv / innovation
    residual = measurements - mean[:, :4]
    new_mean = mean.copy()
    new_mean[:, :4] += gain_p * residual
    new_mean[:, 4:] += gain_v * residual
    new_cov = np.empty_like(cov)
    new_cov[:, 0] = pp - gain_p * pp
    new_cov[:, 1] = pv - gain_p * pv
    new_cov[:, 2] = vv - gain_v * pv
    return new_mean, new_cov
