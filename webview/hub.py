"""The newest annotated frame of every stream, and its JPEG, for web viewers and snapshots.

The pipeline hands each frame over with :meth:`FrameHub.publish` on its output thread. That call only swaps a
reference and wakes waiting viewers: it never encodes, never waits for a viewer, never queues. A frame is
JPEG-encoded lazily, by the first viewer or snapshot that asks for it, at most once per frame (the others reuse
the bytes). A viewer that reads slowly or not at all simply finds a newer frame when it is ready again: the
frames in between are skipped (counted in ``skipped``), never queued.

Frames are (H, W, 3) uint8 BGR arrays. The hub keeps a reference, not a copy: the caller must not write into a
frame after publishing it (the camera pipeline hands over a new array per frame).
"""

from __future__ import annotations

import threading
import time
from collections import deque
from typing import Deque, Dict, List, Optional, Tuple

import numpy as np

DEFAULT_JPEG_QUALITY = 80


class StreamSlot:
    """One stream's newest frame (``seq`` counts the frames published) and the JPEG of the last one encoded."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.lock = threading.Lock()
        self.changed = threading.Condition(self.lock)
        self.frame: Optional[np.ndarray] = None
        self.seq = 0
        self.arrivals: Deque[float] = deque(maxlen=30)  # monotonic times of the last frames, for a fallback FPS
        self.encode_lock = threading.Lock()  # one encoder at a time per stream; publish() never takes it
        self.jpeg = b""
        self.jpeg_seq = 0
        self.encodes = 0
        self.sent = 0  # frames written to viewers (one per viewer and frame)
        self.skipped = 0  # frames a viewer never got because it was still busy with an earlier one
        self.viewers = 0


class FrameHub:
    """Latest frame per stream; JPEGs on demand. Thread-safe; :meth:`publish` never blocks on a viewer."""

    def __init__(self, stream_names: List[str], jpeg_quality: int = DEFAULT_JPEG_QUALITY) -> None:
        self.jpeg_quality = int(jpeg_quality)
        self._slots: Dict[str, StreamSlot] = {name: StreamSlot(name) for name in stream_names}
        self._add_lock = threading.Lock()
        self._closed = False

    @property
    def names(self) -> List[str]:
        return list(self._slots)

    def slots(self) -> List[StreamSlot]:
        return list(self._slots.values())

    def slot(self, name: str) -> Optional[StreamSlot]:
        return self._slots.get(name)

    def _slot_for(self, name: str) -> StreamSlot:
        slot = self._slots.get(name)
        if slot is None:  # a stream not named at start (rare): added once, under a lock
            with self._add_lock:
                slot = self._slots.get(name)
                if slot is None:
                    slot = StreamSlot(name)
                    self._slots = {**self._slots, name: slot}  # readers see the old or the new dict, both whole
        return slot

    def add(self, name: str) -> None:
        """A stream started at run time: served (no frame yet) before its first frame."""
        self._slot_for(name)

    def remove(self, name: str) -> None:
        """A stream stopped at run time: its slot goes and its waiting viewers wake (and end)."""
        with self._add_lock:
            slot = self._slots.get(name)
            self._slots = {key: value for key, value in self._slots.items() if key != name}
        if slot is not None:
            with slot.lock:
                slot.changed.notify_all()

    def publish(self, name: str, frame: np.ndarray) -> int:
        """Make ``frame`` the newest of stream ``name``; returns its sequence number (1, 2, ...)."""
        slot = self._slot_for(name)
        with slot.lock:
            slot.frame = frame
            slot.seq += 1
            slot.arrivals.append(time.monotonic())
            slot.changed.notify_all()
            return slot.seq

    def newest(self, name: str) -> Tuple[int, Optional[np.ndarray]]:
        """(sequence number, frame) of the newest frame; (0, None) before the first."""
        slot = self._slots.get(name)
        if slot is None:
            return 0, None
        with slot.lock:
            return slot.seq, slot.frame

    def fps(self, name: str) -> float:
        """Arrival rate over the last (up to 30) frames; 0.0 with fewer than two."""
        slot = self._slots.get(name)
        if slot is None:
            return 0.0
        with slot.lock:
            times = list(slot.arrivals)
        if len(times) < 2 or times[-1] <= times[0]:
            return 0.0
        return (len(times) - 1) / (times[-1] - times[0])

    def jpeg(self, name: str) -> Tuple[int, bytes]:
        """(sequence number, JPEG bytes) of the newest frame, encoding it unless it was already; (0, b"")
        before the first frame. Runs on the asking (viewer) thread."""
        slot = self._slots.get(name)
        if slot is None:
            return 0, b""
        with slot.encode_lock:
            with slot.lock:
                seq, frame = slot.seq, slot.frame
            if frame is None:
                return 0, b""
            if slot.jpeg_seq != seq:
                import cv2

                ok, buffer = cv2.imencode(".jpg", frame, [int(cv2.IMWRITE_JPEG_QUALITY), self.jpeg_quality])
                if not ok:
                    return 0, b""
                slot.jpeg, slot.jpeg_seq = buffer.tobytes(), seq
                slot.encodes += 1
            return slot.jpeg_seq, slot.jpeg

    def wait_newer(self, name: str, seq: int, timeout: float) -> bool:
        """Wait until stream ``name`` has a frame newer than ``seq``; False on time-out or when closed."""
        slot = self._slots.get(name)
        if slot is None:
            return False
        with slot.lock:
            if slot.seq <= seq and not self._closed:
                slot.changed.wait(timeout)
            return slot.seq > seq and not self._closed

    def viewer(self, name: str, delta: int) -> None:
        slot = self._slots.get(name)
        if slot is not None:
            with slot.lock:
                slot.viewers += delta

    def delivered(self, name: str, skipped: int) -> None:
        """A viewer sent one frame, after skipping ``skipped`` newer-than-its-last ones it was too busy for."""
        slot = self._slots.get(name)
        if slot is not None:
            with slot.lock:
                slot.sent += 1
                slot.skipped += max(0, skipped)

    @property
    def closed(self) -> bool:
        return self._closed

    def close(self) -> None:
        """Wake every waiting viewer; they end."""
        self._closed = True
        for slot in self._slots.values():
            with slot.lock:
                slot.changed.notify_all()
