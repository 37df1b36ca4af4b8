"""Events to clip windows, per stream: an event at stream time t wants [t - pre, t + post]; an event whose
window overlaps the open clip's extends that clip (its end moves to t + post) instead of starting another.
Pure bookkeeping: no video, no files (recording/recorder.py acts on what it decides)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Tuple


@dataclass
class PlannedClip:
    """``number``: the stream's clip count from 0; ``start_s``: the wanted start (the first event's time less
    the pre-roll; the clip starts on the keyframe at or before it); ``end_s``: the last event's time plus the
    post-roll; ``events``: the events it covers, as given."""

    number: int
    start_s: float
    end_s: float
    events: List[Dict[str, Any]] = field(default_factory=list)


class ClipPlanner:
    def __init__(self, pre_s: float, post_s: float) -> None:
        self.pre_s = pre_s
        self.post_s = post_s
        self.open: Optional[PlannedClip] = None
        self._count = 0

    def add(self, time_s: float, event: Optional[Dict[str, Any]] = None) -> Tuple[PlannedClip, bool]:
        """The clip that covers an event (or a class trigger: ``event`` None) at ``time_s``, and whether it
        is new (the caller starts writing it) rather than the open one extended."""
        clip = self.open
        if clip is not None and time_s - self.pre_s <= clip.end_s:
            clip.end_s = max(clip.end_s, time_s + self.post_s)
            is_new = False
        else:
            clip = PlannedClip(self._count, max(0.0, time_s - self.pre_s), time_s + self.post_s)
            self._count += 1
            self.open = clip
            is_new = True
        if event is not None:
            clip.events.append(event)
        return clip, is_new

    def due(self, now_s: float) -> Optional[PlannedClip]:
        """The open clip once stream time ``now_s`` has passed its end (it is closed here); else None."""
        clip = self.open
        if clip is not None and now_s >= clip.end_s:
            self.open = None
            return clip
        return None

    def close(self) -> Optional[PlannedClip]:
        """The open clip, closed early (the stream ended)."""
        clip, self.open = self.open, None
        return clip
