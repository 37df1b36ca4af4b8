"""The encoded video a stream keeps in memory: the newest units, bounded by time and by bytes, always starting
on a keyframe (units before the first keyframe cannot be decoded, so they are never kept)."""

from __future__ import annotations

import collections
from typing import Deque, List, Optional

from recording.units import NS, EncodedUnit


class UnitRing:
    """Units in decode order. ``max_s``: the span kept (newest pts - oldest pts); ``max_bytes``: the most
    bytes kept. Eviction drops whole GOPs from the old end, so what is left starts on a keyframe; the newest
    GOP is kept even when it alone is over a bound (a clip needs its keyframe)."""

    def __init__(self, max_s: float, max_bytes: int) -> None:
        self.max_ns = int(max_s * NS)
        self.max_bytes = int(max_bytes)
        self._units: Deque[EncodedUnit] = collections.deque()
        self.bytes = 0
        self.evicted = 0

    def __len__(self) -> int:
        return len(self._units)

    def append(self, unit: EncodedUnit) -> None:
        if not self._units and not unit.keyframe:
            self.evicted += 1  # nothing to decode it from
            return
        self._units.append(unit)
        self.bytes += unit.size
        while self._over() and self._drop_oldest_gop():
            pass

    def _over(self) -> bool:
        span = self._units[-1].pts_ns - self._units[0].pts_ns
        return span > self.max_ns or self.bytes > self.max_bytes

    def _drop_oldest_gop(self) -> bool:
        """Drop the units before the second keyframe; False when there is only one GOP."""
        following = next((i for i, unit in enumerate(self._units) if i > 0 and unit.keyframe), None)
        if following is None:
            return False
        for _ in range(following):
            self.bytes -= self._units.popleft().size
            self.evicted += 1
        return True

    def from_keyframe(self, time_s: float) -> List[EncodedUnit]:
        """The units from the last keyframe at or before ``time_s`` (the first one kept when none is that
        old: the pre-roll is then short) to the newest."""
        units = list(self._units)
        limit = int(time_s * NS)
        start = 0
        for i, unit in enumerate(units):  # every keyframe looked at: with B-frames pts is not monotonic
            if unit.keyframe and unit.pts_ns <= limit:
                start = i
        return units[start:]

    def after(self, index: int) -> List[EncodedUnit]:
        """The units after the one numbered ``index`` (all of them when it is no longer kept)."""
        return [unit for unit in self._units if unit.index > index]

    def clear(self) -> None:
        self.evicted += len(self._units)
        self._units.clear()
        self.bytes = 0

    def newest(self) -> Optional[EncodedUnit]:
        return self._units[-1] if self._units else None

    def oldest(self) -> Optional[EncodedUnit]:
        return self._units[0] if self._units else None
