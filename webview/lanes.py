"""A lane: at most ``threads`` jobs at once and at most ``backlog`` waiting; a job past both is refused, never
queued without bound. Threads start when there is work and end when there is none, so an idle server holds
none, and a busy one never more than its lanes' ``threads`` in all."""

from __future__ import annotations

import threading
from collections import deque
from typing import Callable, Deque

Job = Callable[[], None]


class Lane:
    def __init__(self, name: str, threads: int, backlog: int = 0) -> None:
        self.name, self.threads, self.backlog = name, max(1, int(threads)), max(0, int(backlog))
        self._lock = threading.Lock()
        self._waiting: Deque[Job] = deque()
        self._running = 0
        self._started = 0

    @property
    def running(self) -> int:
        return self._running

    def submit(self, job: Job) -> bool:
        """Run ``job`` on a thread of this lane, now or after the jobs before it; False when the lane is full."""
        with self._lock:
            if self._running >= self.threads:
                if len(self._waiting) >= self.backlog:
                    return False
                self._waiting.append(job)
                return True
            self._running += 1
            self._started += 1
            name = f"webview-{self.name}-{self._started}"
        threading.Thread(target=self._work, args=(job,), name=name, daemon=True).start()
        return True

    def _work(self, job: Job) -> None:
        while True:
            try:
                job()
            except Exception:  # a job reports its own errors; this thread must go on to the next one
                pass
            with self._lock:
                if not self._waiting:
                    self._running -= 1
                    return
                job = self._waiting.popleft()
