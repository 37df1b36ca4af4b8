"""The live view as the observer of every model's pipeline. Each pipeline reports the statuses of its own
streams only (about once a second), and :meth:`webview.live.LiveView.on_status` takes the whole box's, each
call replacing the last: given the pipelines' reports as they come, the view would find another model's
streams missing every other second and fail them in /healthz (and the systemd watchdog would restart a
healthy box). Merged here instead; a stream whose pipeline has stopped reporting is left out once its last
report is older than the view's status time-out, so /healthz fails it as before."""

from __future__ import annotations

import threading
import time
from typing import Any, Dict, Tuple

import numpy as np

from webview.live import STATUS_TIMEOUT_S


class MergedStatuses:
    """Forwards to ``view`` (a LiveView) what the pipelines tell it, their statuses merged."""

    def __init__(self, view: Any, stale_s: float = STATUS_TIMEOUT_S) -> None:
        self.view, self.stale_s = view, stale_s
        self._latest: Dict[str, Tuple[float, Dict[str, Any]]] = {}  # stream -> (when reported, status)
        self._lock = threading.Lock()

    def on_frame(self, stream: str, frame: np.ndarray, record: Dict[str, Any]) -> None:
        self.view.on_frame(stream, frame, record)

    def on_status(self, statuses: Dict[str, Dict[str, Any]]) -> None:
        now = time.monotonic()
        with self._lock:
            self._latest.update((name, (now, status)) for name, status in statuses.items())
            fresh = {name: status for name, (when, status) in self._latest.items() if now - when <= self.stale_s}
        self.view.on_status(fresh)

    def on_stream_added(self, name: str) -> None:
        self.view.on_stream_added(name)

    def on_stream_removed(self, name: str) -> None:
        with self._lock:
            self._latest.pop(name, None)
        self.view.on_stream_removed(name)
