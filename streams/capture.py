"""One grab thread per stream, feeding the scheduler.

Live sources hand over their newest frame: a frame the scheduler has not taken when the next one arrives
is stale, replaced and counted. Files and folders are read frame by frame and nothing is dropped: the grab
thread waits while its frame is not taken. A live source that cannot be opened at start is retried with
back-off while the other streams run; one that drops mid-run is reopened by :class:`LiveSource` itself.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from typing import Callable, Optional

import numpy as np

from runtimes.errors import UserError
from streams.config import StreamSpec
from streams.sources import CsiOptions, FileSource, FrameSource, SourceSpec, open_source, parse_source


@dataclass
class CapturedFrame:
    """A frame of one stream: its own index and capture time (seconds since that stream opened), the BGR
    image, the monotonic clock when it was captured (latency is measured from there), and how long the
    read took."""

    stream: str
    index: int
    timestamp: float
    image: np.ndarray
    captured: float
    capture_s: float


class StreamCapture:
    """The grab thread of one stream and the one frame it offers the scheduler.

    ``state`` is "opening", "running", "retrying" (a live source not opened yet), "ended" or "failed".
    ``notify`` is called whenever a frame is offered or the stream ends (the scheduler's wake-up).
    """

    def __init__(self, spec: StreamSpec, csi: CsiOptions, realtime: bool = False, max_frames: int = 0,
                 log: Callable[[str], None] = print, notify: Callable[[], None] = lambda: None,
                 retry_s: float = 1.0, max_retry_s: float = 16.0) -> None:
        self.spec, self.log, self.notify = spec, log, notify
        self.name = spec.name
        self.realtime, self.max_frames = realtime, max_frames
        self.retry_s, self.max_retry_s = retry_s, max_retry_s
        self.source_spec: SourceSpec = parse_source(spec.source, csi)
        self.live = self.source_spec.live
        self.source: Optional[FrameSource] = None
        self.state = "opening"
        self.error: Optional[str] = None
        self.frames_read = 0
        self.stale = 0  # live frames replaced before the scheduler took them
        self.open_retries = 0
        self._slot: Optional[CapturedFrame] = None
        self._cond = threading.Condition()
        self._stop = threading.Event()
        self._thread: Optional[threading.Thread] = None

    # -- opening --------------------------------------------------------------------------------------

    def open(self) -> bool:
        """First attempt to open the source, on the caller's thread; False (and ``error`` set) if it fails."""
        try:
            self.source = open_source(self.source_spec, self.realtime, self.log)
        except UserError as exc:
            self.error = str(exc)
            self.state = "retrying" if self.live else "failed"
            return False
        self.state, self.error = "running", None
        return True

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name=f"capture-{self.name}", daemon=True)
        self._thread.start()

    @property
    def fps(self) -> float:
        """The source's own frame rate (files), else 30."""
        return self.source.fps if isinstance(self.source, FileSource) else 30.0

    @property
    def description(self) -> str:
        return self.source.description if self.source is not None else self.spec.source

    @property
    def dropped(self) -> int:
        """Stale live frames: replaced in the source's grabber or here before they were used."""
        return self.stale + int(getattr(self.source, "dropped", 0))

    @property
    def reopens(self) -> int:
        return int(getattr(self.source, "reopens", 0))

    # -- the grab thread ------------------------------------------------------------------------------

    def _run(self) -> None:
        try:
            if self.source is None and not self._retry_open():
                return
            assert self.source is not None
            while not self._stop.is_set():
                started = time.perf_counter()
                item = self.source.read()
                if item is None:
                    break
                index, timestamp, image = item
                frame = CapturedFrame(self.name, index, timestamp, image, time.monotonic(),
                                      time.perf_counter() - started)
                if not self._offer(frame):
                    break
                self.frames_read += 1
                if self.max_frames and self.frames_read >= self.max_frames:
                    break
        except Exception as exc:  # a source that breaks ends its stream, not the app
            self.error = f"{type(exc).__name__}: {exc}"
            self.log(f"stream {self.name}: {self.error}")
        finally:
            with self._cond:
                if self.state == "running":
                    self.state = "ended"
                self._cond.notify_all()
            self.notify()

    def _retry_open(self) -> bool:
        wait = self.retry_s
        while not self._stop.wait(wait):
            self.open_retries += 1
            try:
                self.source = open_source(self.source_spec, self.realtime, self.log)
            except UserError as exc:
                self.error = str(exc)
                wait = min(self.max_retry_s, wait * 2)
                self.log(f"stream {self.name}: still cannot open {self.spec.source}; retrying in {wait:.0f} s")
                continue
            self.state, self.error = "running", None
            self.log(f"stream {self.name}: opened {self.source.description} after {self.open_retries} retries")
            return True
        return False

    def _offer(self, frame: CapturedFrame) -> bool:
        """Put ``frame`` in the slot: live frames replace an untaken one, file frames wait for it to be taken.
        False when stopped."""
        with self._cond:
            if self.live:
                if self._slot is not None:
                    self.stale += 1
            else:
                while self._slot is not None and not self._stop.is_set():
                    self._cond.wait(timeout=0.2)
                if self._stop.is_set():
                    return False
            self._slot = frame
        self.notify()
        return True

    # -- the scheduler's side -------------------------------------------------------------------------

    def take(self) -> Optional[CapturedFrame]:
        """The offered frame (None when there is none yet), which frees the slot for the next."""
        with self._cond:
            frame, self._slot = self._slot, None
            self._cond.notify_all()
        return frame

    @property
    def has_frame(self) -> bool:
        return self._slot is not None

    @property
    def finished(self) -> bool:
        """Ended or failed, with no frame left to take."""
        return self.state in ("ended", "failed") and self._slot is None

    def stop(self) -> None:
        self._stop.set()
        with self._cond:
            self._cond.notify_all()

    def close(self) -> None:
        self.stop()
        if self._thread is not None:
            self._thread.join(timeout=5)
        if self.source is not None:
            self.source.close()
