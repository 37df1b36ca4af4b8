"""The records a frame travels in: :class:`Frame` from capture through the scheduler, :class:`FrameResult`
from the scheduler to the stream's output."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, Optional, Tuple

import numpy as np

from runtimes.detections import Detections


@dataclass
class Frame:
    """One frame of one stream.

    ``index`` is the stream's own frame number from 0 (a file's frame position; a live stream's count of
    frames read, across reopens, dropped ones included); ``timestamp`` is seconds since the stream's capture
    started; ``image`` is the (H, W, 3) uint8 BGR frame as decoded; ``captured`` is ``time.monotonic()``
    when it was read (latency is measured from there); ``read_s`` is how long the read took. ``source_size``
    is the source's (width, height) when the image was scaled while decoding (streams/decoding.py), None when
    the image is the source's own size: detections, motion boxes and zones are in the source's pixels.
    """

    stream: str
    index: int
    timestamp: float
    image: np.ndarray
    captured: float
    read_s: float
    source_size: Optional[Tuple[int, int]] = None

    @property
    def size(self) -> Tuple[int, int]:
        """(width, height) in the source's pixels."""
        return self.source_size or (int(self.image.shape[1]), int(self.image.shape[0]))


def in_source_pixels(detections: Detections, frame: Frame) -> Detections:
    """``detections`` of ``frame``'s image in the source's pixels (the same when it was not scaled)."""
    if frame.source_size is None:
        return detections
    height, width = frame.image.shape[:2]
    scale = np.array([frame.source_size[0] / width, frame.source_size[1] / height] * 2, np.float32)
    return Detections(detections.boxes * scale, detections.scores, detections.labels, detections.class_names)


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
