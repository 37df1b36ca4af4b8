"""LiveView: what the camera pipeline calls. It feeds the frame hub, the metrics and the page state, and owns the
HTTP server and the RTSP output (either may be off).

    view = LiveView(["cam0", "cam1"], serve=("127.0.0.1", 8080), token=None)
    view.on_frame("cam0", annotated_bgr, record)     # output thread, every frame; returns in microseconds
    view.on_status({"cam0": status, "cam1": status})  # about once a second
    view.set_control(control)                         # the /api routes (webview/api.py) call it
    view.on_stream_added("cam2"); view.on_stream_removed("cam0")   # streams changed while it runs
    view.close()

``record`` and the status dicts are the camera pipeline's (docs/webview.md): the record's "frame",
"detections", "timings_ms", "latency_ms" and optional "events" and "counts"; the status's "frames", "fps",
"latency_p50_ms", "latency_p95_ms", "dropped_stale_frames", "reopens", "alive", "error" and optional
"events_sent", "events_failed", "counts".
"""

from __future__ import annotations

import threading
import time
from collections import deque
from typing import Any, Deque, Dict, List, Optional, Protocol, Tuple

import numpy as np

from runtimes.errors import UserError
from webview.gate import Limits
from webview.hub import DEFAULT_JPEG_QUALITY, FrameHub

RECENT_EVENTS = 12
STATUS_TIMEOUT_S = 5.0  # no status for this long: the pipeline itself has stalled, every stream fails /healthz


class _StreamView:
    """What the page shows of one stream beside its video, updated per frame without locks (one writer)."""

    def __init__(self) -> None:
        self.frame_index = -1
        self.size: Tuple[int, int] = (0, 0)  # (width, height)
        self.detections = 0
        self.latencies_ms: Deque[float] = deque(maxlen=100)
        self.events: Deque[Any] = deque(maxlen=RECENT_EVENTS)
        self.counts: Any = None


class Component(Protocol):
    """What :meth:`LiveView.add_component` takes (recording.Recording is one)."""

    def health(self) -> Optional[str]:
        """None while it works, else why it is paused (one line)."""

    def metrics(self) -> Dict[str, float]:
        """Its counters by name (monotonic)."""


def _percentile(values: List[float], q: float) -> Optional[float]:
    return float(np.percentile(values, q)) if values else None


class LiveView:
    """The web view and the RTSP output of a running pipeline. Thread-safe; never blocks the pipeline."""

    def __init__(self, stream_names: List[str], serve: Optional[Tuple[str, int]] = None, token: Optional[str] = None,
                 rtsp: Optional[Tuple[str, int, str]] = None, log=print, jpeg_quality: int = DEFAULT_JPEG_QUALITY,
                 limits: Limits = Limits(), status_timeout_s: float = STATUS_TIMEOUT_S) -> None:
        """``serve``: (host, port) of the HTTP server (port 0: any free one); ``rtsp``: (host, port, path) of
        the RTSP output (mount points path/STREAM with several streams, path with one); ``limits``: what the
        HTTP server allows its clients (deadlines, connections, threads)."""
        self.names = list(stream_names)
        self.hub = FrameHub(self.names, jpeg_quality)
        self._views: Dict[str, _StreamView] = {name: _StreamView() for name in self.names}
        self._statuses: Dict[str, dict] = {}
        self._status_time: Optional[float] = None
        self._status_timeout_s = status_timeout_s
        self._started = time.monotonic()
        self._lock = threading.Lock()
        self._components: Dict[str, Component] = {}
        self.control: Any = None  # what /api calls (box/control.py BoxControl); None: /api answers 503
        self.metrics: Any = None
        self.server: Any = None
        self.rtsp: Any = None
        try:
            if serve is not None:
                try:
                    from webview.metrics import PipelineMetrics
                except ImportError:
                    raise UserError("--serve needs prometheus-client: pip install prometheus-client") from None
                from webview.api import ApiEndpoints
                from webview.endpoints import LiveEndpoints
                from webview.evidence import EvidenceEndpoints
                from webview.server import WebServer

                self.metrics = PipelineMetrics(self.statuses, self.viewer_state, self.component_counters)
                page_token = token.strip() if token is not None else None  # as the server compares it
                routes = LiveEndpoints(self, page_token, limits.send_buffer_bytes).routes()
                routes += EvidenceEndpoints(self._components).routes()  # recorded events by id
                routes += ApiEndpoints(lambda: self.control).routes()
                self.server = WebServer(serve[0], serve[1], routes, token, limits, log)
            if rtsp is not None:
                from webview.rtsp import RtspOut

                self.rtsp = RtspOut(self.names, rtsp[0], rtsp[1], rtsp[2], log)
        except BaseException:
            self.close()
            raise

    @property
    def url(self) -> Optional[str]:
        return self.server.url if self.server is not None else None

    # -- the pipeline's side ------------------------------------------------------------------------------------
    def on_frame(self, stream: str, frame: np.ndarray, record: Dict[str, Any]) -> None:
        """One processed frame: (H, W, 3) uint8 BGR, annotated; kept by reference (do not write into it after)."""
        view = self._views.get(stream)
        if view is None:
            with self._lock:
                view = self._views.setdefault(stream, _StreamView())
        if self.server is not None:
            self.hub.publish(stream, frame)
            self.metrics.observe(stream, record)
        view.frame_index = int(record.get("frame", view.frame_index + 1))
        view.size = (int(frame.shape[1]), int(frame.shape[0]))
        view.detections = len(record.get("detections") or ())
        latency = record.get("latency_ms")
        if latency is not None:
            view.latencies_ms.append(float(latency))
        events = record.get("events")
        if events:
            view.events.extend(events)
        counts = record.get("counts")
        if counts is not None:
            view.counts = counts
        if self.rtsp is not None:
            self.rtsp.publish(stream, frame)

    def on_status(self, statuses: Dict[str, dict]) -> None:
        """The pipeline's status per stream, about once a second (replaces the previous one)."""
        self._statuses = {str(name): dict(status) for name, status in statuses.items()}
        self._status_time = time.monotonic()

    def add_component(self, name: str, component: "Component") -> None:
        """Another part of the box (``recording``, ...) whose state ``/healthz`` reports under "components" and
        whose counters ``/metrics`` exports as ``ssd_edge_NAME_COUNTER_total``. A component never fails the
        health check: detection goes on while it is paused, and a supervisor must not restart the box for it."""
        self._components[name] = component

    def set_control(self, control: Any) -> None:
        """The running box the /api routes change (webview/api.py); until it is set they answer 503."""
        self.control = control

    def on_stream_added(self, name: str) -> None:
        """A stream started while the box runs: shown on the page, served at /stream and /snapshot at once
        (503 until its first frame), in /healthz from now on."""
        with self._lock:
            if name not in self.names:
                self.names = self.names + [name]  # (readers iterate the old list or the new one, both whole)
            self._views.setdefault(name, _StreamView())
        self.hub.add(name)

    def on_stream_removed(self, name: str) -> None:
        """A stream stopped while the box runs: gone from the page and /healthz; its viewers' streams end."""
        with self._lock:
            self.names = [n for n in self.names if n != name]
            self._views.pop(name, None)
            self._statuses = {n: s for n, s in self._statuses.items() if n != name}
        self.hub.remove(name)

    # -- what the server asks ---------------------------------------------------------------------------------
    def component_counters(self) -> Dict[str, Dict[str, float]]:
        return {name: dict(component.metrics()) for name, component in self._components.items()}

    def statuses(self) -> Dict[str, dict]:
        return self._statuses

    def viewer_state(self) -> Dict[str, dict]:
        return {slot.name: {"viewers": slot.viewers, "encodes": slot.encodes, "sent": slot.sent,
                            "skipped": slot.skipped} for slot in self.hub.slots()}

    def health(self) -> Tuple[bool, Dict[str, Any]]:
        """(every stream delivers frames, {"status": "ok"|"failing", "failing": {stream: why}, "streams": [...]})."""
        names = list(dict.fromkeys(self.names + list(self._views) + list(self._statuses)))
        failing: Dict[str, str] = {}
        if self._status_time is None:
            failing = {name: "no status reported yet" for name in names}
        elif time.monotonic() - self._status_time > self._status_timeout_s:
            age = time.monotonic() - self._status_time
            failing = {name: f"no status for {age:.0f} s: the pipeline has stalled" for name in names}
        else:
            for name in names:
                status = self._statuses.get(name)
                if status is None:
                    failing[name] = "no status for this stream"
                elif not status.get("alive"):
                    failing[name] = f"not delivering frames: {status.get('error') or 'no error given'}"
        report: Dict[str, Any] = {"status": "failing" if failing else "ok", "failing": failing, "streams": names}
        if self._components:
            report["components"] = {name: component.health() or "ok" for name, component in self._components.items()}
        return not failing, report

    def page_state(self) -> Dict[str, Any]:
        """The page's JSON: per stream the frame counter, size, FPS, latency p50/p95, stale frames dropped,
        reopens, viewers, counts and recent events (the pipeline's status where it has one, else measured here)."""
        ok, health = self.health()
        streams = []
        views = self.viewer_state()
        for name in list(dict.fromkeys(self.names + list(self._views))):
            view = self._views.get(name) or _StreamView()
            status = self._statuses.get(name, {})
            latencies = list(view.latencies_ms)
            counts = status.get("counts", view.counts)
            streams.append({
                "name": name, "frame": view.frame_index, "frames": status.get("frames", self.hub.newest(name)[0]),
                "width": view.size[0], "height": view.size[1], "detections": view.detections,
                "fps": status.get("fps", round(self.hub.fps(name), 2)),
                "latency_p50_ms": status.get("latency_p50_ms", _percentile(latencies, 50)),
                "latency_p95_ms": status.get("latency_p95_ms", _percentile(latencies, 95)),
                "dropped_stale_frames": status.get("dropped_stale_frames"), "reopens": status.get("reopens"),
                "alive": status.get("alive"), "error": status.get("error"),
                "events_sent": status.get("events_sent"), "events_failed": status.get("events_failed"),
                "counts": counts, "events": list(view.events)[::-1],
                "viewers": views.get(name, {}).get("viewers", 0), "failing": health["failing"].get(name)})
        return {"ok": ok, "uptime_s": round(time.monotonic() - self._started, 1), "streams": streams,
                "rtsp": self.rtsp.urls() if self.rtsp is not None else {}}

    def metrics_text(self) -> bytes:
        return self.metrics.exposition()

    # -- end ----------------------------------------------------------------------------------------------------
    def close(self) -> None:
        """Stop the servers and end every viewer; bounded (about a second)."""
        self.hub.close()
        if self.server is not None:
            self.server.close()
            self.server = None
        if self.rtsp is not None:
            self.rtsp.close()
            self.rtsp = None
