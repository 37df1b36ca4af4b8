"""Events: what the zones and lines report, as JSON objects with the stream, frame, time, track and class.

Types:
    zone_enter, zone_leave (with ``dwell_s`` and ``dwell_frames``), dwell_exceeded (once per stay, when a
    track has been inside longer than the zone's ``dwell_limit_s``), line_crossed (with ``direction``
    "in" or "out"), counts (periodic: the stream's live zone and line counts).

``timestamp`` is the frame's time in seconds since its stream opened (the pipeline record's), ``wall_time``
the Unix time the event was made; ``seq`` numbers a stream's events from 0, so a receiver can spot a gap
or a duplicate (MQTT QoS 1 and webhook retries deliver at least once).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Dict, Optional, Tuple

EVENT_TYPES = ("zone_enter", "zone_leave", "dwell_exceeded", "line_crossed", "counts")


@dataclass
class Event:
    type: str
    stream: str
    frame: int
    timestamp: float
    track_id: Optional[int] = None
    class_name: Optional[str] = None
    zone: Optional[str] = None
    line: Optional[str] = None
    direction: Optional[str] = None
    dwell_s: Optional[float] = None
    dwell_frames: Optional[int] = None
    counts: Optional[Dict[str, Any]] = None
    seq: int = -1
    wall_time: float = field(default_factory=time.time)

    def to_dict(self) -> Dict[str, Any]:
        """JSON-ready, without the fields this type does not have; the class is under ``"class"``."""
        out: Dict[str, Any] = {"type": self.type, "stream": self.stream, "seq": self.seq, "frame": int(self.frame),
                               "timestamp": round(float(self.timestamp), 6)}
        if self.track_id is not None:
            out["track_id"] = int(self.track_id)
        if self.class_name is not None:
            out["class"] = self.class_name
        for key in ("zone", "line", "direction", "dwell_frames", "counts"):
            value = getattr(self, key)
            if value is not None:
                out[key] = value
        if self.dwell_s is not None:
            out["dwell_s"] = round(float(self.dwell_s), 6)
        out["wall_time"] = round(self.wall_time, 3)
        return out


@dataclass(frozen=True)
class TrackBox:
    """A confirmed track in one frame, as evidence recorders take it (recording/): its id, class, box
    (x1, y1, x2, y2 in the frame's pixels) and the detection's score."""

    track_id: int
    class_name: str
    box: Tuple[float, float, float, float]
    score: float
