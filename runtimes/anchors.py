"""SSD default boxes (anchors), generated in one place from the metadata's :class:`AnchorConfig`.

For torchvision's configurations numerically the same as its ``DefaultBoxGenerator`` (float32, same
operation order), in numpy so that the device side needs no PyTorch. Other codebases' priors (pytorch-ssd,
ssd.pytorch, ...) come in as explicit per-level box sizes and a whole-box clamp (``clip_mode`` "box").
"""

from __future__ import annotations

import math
from typing import List

import numpy as np

from runtimes.metadata import AnchorConfig


def _wh_pairs(cfg: AnchorConfig) -> List[np.ndarray]:
    """Per feature map, the (A, 2) float32 (w, h) of a cell's boxes as fractions of the input, before any clip."""
    if cfg.box_sizes is not None:
        return [np.asarray(level, dtype=np.float32).reshape(-1, 2) for level in cfg.box_sizes]
    pairs = []
    for k in range(len(cfg.aspect_ratios)):
        s_k = cfg.scales[k]
        s_prime_k = math.sqrt(cfg.scales[k] * cfg.scales[k + 1])
        wh = [[s_k, s_k], [s_prime_k, s_prime_k]]
        for ar in cfg.aspect_ratios[k]:
            sq_ar = math.sqrt(ar)
            wh.extend([[s_k * sq_ar, s_k / sq_ar], [s_k / sq_ar, s_k * sq_ar]])
        pairs.append(np.asarray(wh, dtype=np.float32))
    return pairs


def default_boxes(cfg: AnchorConfig, input_height: int, input_width: int) -> np.ndarray:
    """Anchors as (N, 4) float32 ``(x1, y1, x2, y2)`` in pixels of the network input.

    Order: feature map by feature map, row-major cells, then the cell's width/height pairs; the same order
    as the head outputs.
    """
    boxes = []
    for k, ((f_h, f_w), wh) in enumerate(zip(cfg.feature_maps, _wh_pairs(cfg))):
        if cfg.steps is not None:
            x_f_k = input_width / cfg.steps[k]
            y_f_k = input_height / cfg.steps[k]
        else:
            y_f_k, x_f_k = f_h, f_w
        # float32 throughout, as torchvision computes it, so the anchors agree bit for bit.
        shifts_x = (np.arange(f_w, dtype=np.float32) + np.float32(0.5)) / np.float32(x_f_k)
        shifts_y = (np.arange(f_h, dtype=np.float32) + np.float32(0.5)) / np.float32(y_f_k)
        shift_y, shift_x = np.meshgrid(shifts_y, shifts_x, indexing="ij")
        if cfg.clip and cfg.clip_mode == "size":
            wh = np.clip(wh, 0.0, 1.0)
        shifts = np.stack([shift_x.reshape(-1), shift_y.reshape(-1)] * len(wh), axis=-1).reshape(-1, 2)
        boxes.append(np.concatenate([shifts, np.tile(wh, (f_h * f_w, 1))], axis=1))
    cxcywh = np.concatenate(boxes, axis=0).astype(np.float32)
    if cfg.clip and cfg.clip_mode == "box":  # the codebases that clamp the whole centre-size prior
        cxcywh = np.clip(cxcywh, 0.0, 1.0)
    size = np.array([input_width, input_height], dtype=np.float32)
    return np.concatenate([(cxcywh[:, :2] - np.float32(0.5) * cxcywh[:, 2:]) * size,
                           (cxcywh[:, :2] + np.float32(0.5) * cxcywh[:, 2:]) * size], axis=1)


def count(cfg: AnchorConfig) -> int:
    return sum(h * w * len(wh) for (h, w), wh in zip(cfg.feature_maps, _wh_pairs(cfg)))
