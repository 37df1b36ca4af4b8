"""Which frames the detector sees (issue #28): every Nth frame of a stream (``--interval``), and among those
the ones a motion test passes (``--motion``, streams/motion.py). The other frames go to the stream's output
without detections, marked not detected, and the tracker predicts their tracks (analytics/tracker.py).

Streams are staggered: stream k (its position in the run) detects on the frames where (index + k) % N == 0,
so with N streams at interval N the detector gets one frame each time rather than N at once and none in
between. The index counted is the frames the pipeline takes from the stream: a file's frame numbers, a live
stream's frames less those it dropped. Counting the source's numbers instead would make every frame taken
after a dropped due one a detection, so an overloaded box (the case the interval is for) would lose the
interval's saving exactly when it needs it (a test measured 11 detections in 12 frames taken at interval 2).

    gating = gate_options(["2", "door=1"], MotionOptions(max_skip=10))
    gate = FrameGate(gating.interval_of("cam0"), offset=0, motion=gating.motion)
    decision = gate.check(frame)            # Decision: .detect, .motion (K, 4) boxes or None
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Sequence, Tuple

import numpy as np

from runtimes.errors import UserError
from streams.frame import Frame
from streams.motion import MotionGate, MotionOptions, parse_mask


@dataclass(frozen=True)
class GateOptions:
    """interval: the detector sees every ``interval``-th frame of a stream (1: every frame); per_stream:
    ``(name, interval)`` pairs over it; motion: the motion test's options (None: no motion gating)."""

    interval: int = 1
    per_stream: Tuple[Tuple[str, int], ...] = ()
    motion: Optional[MotionOptions] = None
    motion_of: Tuple[Tuple[str, Optional[MotionOptions]], ...] = ()  # a stream's own, over ``motion`` (the box)

    def __post_init__(self) -> None:
        for name, value in (("", self.interval), *self.per_stream):
            if value < 1:
                given = f"{name}={value}" if name else str(value)
                raise UserError(f"--interval {given}: below 1; give 1 (detect every frame) or more (the detector "
                                "sees every Nth frame, the tracker predicts the others)")

    @property
    def gates(self) -> bool:
        """Whether any frame may skip the detector."""
        return (self.motion is not None or self.interval > 1 or any(n > 1 for _, n in self.per_stream)
                or any(m is not None for _, m in self.motion_of))

    def describe(self) -> str:
        """One line for the start: which frames the detector sees."""
        every = "every frame" if self.interval == 1 else f"one frame in {self.interval}"
        words = [f"the detector sees {every} of each stream"
                 + "".join(f" ({name}: one in {n})" for name, n in self.per_stream)]
        if self.interval > 1 or self.per_stream:
            words.append("staggered across streams")
        if self.motion is not None:
            words.append(f"with motion, and at least every {self.motion.max_skip} frames")
        return ", ".join(words) + "; the others go to the tracker's prediction"

    def interval_of(self, stream: str) -> int:
        return dict(self.per_stream).get(stream, self.interval)

    def motion_for(self, stream: str) -> Optional[MotionOptions]:
        return dict(self.motion_of).get(stream, self.motion)

    def check_streams(self, names: Sequence[str]) -> None:
        """A per-stream interval naming no stream is one line (a typo would silently detect every frame)."""
        unknown = [name for name, _ in self.per_stream if name not in names]
        if unknown:
            raise UserError(f"--interval {unknown[0]}=...: no stream is called {unknown[0]!r}; the streams are "
                            f"{', '.join(names)}")


def gate_options(intervals: Sequence[str], motion: Optional[MotionOptions] = None) -> GateOptions:
    """``--interval`` values (``N`` for every stream, ``NAME=N`` for one; repeatable, the last wins) and the
    motion options -> options; a value that is not one of these is one line."""
    interval, per_stream = 1, {}
    for text in intervals:
        name, sep, number = text.rpartition("=")
        try:
            value = int(number)
        except ValueError:
            raise UserError(f"--interval {text}: give a whole number of frames, N or NAME=N (e.g. 3 or door=2)"
                            ) from None
        if sep and name:
            per_stream[name] = value
        elif sep:
            raise UserError(f"--interval {text}: give N or NAME=N (e.g. 3 or door=2)")
        else:
            interval = value
    return GateOptions(interval, tuple(per_stream.items()), motion)


def motion_options(motion: bool, threshold: Optional[int] = None, max_skip: Optional[int] = None,
                   mask: Optional[str] = None) -> Optional[MotionOptions]:
    """The ``--motion*`` flags -> :class:`MotionOptions` (its defaults for those not given), None without
    ``--motion``; a ``--motion-*`` flag without ``--motion`` is one line (it would do nothing)."""
    given = {"threshold": threshold, "max_skip": max_skip}
    if not motion:
        stray = [k for k, v in (*given.items(), ("mask", mask)) if v is not None]
        if stray:
            raise UserError(f"--motion-{stray[0].replace('_', '-')} needs --motion (motion gating is off without it)")
        return None
    chosen = {k: v for k, v in given.items() if v is not None}
    return MotionOptions(mask=parse_mask(mask) if mask is not None else (), **chosen)


@dataclass
class Decision:
    """Whether a frame goes to the detector, and the motion boxes ((K, 4) float32 frame pixels) when the
    motion test looked at it (None otherwise)."""

    detect: bool
    motion: Optional[np.ndarray] = None


class FrameGate:
    """One stream's gate: stream ``offset`` (its position, for the stagger) at ``interval``, with a motion
    test when ``motion`` is given; :meth:`check` once per frame, in order."""

    def __init__(self, interval: int, offset: int = 0, motion: Optional[MotionOptions] = None) -> None:
        self.interval, self.offset = interval, offset
        self.taken = 0  # frames of the stream checked so far
        self.motion = MotionGate(motion, offset) if motion is not None else None

    def check(self, frame: Frame) -> Decision:
        position, self.taken = self.taken, self.taken + 1
        if (position + self.offset) % self.interval:
            return Decision(False)
        if self.motion is None:
            return Decision(True)
        try:
            verdict = self.motion.check(frame.image, frame.source_size)
        except UserError as exc:  # a mask outside the frame: known at the stream's first frame
            raise UserError(f"stream {frame.stream}: {exc}") from None
        return Decision(verdict.detect, verdict.boxes)
