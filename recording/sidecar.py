"""A clip's JSON sidecar: what it shows and why it was written.

    {"stream": "door", "clip": "134501-0.mp4", "codec": "video/x-h264", "caps": "...",
     "events": [<event dicts as the sinks send them>], "triggers": ["class:person", ...],
     "start_wall_time": 1700000000.1, "end_wall_time": ..., "start_time_s": 12.0, "end_time_s": 23.0,
     "frames": [360, 690], "units": 331, "bytes": 812345, "pre_seconds": 5, "post_seconds": 5,
     "pre_roll_short": false, "cut_short": false,
     "tracks": [{"track_id": 3, "class": "person", "first_s": 12.4, "last_s": 20.1, "best_score": 0.91}]}

Times ``*_time_s`` are stream seconds (the events' ``timestamp``); ``frames`` the first and last frame
numbers of the stream in the clip (inclusive).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Dict, List, Set, Tuple

from recording.units import EncodedUnit


@dataclass
class TrackSeen:
    class_name: str
    first_s: float
    last_s: float
    best_score: float


@dataclass
class ClipStory:
    """What is gathered while a clip is written, beside its video."""

    triggers: Set[str] = field(default_factory=set)
    tracks: Dict[int, TrackSeen] = field(default_factory=dict)

    def saw(self, track_id: int, class_name: str, time_s: float, score: float) -> None:
        seen = self.tracks.get(track_id)
        if seen is None:
            self.tracks[track_id] = TrackSeen(class_name, time_s, time_s, score)
        else:
            seen.last_s, seen.best_score = time_s, max(seen.best_score, score)


def sidecar(stream: str, clip_name: str, events: List[Dict[str, Any]], story: ClipStory, first: EncodedUnit,
            last_s: float, units: int, size: int, wanted: Tuple[float, float], pre_s: float,
            post_s: float) -> Dict[str, Any]:
    """The sidecar's content: ``first`` the clip's first unit (a keyframe), ``last_s`` its latest frame's time;
    ``wanted``: the (start, end) stream seconds the events asked for. The clip's frames are contiguous in
    presentation order, and its keyframe is its first frame in both orders, so they are numbered from it."""
    return {
        "stream": stream, "clip": clip_name, "codec": first.caps.split(",")[0], "caps": first.caps,
        "events": events, "triggers": sorted(story.triggers),
        "start_wall_time": round(first.wall_time, 3),
        "end_wall_time": round(first.wall_time + last_s - first.time_s, 3),
        "start_time_s": round(first.time_s, 6), "end_time_s": round(last_s, 6),
        "frames": [first.index, first.index + units - 1], "units": units, "bytes": size,
        "pre_seconds": pre_s, "post_seconds": post_s,
        "pre_roll_short": first.time_s > wanted[0] + 1e-6, "cut_short": last_s < wanted[1] - 1e-6,
        "tracks": [{"track_id": track_id, "class": seen.class_name, "first_s": round(seen.first_s, 6),
                    "last_s": round(seen.last_s, 6), "best_score": round(seen.best_score, 4)}
                   for track_id, seen in sorted(story.tracks.items())],
    }
