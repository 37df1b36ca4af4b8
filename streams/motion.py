"""Motion gating: whether a frame needs the detector, from a cheap test on a small grey copy of it.

Each frame is shrunk to ``width`` pixels across (its aspect kept), turned grey and blurred, and compared with
a running average of the previous ones (a slow object still differs from the average where a plain previous
frame would hide it; at the default weight of 0.5 a moved object's trail fades within about 3 frames).
Pixels differing by more than ``threshold`` grey levels move, except inside the mask's polygons (a clock,
trees in the wind); the frame needs the detector when the moving pixels cover at least ``min_area`` of it,
and at least every ``max_skip`` frames whatever happens (``--motion-max-skip``: a still object is looked at
again, and the tracker's prediction never runs on for long). The boxes around the moving regions are given
in frame pixels.

    gate = MotionGate(MotionOptions(max_skip=15, mask=parse_mask("0,0 300,0 300,40 0,40")))
    motion = gate.check(bgr_frame)         # MotionResult: .detect, .moving, .boxes (K, 4) float32
    if motion.detect: ... detector ... else: tracker.predict()
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional, Tuple

import numpy as np

from runtimes.errors import UserError

Polygon = Tuple[Tuple[float, float], ...]


@dataclass(frozen=True)
class MotionOptions:
    """How motion is judged (checked when made: a bad value is one line, :class:`UserError`).

    threshold: grey levels (0-255) a pixel must differ from the running average by to move.
    min_area: fraction of the frame (0-1) that must move for the frame to need the detector.
    max_skip: the detector runs at least every ``max_skip`` frames (1: every frame).
    width: pixels across of the small grey frame the test runs on.
    learning_rate: weight of each new frame in the running average (0-1].
    mask: polygons, in frame pixels ``((x, y), ...)``, where motion is ignored.
    """

    threshold: int = 25
    min_area: float = 0.002
    max_skip: int = 15
    width: int = 160
    learning_rate: float = 0.5
    mask: Tuple[Polygon, ...] = field(default_factory=tuple)

    def __post_init__(self) -> None:
        if self.max_skip < 1:
            raise UserError(f"--motion-max-skip {self.max_skip}: below 1; give 1 (detect every frame) or more "
                            "(the detector runs at least every that many frames)")
        if not 0 < self.threshold < 256:
            raise UserError(f"--motion-threshold {self.threshold}: not a grey-level difference; give 1 to 255")
        if not 0 <= self.min_area <= 1:
            raise UserError(f"--motion-min-area {self.min_area}: not a fraction of the frame; give 0 to 1")
        if not 0 < self.learning_rate <= 1 or self.width < 16:
            raise UserError(f"motion options: learning_rate {self.learning_rate} must be in (0, 1] and width "
                            f"{self.width} at least 16")
        for polygon in self.mask:
            if len(polygon) < 3:
                raise UserError(f"--motion-mask: a polygon has {len(polygon)} points; give at least 3 (x,y x,y x,y)")


def parse_mask(text: str) -> Tuple[Polygon, ...]:
    """``"x,y x,y x,y; x,y ..."`` (polygons separated by ``;``, frame pixels) -> polygons; one-line UserError."""
    polygons = []
    for part in (p for p in text.split(";") if p.strip()):
        try:
            points = tuple((float(x), float(y)) for x, y in (pair.split(",") for pair in part.split()))
        except ValueError:
            raise UserError(f"--motion-mask {text!r}: {part.strip()!r} is not points like 'x,y x,y x,y'; "
                            "separate polygons with ';'") from None
        if len(points) < 3:
            raise UserError(f"--motion-mask {text!r}: {part.strip()!r} has {len(points)} points; give at least 3")
        polygons.append(points)
    return tuple(polygons)


@dataclass
class MotionResult:
    """One frame's verdict. detect: the detector should run on it (motion, the first frame, or ``max_skip``
    reached). moving: motion was found. boxes: (K, 4) float32 ``(x1, y1, x2, y2)`` frame pixels around the
    moving regions. moving_fraction: the share of the (unmasked) frame that moved."""

    detect: bool
    moving: bool
    boxes: np.ndarray
    moving_fraction: float


class MotionGate:
    """One stream's motion test; :meth:`check` once per frame, in order."""

    def __init__(self, options: MotionOptions, offset: int = 0) -> None:
        """``offset``: the stream's position; streams' detections forced by ``max_skip`` fall on different frames
        (their first frames, all detected, would otherwise align them for as long as nothing moves)."""
        self.options = options
        self._stagger = offset % options.max_skip
        self._average: Optional[np.ndarray] = None
        self._keep: Optional[np.ndarray] = None  # uint8 small-frame mask: 1 where motion counts
        self._frame_size: Optional[Tuple[int, int]] = None
        self._since_detection = 0

    def check(self, frame: np.ndarray, size: Optional[Tuple[int, int]] = None) -> MotionResult:
        """(H, W, 3) BGR or (H, W) grey uint8 frame -> :class:`MotionResult`; the first frame sets the size.
        ``size``: the source's (width, height) when the frame was scaled in decoding (the mask's and the
        boxes' pixels); default the frame's own."""
        import cv2

        width, height = size or (frame.shape[1], frame.shape[0])
        if self._frame_size is None:
            self._start((width, height))
        elif self._frame_size != (width, height):
            raise UserError(f"motion gating: a frame of {width}x{height} in a stream of "
                            f"{self._frame_size[0]}x{self._frame_size[1]}; one gate per stream size")
        assert self._keep is not None
        small_size = (self._keep.shape[1], self._keep.shape[0])
        small = cv2.resize(frame, small_size, interpolation=cv2.INTER_AREA)
        grey = cv2.cvtColor(small, cv2.COLOR_BGR2GRAY) if small.ndim == 3 else small
        grey = cv2.GaussianBlur(grey, (5, 5), 0).astype(np.float32)
        if self._average is None:
            self._average = grey
            return self._verdict(True, False, np.zeros((0, 4), np.float32), 0.0)
        moved = (cv2.absdiff(grey, self._average) > self.options.threshold).astype(np.uint8) * self._keep
        cv2.accumulateWeighted(grey, self._average, self.options.learning_rate)
        fraction = float(moved.sum()) / max(int(self._keep.sum()), 1)
        moving = bool(fraction >= self.options.min_area and moved.any())
        boxes = self._boxes(moved) if moving else np.zeros((0, 4), np.float32)
        return self._verdict(moving, moving, boxes, fraction)

    def _verdict(self, motion: bool, moving: bool, boxes: np.ndarray, fraction: float) -> MotionResult:
        self._since_detection += 1
        detect = motion or self._since_detection >= self.options.max_skip
        if detect:
            self._since_detection, self._stagger = self._stagger, 0
        return MotionResult(detect, moving, boxes, fraction)

    def _start(self, size: Tuple[int, int]) -> None:
        """Fix the frame size, check the mask against it, draw the mask on the small frame."""
        import cv2

        width, height = size
        for polygon in self.options.mask:
            outside = [(x, y) for x, y in polygon if not (0 <= x <= width and 0 <= y <= height)]
            if outside:
                x, y = outside[0]
                raise UserError(f"--motion-mask: point ({x:g}, {y:g}) is outside the {width}x{height} frame; "
                                f"give points within 0..{width}, 0..{height}")
        small_w = min(self.options.width, width)
        small_h = max(1, round(height * small_w / width))
        keep = np.ones((small_h, small_w), np.uint8)
        scale = np.array([small_w / width, small_h / height])
        for polygon in self.options.mask:
            cv2.fillPoly(keep, [np.round(np.array(polygon) * scale).astype(np.int32)], 0)
        self._frame_size, self._keep = size, keep

    def _boxes(self, moved: np.ndarray) -> np.ndarray:
        """Bounding boxes of the moving regions (grown by a dilation, so a region's pieces join), frame pixels."""
        import cv2

        joined = cv2.dilate(moved, np.ones((3, 3), np.uint8), iterations=2)
        count, _, stats, _ = cv2.connectedComponentsWithStats(joined, connectivity=8)
        if count <= 1:
            return np.zeros((0, 4), np.float32)
        x, y, w, h = (stats[1:, i].astype(np.float32) for i in range(4))
        assert self._frame_size is not None and self._keep is not None
        sx = self._frame_size[0] / self._keep.shape[1]
        sy = self._frame_size[1] / self._keep.shape[0]
        boxes = np.stack([x * sx, y * sy, (x + w) * sx, (y + h) * sy], axis=1)
        return np.minimum(boxes, np.array([*self._frame_size, *self._frame_size], np.float32)).astype(np.float32)
