"""One inference worker for every stream: gather a frame from each stream that has one, run them as one
batch, keep requests in flight.

Each round starts with the stream after the one that led the previous round, so when frames arrive faster
than the model serves them, streams take turns (round-robin) and none starves. A round waits at most
``batch_timeout_s`` after its first frame for the other streams' frames. A frame that ``decide`` keeps from
the detector (streams/gating.py) is handed on without detections, after every request submitted before it,
so each stream's output gets its frames in order.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from typing import Callable, Dict, List, Optional, Sequence, Tuple

from runtimes.detections import Detections
from runtimes.detector import Detector
from runtimes.requests import RequestResult, Requests
from streams.capture import StreamCapture
from streams.frame import Frame, FrameResult
from streams.gating import Decision


@dataclass(frozen=True)
class Schedule:
    """How the streams share the model: ``batch`` frames per network call, ``depth`` requests in flight, and
    why (printed at start)."""

    batch: int
    depth: int
    reason: str


def plan_schedule(detector: Detector, streams: int, batch: Optional[int] = None,
                  depth: Optional[int] = None) -> Schedule:
    """Frames per call and requests in flight for ``streams`` streams on ``detector``, unless given: the
    fixed rule (the camera measures instead where it can: streams/schedule_probe.py, --schedule).

    On a CPU runtime (OpenVINO, ONNX Runtime) several single-frame requests in flight beat one batched
    call: each request gets CPU streams of its own and pre/post-processing overlaps inference
    (docs/multistream.md has the measurements); elsewhere (a GPU) one batch of every stream's frame per
    call, two requests in flight so that the next batch is prepared while one runs.
    """
    notes: List[str] = []
    cpu = detector.shares_cpu
    if batch is None:
        batch = 1 if cpu else min(streams, detector.max_batch)
    if batch > detector.max_batch:
        notes.append(f"--batch-size {batch} exceeds the model's batch of {detector.max_batch}: using "
                     f"{detector.max_batch}")
        batch = detector.max_batch
    if depth is None:
        # CPU: 4 single-frame requests kept both CPU streams of a 2-core box busy for any stream count
        # (1.1x over 2 with one or two streams); batched calls need fewer.
        depth = (4 if batch == 1 else min(4, max(2, -(-streams // batch)))) if cpu else 2
    if streams > batch:
        notes.append(f"{streams} streams, {batch} frame{'s' if batch > 1 else ''} per call (the model's batch is "
                     f"{detector.max_batch}): streams are served round-robin")
    kind = "CPU" if cpu else detector.device
    notes.append(f"{batch} frame{'s' if batch > 1 else ''} per call, {depth} request{'s' if depth > 1 else ''} in "
                 f"flight ({'chosen for' if cpu else 'default on'} {kind})")
    return Schedule(batch, depth, "; ".join(notes))


class BatchScheduler:
    """Feeds ``requests`` from ``captures`` until every stream has finished or ``stop`` is set, handing
    each finished request's frames with their detections to ``deliver`` (on this thread, in submission
    order). ``decide`` (None: every frame is detected) says per frame whether it goes to the detector; the
    others are delivered with no detections of ``class_names``, marked not detected. Captures and requests
    wake it through :meth:`notify`."""

    def __init__(self, captures: Sequence[StreamCapture], requests: Requests, batch: int, batch_timeout_s: float,
                 deliver: Callable[[List[FrameResult]], None], stop: threading.Event,
                 decide: Optional[Callable[[Frame], Decision]] = None, class_names: Sequence[str] = ()) -> None:
        self.captures = list(captures)
        self.requests, self.batch, self.batch_timeout_s = requests, batch, batch_timeout_s
        self.deliver, self.stop, self.decide = deliver, stop, decide
        self.nothing = Detections.empty(class_names)
        # Frames kept from the detector, by the tag of the last request submitted before them (-1: none).
        self._held: Dict[int, List[FrameResult]] = {}
        self.wake = threading.Condition()
        requests.on_settled = self.notify
        self._start = 0  # the stream that leads the next round
        self._in_flight: Dict[int, List[Tuple[Frame, Decision]]] = {}  # each submitted request's frames, by its tag
        self.batches = 0
        self.frames = 0
        # Changes asked for from other threads (streams added or removed, the detector swapped: the box),
        # applied on this thread between batches, and callbacks due once a request's frames are handed on.
        self._changes_lock = threading.Lock()
        self._changes: List[Callable[[], None]] = []
        self._after: Dict[int, List[Callable[[], None]]] = {}
        self.keep_running = False  # True: run until ``stop`` even with every stream ended (streams may be added)

    def notify(self) -> None:
        """A frame was offered, a stream ended or a request finished."""
        with self.wake:
            self.wake.notify_all()

    def run(self) -> None:
        try:
            while not self.stop.is_set():
                self._apply_changes()
                self._hand_on()
                if not self.keep_running and all(c.finished for c in self.captures):
                    break
                frames = self._to_detect(self._gather())
                if frames:
                    self._in_flight[self.batches] = frames
                    self.requests.submit([f.image for f, _ in frames], tag=self.batches)
                    self.batches += 1
                    self.frames += len(frames)
        finally:
            for result in self.requests.close():
                self._hand_over(result)
            for tag in sorted(self._held):  # (a request that failed leaves its followers here)
                self.deliver(self._held.pop(tag))
            self._apply_changes()
            for tag in sorted(self._after):
                for callback in self._after.pop(tag):
                    callback()

    def _to_detect(self, frames: List[Frame]) -> List[Tuple[Frame, Decision]]:
        """The frames ``decide`` sends to the detector; the others are handed on (or held behind the requests
        in flight, whose frames come first)."""
        chosen: List[Tuple[Frame, Decision]] = []
        for frame in frames:
            decision = self.decide(frame) if self.decide is not None else Decision(True)
            if decision.detect:
                chosen.append((frame, decision))
                continue
            result = FrameResult(frame, self.nothing, {"capture": frame.read_s}, detected=False,
                                 motion=decision.motion)
            if self._in_flight:
                self._held.setdefault(self.batches - 1, []).append(result)
            else:
                self.deliver([result])
        return chosen

    def _hand_on(self) -> None:
        for result in self.requests.results():
            self._hand_over(result)

    def _hand_over(self, result: RequestResult) -> None:
        frames = self._in_flight.pop(result.tag)
        self.deliver([FrameResult(frame, detections, dict(capture=frame.read_s, **result.timings),
                                  motion=decision.motion)
                      for (frame, decision), detections in zip(frames, result.detections)])
        held = self._held.pop(result.tag, None)
        if held:
            self.deliver(held)
        for callback in self._after.pop(result.tag, ()):
            callback()

    def _wait(self, timeout: float, enough: Callable[[], bool]) -> None:
        with self.wake:  # the check is made under the lock notify() takes: no wake-up is lost
            if not enough() and not self.requests.has_result:
                self.wake.wait(timeout)

    def _gather(self) -> List[Frame]:
        """One frame from each of up to ``batch`` streams, round-robin; waits up to the batch timeout after
        the first frame for more ([] when none came: the caller hands on results and comes back)."""
        order = self.captures[self._start:] + self.captures[:self._start]
        if not any(c.has_frame for c in order):
            self._wait(0.1, lambda: any(c.has_frame or c.finished for c in order))
            return []
        # Streams that may offer a frame soon: running ones (a live source still being retried will not).
        wanted = min(self.batch, sum(1 for c in order if c.has_frame or c.state == "running"))
        deadline = time.monotonic() + self.batch_timeout_s
        while sum(c.has_frame for c in order) < wanted and not self.stop.is_set():
            left = deadline - time.monotonic()
            if left <= 0:
                break
            self._wait(left, lambda: sum(c.has_frame for c in order) >= wanted)
            self._hand_on()
        chosen = [c for c in order if c.has_frame][:self.batch]
        self._start = (self.captures.index(chosen[-1]) + 1) % len(self.captures)  # the next round leads with the next
        return [frame for frame in (c.take() for c in chosen) if frame is not None]

    # -- changes while running (box/runner.py), each applied on the scheduler's thread between batches -----

    def between_batches(self, change: Callable[[], None]) -> None:
        """Run ``change`` on the scheduler's thread before its next batch, or as its run ends (not after: the
        caller checks that it runs)."""
        with self._changes_lock:
            self._changes.append(change)
        self.notify()

    def _apply_changes(self) -> None:
        with self._changes_lock:
            changes, self._changes = self._changes, []
        for change in changes:
            change()

    def add_capture(self, capture: StreamCapture) -> None:
        """Serve ``capture`` too from the next round (call between batches)."""
        self.captures = self.captures + [capture]

    def remove_capture(self, capture: StreamCapture, handed_on: Callable[[], None]) -> None:
        """Serve ``capture`` no more (call between batches); ``handed_on`` is called on this thread once every
        frame of it already taken has been delivered (its requests in flight and the frames held behind them)."""
        self.captures = [c for c in self.captures if c is not capture]
        self._start = 0
        if self._in_flight:
            self._after.setdefault(self.batches - 1, []).append(handed_on)
        else:
            handed_on()

    def replace_requests(self, requests: Requests, class_names: Sequence[str]) -> Requests:
        """Drain the requests in flight (their frames delivered), then submit to ``requests`` (call between
        batches); the old requests, closed."""
        old = self.requests
        for result in old.close():
            self._hand_over(result)
        self.requests = requests
        self.nothing = Detections.empty(class_names)
        requests.on_settled = self.notify
        return old
