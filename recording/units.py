"""One encoded access unit (a frame's compressed bytes) as the source delivered it, with its times."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

NS = 1_000_000_000


@dataclass(frozen=True)
class EncodedUnit:
    """``index``: the unit's number in its stream from 0 (decode order; one unit a frame, so it is the frame
    number the decoded branch gives the same frame); ``pts_ns``/``dts_ns``: presentation and decode time in
    nanoseconds of stream time (0 at the stream's first unit; dts None when the source has none);
    ``duration_ns`` (None: unknown); ``keyframe``: decodable on its own (an IDR/IRAP with its parameter sets
    repeated in front); ``data``: the bytes (H.264/H.265 Annex B, one access unit); ``caps``: the GStreamer
    caps string of the stream (shared by all its units); ``wall_time``: Unix time it arrived."""

    index: int
    pts_ns: int
    dts_ns: Optional[int]
    duration_ns: Optional[int]
    keyframe: bool
    data: bytes
    caps: str
    wall_time: float

    @property
    def time_s(self) -> float:
        """Presentation time, seconds of stream time."""
        return self.pts_ns / NS

    @property
    def size(self) -> int:
        return len(self.data)
