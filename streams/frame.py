"""The records a frame travels in: :class:`Frame` from capture through the scheduler, :class:`FrameResult`
from the scheduler to the stream's output."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, Optional

import numpy as np

from runtimes.detections import Detections


@dataclass
class Frame:
    """One frame of one stream.

    ``index`` is the stream's own frame number from 0 (a file's frame position; a live stream's count of
    frames read, across reopens, dropped ones included); ``timestamp`` is seconds since the stream's capture
    started; ``image`` is the (H, W, 3) uint8 BGR frame as decoded; ``captured`` is ``time.monotonic()``
    when it was read (latency is measured from there); ``read_s`` is how long the read took.
    """

    stream: str
    index: int
    timestamp: float
    image: np.ndarray
    captured: float
    read_s: float


@dataclass
class FrameResult:
    """A frame and what the detector found in it; ``timings`` are seconds by stage ("capture",
    "preprocess", "inference", "postprocess"; the output adds "draw"). ``detected`` is False for a frame
    the detector did not see (``--interval``, ``--motion``: no detections, the tracker predicts); ``motion``
    the motion test's boxes, (K, 4) float32 frame pixels, when it looked at the frame."""

    frame: Frame
    detections: Detections
    timings: Dict[str, float]
    detected: bool = True
    motion: Optional[np.ndarray] = None
