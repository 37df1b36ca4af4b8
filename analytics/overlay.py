"""Drawing tracks (id and a short trail) and zones and lines with their live counts, in place with OpenCV.

cv2 is imported inside the functions: on a Jetson it is JetPack's system OpenCV, and the tracker, zones and
sinks work without it.
"""

from __future__ import annotations

from collections import deque
from functools import lru_cache
from typing import Any, Deque, Dict, List, Tuple

import numpy as np

from analytics.tracker import Tracks

ZONE_COLOUR = (0, 200, 255)  # BGR amber
LINE_COLOUR = (255, 0, 255)  # BGR magenta


@lru_cache(maxsize=1024)
def track_colour(track_id: int) -> Tuple[int, int, int]:
    """A stable, distinct BGR colour per id (golden-ratio hue steps)."""
    import cv2

    hue = int((track_id * 0.618033988749895 % 1.0) * 180)
    bgr = cv2.cvtColor(np.array([[[hue, 220, 255]]], dtype=np.uint8), cv2.COLOR_HSV2BGR)[0, 0]
    return (int(bgr[0]), int(bgr[1]), int(bgr[2]))


class Trails:
    """The last ``length`` centre points of every live track of one stream."""

    def __init__(self, length: int = 20) -> None:
        self.length = length
        self.points: Dict[int, Deque[Tuple[int, int]]] = {}

    def update(self, tracks: Tracks) -> None:
        centres = ((tracks.boxes[:, :2] + tracks.boxes[:, 2:]) * 0.5).round().astype(np.int32).tolist()
        for track_id, (x, y) in zip(tracks.ids.tolist(), centres):
            trail = self.points.get(track_id)
            if trail is None:
                trail = self.points[track_id] = deque(maxlen=self.length)
            trail.append((x, y))
        for track_id in tracks.removed.tolist():
            self.points.pop(track_id, None)


def _label(frame: np.ndarray, text: str, origin: Tuple[int, int], colour: Tuple[int, int, int]) -> None:
    import cv2

    (tw, th), _ = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, 0.45, 1)
    x, y = max(0, origin[0]), max(th + 4, origin[1])
    cv2.rectangle(frame, (x, y - th - 4), (x + tw + 4, y + 2), colour, -1)
    cv2.putText(frame, text, (x + 2, y - 2), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (0, 0, 0), 1, cv2.LINE_AA)


def draw_tracks(frame: np.ndarray, tracks: Tracks, trails: Trails) -> None:
    """Per track: its trail as a polyline and ``#id`` inside the box's top-left corner."""
    import cv2

    for track_id, box in zip(tracks.ids.tolist(), tracks.boxes.tolist()):
        colour = track_colour(track_id)
        trail = trails.points.get(track_id)
        if trail is not None and len(trail) > 1:
            cv2.polylines(frame, [np.array(trail, dtype=np.int32)], False, colour, 2, cv2.LINE_AA)
        _label(frame, f"#{track_id}", (int(box[0]) + 2, int(box[1]) + 18), colour)


def draw_zones(frame: np.ndarray, zones: List[Tuple[str, np.ndarray]], lines: List[Tuple[str, np.ndarray]],
               counts: Dict[str, Any]) -> None:
    """Zone outlines with their occupancy, lines with their in/out counts (``counts`` from StreamCounter)."""
    import cv2

    for name, polygon in zones:
        pts = np.round(polygon).astype(np.int32)
        cv2.polylines(frame, [pts], True, ZONE_COLOUR, 2, cv2.LINE_AA)
        total = counts["zones"].get(name, {}).get("total", 0)
        _label(frame, f"{name}: {total}", (int(pts[:, 0].min()), int(pts[:, 1].min())), ZONE_COLOUR)
    for name, points in lines:
        a = (int(round(points[0][0])), int(round(points[0][1])))
        b = (int(round(points[1][0])), int(round(points[1][1])))
        cv2.line(frame, a, b, LINE_COLOUR, 2, cv2.LINE_AA)
        cv2.circle(frame, a, 4, LINE_COLOUR, -1)  # the first point: directions are seen from it
        entry = counts["lines"].get(name, {})
        _label(frame, f"{name} in {entry.get('in', 0)} out {entry.get('out', 0)}", a, LINE_COLOUR)
