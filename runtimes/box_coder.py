"""torchvision's SSD box coder, defined once: the host post-processor (runtimes/postprocess.py) decodes with
it, and the in-graph decoding (export/efficient_nms.py, for TensorRT's and OpenVINO's NMS) is built from the
same anchors, weights and clamp."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional

import numpy as np

from runtimes.anchors import default_boxes
from runtimes.metadata import ModelMetadata

# torchvision's BoxCoder clamps dw/dh so exp() stays finite: log(1000 / 16).
BBOX_XFORM_CLIP = np.float32(math.log(1000.0 / 16))


@dataclass
class BoxCoder:
    """``BoxCoder.decode_single`` of torchvision for one model's anchors.

    anchor_ctr, anchor_wh: (N, 2) float32 anchor centres and sizes in input pixels; weights: (4,) float32.
    """

    anchor_ctr: np.ndarray
    anchor_wh: np.ndarray
    weights: np.ndarray

    @classmethod
    def for_model(cls, meta: ModelMetadata) -> "BoxCoder":
        if meta.anchors is None:
            raise ValueError("box decoding needs the model's anchor configuration (a 'raw' output model)")
        anchors = default_boxes(meta.anchors, meta.input_height, meta.input_width)
        wh = anchors[:, 2:] - anchors[:, :2]
        return cls(anchors[:, :2] + np.float32(0.5) * wh, wh, np.asarray(meta.box_coder_weights, dtype=np.float32))

    def decode(self, offsets: np.ndarray, anchor_idx: Optional[np.ndarray] = None) -> np.ndarray:
        """(M, 4) float32 ``(x1, y1, x2, y2)`` in input pixels (not clipped) for (M, 4) offsets of the anchors
        ``anchor_idx`` (all of them when None)."""
        rel = np.asarray(offsets, dtype=np.float32) / self.weights
        wh = self.anchor_wh if anchor_idx is None else self.anchor_wh[anchor_idx]
        ctr = self.anchor_ctr if anchor_idx is None else self.anchor_ctr[anchor_idx]
        centre = rel[:, :2] * wh + ctr
        size = np.exp(np.minimum(rel[:, 2:], BBOX_XFORM_CLIP)) * wh
        half = np.float32(0.5) * size
        return np.concatenate([centre - half, centre + half], axis=1)
