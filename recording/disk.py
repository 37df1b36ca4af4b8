"""The free-space guard: recording pauses (detection goes on) while the record folder's file system has less
than the minimum free or a clip failed for want of space, and resumes when space returns. ``reason`` is what
/healthz names; ``pauses`` counts the times recording paused (a metric)."""

from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import Optional

MB = 1 << 20


def free_bytes(folder: Path) -> int:
    stats = os.statvfs(folder)
    return stats.f_bavail * stats.f_frsize


class DiskGuard:
    def __init__(self, folder: Path, min_free_bytes: int) -> None:
        self.folder = folder
        self.min_free_bytes = int(min_free_bytes)
        self.reason: Optional[str] = None
        self.pauses = 0
        self._needed = self.min_free_bytes
        self._lock = threading.Lock()

    def check(self) -> Optional[str]:
        """None when recording may go on; else why it is paused. Resumes once free space is back."""
        free = free_bytes(self.folder)
        with self._lock:
            if free >= self._needed:
                self.reason, self._needed = None, self.min_free_bytes
            elif self.reason is None:
                self._pause(f"recording paused: {free / MB:.1f} MB free under {self.folder}, "
                            f"below the {self.min_free_bytes / MB:.1f} MB it keeps free")
            return self.reason

    def failed(self, error: str, clip_bytes: int) -> None:
        """A clip could not be written for want of space: pause until there is room for the minimum and for
        as much again as the failed clip had written (so the next clip is not cut short at once)."""
        with self._lock:
            self._needed = self.min_free_bytes + int(clip_bytes)
            if self.reason is None:
                self._pause(f"recording paused: a clip failed ({error}) under {self.folder}")

    def _pause(self, reason: str) -> None:
        self.reason = reason
        self.pauses += 1
