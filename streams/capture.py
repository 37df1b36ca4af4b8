"""One capture layer per stream: a grab thread that opens the stream's source, reads it and offers the
scheduler its :class:`~streams.frame.Frame` s, oldest first; one retry policy and one dropped count.

Live sources (cameras, RTSP, HTTP, pipelines) keep the frames the scheduler has not taken yet for at most
``max_wait_s`` (and as many as the source sends in that time): an older one is stale, dropped and counted
(``dropped``). A frame is decoded before it waits, so a burst (a key frame, a moment of motion, a request
that ran long) that the box catches up on within the wait costs no frame; with ``max_wait_s`` 0 only the
newest frame waits, the least latency. Files and folders are read frame by frame and nothing is dropped: the
grab thread waits while its frame is not taken. Files played ``realtime`` are read like cameras: at their own
pace, waiting as a live frame does, the frames the reader itself is late for skipped (counted too, from the
gaps in its frame numbers); they start their clocks at one instant, once every such stream has made its first
attempt to open (:class:`StartTogether`), so none drops frames while the others open.
Either way what a stream holds is bounded: when the box cannot keep up, frames are dropped at the source,
never queued beyond the wait, and the scheduler's rotation shares what it serves among the streams. A live
source that cannot be opened, fails, or delivers no frame within ``timeout_s`` (its reader gives up then,
streams/sources.py)
is opened again after :class:`RetryPolicy`'s wait, which doubles up to its maximum and starts over after a
frame; the run goes on with the other streams meanwhile.

Only the grab thread opens, reads and releases its source, so a source that blocks inside a call never
blocks the app: :meth:`StreamCapture.close` waits a bounded time and leaves such a thread to end on its own.
"""

from __future__ import annotations

import collections
import math
import os
import sys
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator, List, Optional, Sequence, Tuple

import numpy as np

from runtimes.errors import UserError
from streams.config import StreamSpec
from streams.decoding import MAX_DECODER_THREADS
from streams.frame import Frame
from streams.sources import (
    DEFAULT_TIMEOUT_S,
    CsiOptions,
    FrameReader,
    PlannedSource,
    SourceSpec,
    open_reader,
    parse_source,
    plan_source,
)

THREAD_PREFIX = "capture-"  # the grab threads' names
# How long a live frame may wait for the scheduler. Dropping a decoded frame throws away the CPU that went into
# decoding it (most of a 1080p camera's); 120 ms is 3 frames at 25 FPS, and keeps the p95 latency (capture to
# result) within the 200 ms benchmarks/cameras.py allows (docs/multistream.md, "Frames waiting; one decoder
# thread a camera").
DEFAULT_MAX_WAIT_S = 0.12


@dataclass(frozen=True)
class RetryPolicy:
    """How a live source is opened again: after ``first_s`` seconds, the wait doubling up to ``max_s``."""

    first_s: float = 0.5
    max_s: float = 16.0

    def waits(self) -> Iterator[float]:
        wait = self.first_s
        while True:
            yield wait
            wait = min(self.max_s, wait * 2)


class StartTogether:
    """One clock start for the realtime file streams of one run: each joins when its capture is made and,
    once opened, waits (at most ``limit_s`` from its own wait, ended early by a stop) until every stream that
    joined has made its first attempt to open; they all get the same instant. A stream joining after that
    instant (added to a running box) keeps its own clock."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._joined: List["StreamCapture"] = []
        self.instant: Optional[float] = None

    def join(self, capture: "StreamCapture") -> bool:
        with self._lock:
            if self.instant is not None:
                return False
            self._joined.append(capture)
            return True

    def wait(self, stop: threading.Event, limit_s: float) -> float:
        deadline = time.monotonic() + limit_s
        while True:
            with self._lock:
                if self.instant is None and (all(c.attempted.is_set() for c in self._joined)
                                             or time.monotonic() >= deadline or stop.is_set()):
                    self.instant, self._joined = time.monotonic(), []
                if self.instant is not None:
                    return self.instant
            stop.wait(0.01)  # (opening takes tens of milliseconds a stream or more)


@dataclass(frozen=True)
class CaptureOptions:
    """How every stream is captured: ``realtime`` files at their own pace, at most ``max_frames`` frames a
    stream (0: no limit), ``timeout_s`` without a frame before a live source is reopened, ``retry``, and
    ``max_wait_s`` a live (or realtime) frame may wait for the scheduler before it is dropped as stale."""

    realtime: bool = False
    max_frames: int = 0
    timeout_s: float = DEFAULT_TIMEOUT_S
    max_wait_s: float = DEFAULT_MAX_WAIT_S
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    # Decoding plans (streams/decoding.py) for files and rtsp:// on a GStreamer OpenCV, frames scaled to
    # decode_size before Python (None: the full frame, for outputs that draw), a software decoder's threads.
    decode: bool = False
    decode_size: Optional[Tuple[int, int]] = None
    decode_threads: int = MAX_DECODER_THREADS
    # A reader in place of the usual one (recording's tap with --record, apps/camera.py): given the stream's
    # name and source, a FrameReader-like object or None (the usual reader). A reader with ``time_s`` (the
    # frame's stream time) gives the frames their timestamps, so events and its encoded video share a clock.
    reader_for: Optional[Callable[[str, SourceSpec], Any]] = None
    # Shared by every capture made with these options (dataclasses.replace keeps it): see StartTogether.
    start_together: StartTogether = field(default_factory=StartTogether, compare=False, repr=False)


@dataclass(frozen=True)
class StreamSource:
    """A stream's name and how to open its source."""

    name: str
    source: SourceSpec


def parse_streams(specs: Sequence[StreamSpec], csi: CsiOptions) -> List[StreamSource]:
    """Every stream's source parsed (UserError naming a bad one), before anything is opened or loaded."""
    streams = []
    for spec in specs:
        try:
            streams.append(StreamSource(spec.name, parse_source(spec.source, csi)))
        except UserError as exc:
            raise UserError(f"stream {spec.name}: {exc}") from None
    return streams


class StreamCapture:
    """The grab thread of one stream and the one frame it offers the scheduler.

    ``state`` is "opening" (the first attempt under way), "running", "retrying" (a live source waiting to be
    opened again), "ended" or "failed" (a file that cannot be opened, or an error in the source).
    ``notify`` is called whenever a frame is offered or the state changes (the scheduler's wake-up).
    """

    def __init__(self, stream: StreamSource, options: CaptureOptions, log: Callable[[str], None] = print,
                 notify: Callable[[], None] = lambda: None) -> None:
        self.name, self.source, self.options, self.log, self.notify = stream.name, stream.source, options, log, notify
        self.live = self.source.live
        realtime_file = options.realtime and not self.live and self.source.folder is None  # (folders: no pace)
        self.paced = self.live or realtime_file  # frames come at the source's pace and go stale (else: waits)
        self.state = "opening"
        self.error: Optional[str] = None
        self.description = self.source.text
        self.fps = 30.0  # the source's own frame rate once a file is open
        self.frames_read = 0
        self.dropped = 0  # frames gone stale before the scheduler took them, or a realtime file skipped
        self.reopens = 0  # times a live source was opened again after it was lost
        self.attempted = threading.Event()  # set once the first attempt to open has succeeded or failed
        self._waiting: "collections.deque[Frame]" = collections.deque()  # oldest first
        self._cond = threading.Condition()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"{THREAD_PREFIX}{self.name}", daemon=True)
        self._start: Optional[float] = None  # when the stream first opened: frame timestamps count from here
        self._last_frame = 0.0
        self._next_index = 0  # the stream's number for the next reader's first frame
        self._planned: Optional[PlannedSource] = None  # the source with its decoding plans, made once
        self._together = realtime_file and options.start_together.join(self)

    def start(self) -> None:
        self._thread.start()

    # -- the grab thread ------------------------------------------------------------------------------

    def _run(self) -> None:
        try:
            self._capture()
        except Exception as exc:  # a source that breaks ends its stream, not the app
            self.error = f"{type(exc).__name__}: {exc}"
            self.log(f"stream {self.name}: {self.error}")
            self._set_state("failed")
        finally:
            self.attempted.set()
            if self.state != "failed":
                self._set_state("ended")

    def _capture(self) -> None:
        """Open, read until the end (or a live failure), reopen live sources as the retry policy says."""
        waits = self.options.retry.waits()
        lost = 0.0  # when the last reader was lost (0: none was yet)
        while not self._stop.is_set():
            first = not self.attempted.is_set()
            reader = self._open()
            if reader is not None and first and self._together:
                self._start_with_the_others(reader)
            if reader is not None:
                if lost:
                    self.reopens += 1
                    self.log(f"stream {self.name}: reopened {self.source.text} after a "
                             f"{time.monotonic() - (self._last_frame or lost):.1f} s gap")
                frames = self.frames_read
                try:
                    over = self._read(reader)
                finally:
                    reader.close()
                if over:
                    return
                lost = time.monotonic()
                if self.frames_read > frames:  # it delivered: the next failure waits the first wait again
                    waits = self.options.retry.waits()
                wait = next(waits)
                ago = f"{lost - self._last_frame:.1f} s ago" if self._last_frame else "none yet"
                self.log(f"stream {self.name}: lost {self.source.text} (last frame {ago}); reopening in {wait:g} s")
            elif not self.live:
                self._set_state("failed")
                return
            else:
                wait = next(waits)
                if not first:  # the first failure is the pipeline's to report
                    self.log(f"stream {self.name}: still cannot open {self.source.text}; retrying in {wait:g} s")
            self._set_state("retrying")
            if self._stop.wait(wait):
                return

    def _open(self) -> Optional[FrameReader]:
        try:
            special = self.options.reader_for(self.name, self.source) if self.options.reader_for else None
            if special is not None:
                self._planned = PlannedSource(self.source, None)
            elif self._planned is None:  # probing may take the timeout: on this thread, once
                self._planned = (plan_source(self.source, self.options.decode_size, self.options.timeout_s,
                                             threads=self.options.decode_threads)
                                 if self.options.decode else PlannedSource(self.source, None))
            reader: Optional[FrameReader] = special or open_reader(self._planned.spec, self.options.realtime,
                                                                   self.options.timeout_s, self.log)
        except UserError as exc:
            self.error, reader = str(exc), None
        if reader is not None:
            self.error, self.description, self.fps = None, reader.description, reader.fps
            self._start = self._start or time.monotonic()
            self._set_state("running")
        self.attempted.set()
        return reader

    def _start_with_the_others(self, reader: FrameReader) -> None:
        """Wait for the other realtime streams to open (bounded as the pipeline's wait for them is), then
        count this one's frames (their timestamps too) from the instant they share."""
        at = self.options.start_together.wait(self._stop, 2 * self.options.timeout_s + 1.0)
        start_clock = getattr(reader, "start_clock", None)
        if start_clock is not None:
            start_clock(at)
        self._start = at

    def _read(self, reader: FrameReader) -> bool:
        """Offer ``reader``'s frames until it ends; True when the stream is over (a file's end, max_frames,
        stop), False when a live source failed or gave up waiting for a frame."""
        assert self._start is not None
        last = -1
        counted_lost = 0
        while not self._stop.is_set():
            started = time.perf_counter()
            got = reader.read()
            if got is None:
                break
            if got[0] > last + 1:  # a realtime file skipped the frames it was late for
                self.dropped += got[0] - last - 1
            lost = getattr(reader, "lost", 0)  # and those it was too late for to decode
            self.dropped += lost - counted_lost
            counted_lost = lost
            last, image = got
            now = time.monotonic()
            stream_time = getattr(reader, "time_s", None)
            timestamp = now - self._start if stream_time is None else stream_time
            frame = Frame(self.name, self._next_index + last, timestamp, image, now,
                          time.perf_counter() - started, self._source_size(image))
            if not self._offer(frame):
                return True
            self.frames_read += 1
            if self.options.max_frames and self.frames_read >= self.options.max_frames:
                return True
        self._next_index += last + 1
        return self._stop.is_set() or not self.live

    def _source_size(self, image: np.ndarray) -> Optional[Tuple[int, int]]:
        """The probed source size when ``image`` was scaled to another (a plan opened, not a fallback)."""
        size = self._planned.size if self._planned is not None else None
        return size if size is not None and size != (image.shape[1], image.shape[0]) else None

    def _offer(self, frame: Frame) -> bool:
        """Queue ``frame``: a paced stream drops its oldest frame beyond what ``max_wait_s`` holds at the
        source's rate, a file waits for its frame to be taken. False when stopped."""
        with self._cond:
            if self.paced:
                if len(self._waiting) >= max(1, math.ceil(self.options.max_wait_s * self.fps)):
                    self._waiting.popleft()
                    self.dropped += 1
            else:
                while self._waiting and not self._stop.is_set():
                    self._cond.wait(timeout=0.2)
                if self._stop.is_set():
                    return False
            self._waiting.append(frame)
            self._last_frame = frame.captured
        self.notify()
        return True

    def _set_state(self, state: str) -> None:
        with self._cond:
            self.state = state
            self._cond.notify_all()
        self.notify()

    # -- the scheduler's side -------------------------------------------------------------------------

    def take(self) -> Optional[Frame]:
        """The oldest frame waiting (None when there is none yet); a paced stream's frames that waited longer
        than ``max_wait_s`` are dropped first, its newest kept."""
        with self._cond:
            if self.paced:
                stale = time.monotonic() - self.options.max_wait_s
                while len(self._waiting) > 1 and self._waiting[0].captured < stale:
                    self._waiting.popleft()
                    self.dropped += 1
            frame = self._waiting.popleft() if self._waiting else None
            self._cond.notify_all()
        return frame

    @property
    def has_frame(self) -> bool:
        return bool(self._waiting)

    @property
    def finished(self) -> bool:
        """Ended or failed, with no frame left to take."""
        return self.state in ("ended", "failed") and not self._waiting

    def stop(self) -> None:
        self._stop.set()
        with self._cond:
            self._cond.notify_all()

    def close(self, timeout: float = 1.0) -> bool:
        """Stop, and wait up to ``timeout`` seconds for the grab thread. False when it is still inside a call
        to its source that blocks: that daemon thread releases the source when the call returns, or ends
        with the process."""
        self.stop()
        if self._thread.is_alive():
            self._thread.join(timeout)
        return not self._thread.is_alive()


def exit_past_stuck_sources(code: int) -> None:
    """End the process with ``code``. When a grab thread is still inside its source's call (left behind by
    :meth:`StreamCapture.close`), the interpreter's shutdown would abort in OpenCV's GStreamer backend
    ("terminate called without an active exception", exit 134) after a run whose outputs are all written:
    then stdout and stderr are flushed and the process ends at once."""
    stuck = [t for t in threading.enumerate() if t.name.startswith(THREAD_PREFIX) and t.is_alive()]
    if stuck:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    sys.exit(code)
