"""Per event, the frame where the event's track scored best within the event's window [t - pre, t + post]:
written as a JPEG of the full frame with the track's box drawn and a JPEG crop of the box with a margin."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import List, Optional, Sequence, Tuple

import numpy as np

from analytics.events import TrackBox
from runtimes.atomic import atomic_write_bytes

__all__ = ["CROP_MARGIN", "SnapshotPicker", "SnapshotWatch", "TrackBox", "crop_box", "write_snapshot"]

Box = Tuple[float, float, float, float]  # x1, y1, x2, y2 in pixels
CROP_MARGIN = 0.25  # of the box's width and height on each side: the crop shows what is around the object


@dataclass
class SnapshotWatch:
    """An event waiting for its window to end, with the best frame of its track so far."""

    seq: int
    track_id: int
    start_s: float
    end_s: float
    full: Path
    crop: Path
    score: float = -1.0
    time_s: float = 0.0
    image: Optional[np.ndarray] = None
    box: Optional[Box] = None
    label: str = ""


class SnapshotPicker:
    def __init__(self) -> None:
        self._watches: List[SnapshotWatch] = []

    def watch(self, watch: SnapshotWatch) -> None:
        self._watches.append(watch)

    def offer(self, time_s: float, image: np.ndarray, tracks: Sequence[TrackBox]) -> None:
        """A frame and its tracks; kept (a copy: the caller may draw on its frame) where it beats a watch's
        best."""
        copy: Optional[np.ndarray] = None
        by_id = {track.track_id: track for track in tracks}
        for watch in self._watches:
            track = by_id.get(watch.track_id)
            if track is None or not watch.start_s <= time_s <= watch.end_s or track.score <= watch.score:
                continue
            copy = image.copy() if copy is None else copy
            watch.score, watch.time_s, watch.image = track.score, time_s, copy
            watch.box, watch.label = track.box, f"{track.class_name} #{track.track_id} {track.score:.2f}"

    def due(self, time_s: float) -> List[SnapshotWatch]:
        """The watches whose window ended before ``time_s`` (removed here)."""
        done = [w for w in self._watches if w.end_s < time_s]
        self._watches = [w for w in self._watches if w.end_s >= time_s]
        return done

    def flush(self) -> List[SnapshotWatch]:
        done, self._watches = self._watches, []
        return done


def crop_box(box: Box, width: int, height: int, margin: float = CROP_MARGIN) -> Tuple[int, int, int, int]:
    """The box grown by ``margin`` of its size on each side, clipped to the frame, as integer x1, y1, x2, y2
    (at least one pixel each way)."""
    x1, y1, x2, y2 = box
    dx, dy = (x2 - x1) * margin, (y2 - y1) * margin
    left, top = int(max(0, min(width - 1, x1 - dx))), int(max(0, min(height - 1, y1 - dy)))
    right, bottom = int(min(width, max(left + 1, x2 + dx))), int(min(height, max(top + 1, y2 + dy)))
    return left, top, right, bottom


def write_snapshot(watch: SnapshotWatch, quality: int = 90) -> Optional[bytes]:
    """Write the watch's best frame (box drawn) and crop; the full frame's JPEG, None when its track was never
    seen in the window."""
    import cv2

    if watch.image is None or watch.box is None:
        return None
    image = watch.image
    left, top, right, bottom = crop_box(watch.box, image.shape[1], image.shape[0])
    crop = image[top:bottom, left:right].copy()  # before the box is drawn on the full frame
    x1, y1, x2, y2 = (int(round(v)) for v in watch.box)
    cv2.rectangle(image, (x1, y1), (x2, y2), (0, 255, 0), 2)
    cv2.putText(image, watch.label, (x1, max(12, y1 - 4)), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (0, 255, 0), 1)
    params = [int(cv2.IMWRITE_JPEG_QUALITY), int(quality)]
    jpegs = []
    for path, picture in ((watch.full, image), (watch.crop, crop)):
        ok, data = cv2.imencode(".jpg", picture, params)
        if not ok:
            return None
        jpegs.append(data.tobytes())
        atomic_write_bytes(path, jpegs[-1])
    return jpegs[0]
