"""Pillow's bilinear resize of an 8-bit image, in numpy, for the codebases that resize with PIL
(torchvision's ``transforms.Resize`` on a PIL image: NVIDIA's SSD300).

Pillow's filter is not OpenCV's: when shrinking, its triangle filter widens to the scale factor (an
antialiasing resize, every source pixel weighs in), where ``cv2.INTER_LINEAR`` reads two pixels; results
differ by up to ~130 grey levels on edges. Pillow computes it as two 1-D passes, each rounded to uint8, with
weights in fixed point (22 fractional bits); this module repeats that arithmetic, so the pixels are Pillow's
exactly, without Pillow on the device.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Tuple

import numpy as np

PRECISION_BITS = 32 - 8 - 2  # Pillow's fixed-point weights for 8-bit images (libImaging/Resample.c)


@lru_cache(maxsize=16)
def _taps(in_size: int, out_size: int) -> Tuple[np.ndarray, np.ndarray]:
    """(out_size, K) source indices and int32 fixed-point weights of each output pixel, Pillow's
    ``precompute_coeffs`` + ``normalize_coeffs_8bpc`` for the bilinear filter (support 1)."""
    scale = float(in_size) / out_size
    filterscale = max(scale, 1.0)
    support = 1.0 * filterscale
    ksize = int(np.ceil(support)) * 2 + 1
    index = np.zeros((out_size, ksize), dtype=np.intp)
    weight = np.zeros((out_size, ksize), dtype=np.int32)
    ss = 1.0 / filterscale
    used = 0  # taps of the widest output pixel: ksize leaves room for more
    for xx in range(out_size):
        center = (xx + 0.5) * scale
        xmin = max(int(center - support + 0.5), 0)  # int() truncates toward zero, as C's cast does
        xmax = min(int(center + support + 0.5), in_size) - xmin
        used = max(used, xmax)
        ws = []
        for x in range(xmax):
            w = 1.0 - abs((x + xmin - center + 0.5) * ss)
            ws.append(w if w > 0.0 else 0.0)
        total = sum(ws)  # summed in order: the same double rounding as Pillow's loop
        for x, w in enumerate(ws):
            w = w / total if total != 0.0 else w
            weight[xx, x] = int(w * (1 << PRECISION_BITS) + (0.5 if w >= 0 else -0.5))
            index[xx, x] = xmin + x
    return index[:, :used], weight[:, :used]


def _resample_rows(image: np.ndarray, out_size: int) -> np.ndarray:
    """Pillow's 1-D pass along the first axis of an (N, M, C) uint8 array: whole rows gathered per tap, the
    fast way for numpy (a pass along the second axis transposes first)."""
    index, weight = _taps(image.shape[0], out_size)
    total = np.full((out_size,) + image.shape[1:], 1 << (PRECISION_BITS - 1), dtype=np.int32)
    for k in range(index.shape[1]):
        # uint8 x int32 -> int32: sums stay below 2**31, as in Pillow's int accumulators
        total += image[index[:, k]] * weight[:, k, None, None]
    return np.clip(total >> PRECISION_BITS, 0, 255).astype(np.uint8)


def _resample(image: np.ndarray, out_size: int, axis: int) -> np.ndarray:
    """One of Pillow's 1-D passes along ``axis`` (0 rows, 1 columns) of an (H, W, C) uint8 image."""
    if axis == 0:
        return _resample_rows(image, out_size)
    columns = np.ascontiguousarray(image.transpose(1, 0, 2))
    return _resample_rows(columns, out_size).transpose(1, 0, 2)


def pillow_bilinear(image: np.ndarray, width: int, height: int) -> np.ndarray:
    """``Image.fromarray(image).resize((width, height), Image.BILINEAR)`` of an (H, W, C) uint8 image, as an
    (height, width, C) uint8 array; the channels are independent, so BGR in gives BGR out."""
    shrink_h, shrink_w = image.shape[0] - height, image.shape[1] - width
    # Pillow 13 runs the vertical pass first when the height shrinks more than twice as much as the width
    # (older releases always went horizontal first: +-1 grey level on such images).
    axes = (0, 1) if shrink_h > 0 and shrink_h > 2 * shrink_w else (1, 0)
    out = image
    for axis in axes:
        size = height if axis == 0 else width
        if out.shape[axis] != size:
            out = _resample(out, size, axis)
    return np.ascontiguousarray(out)
