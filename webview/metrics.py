"""Prometheus metrics of the camera pipeline, per stream (label ``stream``), on a registry of their own.

From every frame record (:meth:`PipelineMetrics.observe`): frames, detections, events seen, per-stage latency
histograms (``stage`` = capture, preprocess, inference, postprocess, draw, ...), inference time and the
capture-to-result latency. From the status the pipeline reports about once a second, collected when scraped:
stale frames dropped, reopens, events sent and failed, FPS, latency p50/p95, alive, zone/line counts. From the
web view itself: viewers, JPEG encodes and frames viewers skipped.

docs/webview.md lists the metric names.
"""

from __future__ import annotations

import numbers
import threading
from typing import Any, Callable, Dict, Iterator, List, Optional, Tuple

# Seconds: from half a millisecond (a post-processor on a Jetson) to seconds (SSD512 on a CPU).
STAGE_BUCKETS = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0)


def _number(value: Any) -> Optional[float]:
    """int, float and numpy's scalars (np.int64 is no int) as a float; None for anything else, bool too."""
    return float(value) if isinstance(value, numbers.Real) and not isinstance(value, bool) else None


def flatten_counts(counts: Any, prefix: str = "") -> Dict[str, float]:
    """{"door": {"in": 3, "out": 1}, "zone": 2} -> {"door.in": 3, "door.out": 1, "zone": 2}; non-numbers dropped."""
    out: Dict[str, float] = {}
    number = _number(counts)
    if isinstance(counts, dict):
        for key, value in counts.items():
            out.update(flatten_counts(value, f"{prefix}{key}."))
    elif number is not None and prefix:
        out[prefix[:-1]] = number
    return out


class PipelineMetrics:
    """The registry behind ``/metrics``. :meth:`observe` runs on the pipeline's output thread (a few µs)."""

    def __init__(self, status: Callable[[], Dict[str, dict]], view_state: Callable[[], Dict[str, dict]],
                 component_counters: Callable[[], Dict[str, Dict[str, float]]] = dict) -> None:
        """``status()``: the latest status per stream (the brief's dicts); ``view_state()``: per stream
        {"viewers", "encodes", "sent", "skipped"} from the frame hub; ``component_counters()``: per component
        of the box (``recording``) its counters by name."""
        import prometheus_client
        from prometheus_client import CollectorRegistry, Counter, Histogram

        if hasattr(prometheus_client, "disable_created_metrics"):  # 0.17+: no *_created series beside each one
            prometheus_client.disable_created_metrics()
        self.registry = CollectorRegistry(auto_describe=True)
        self.frames = Counter("ssd_edge_frames", "Frames processed", ["stream"], registry=self.registry)
        self.detections = Counter("ssd_edge_detections", "Detections reported", ["stream"], registry=self.registry)
        self.events = Counter("ssd_edge_events", "Analytics events in the frame records", ["stream"],
                              registry=self.registry)
        self.stage = Histogram("ssd_edge_stage_seconds", "Time per pipeline stage and frame", ["stream", "stage"],
                               buckets=STAGE_BUCKETS, registry=self.registry)
        self.inference = Histogram("ssd_edge_inference_seconds", "Network inference time per frame", ["stream"],
                                   buckets=STAGE_BUCKETS, registry=self.registry)
        self.latency = Histogram("ssd_edge_frame_latency_seconds", "Capture to result, per frame", ["stream"],
                                 buckets=STAGE_BUCKETS, registry=self.registry)
        self.registry.register(_StatusCollector(status, view_state))
        self.registry.register(_ComponentCollector(component_counters))
        self._children: Dict[Tuple[str, str], Any] = {}
        self._lock = threading.Lock()

    def _child(self, kind: str, stream: str) -> Any:
        key = (kind, stream)
        child = self._children.get(key)
        if child is None:  # labels() looks up under a lock each time: bind once per stream and stage
            with self._lock:
                if kind.startswith("stage:"):
                    child = self.stage.labels(stream, kind[len("stage:"):])
                else:
                    child = getattr(self, kind).labels(stream)
                self._children[key] = child
        return child

    def observe(self, stream: str, record: Dict[str, Any]) -> None:
        """Count one frame record (the brief's record dict: "detections", "timings_ms", "latency_ms", "events")."""
        self._child("frames", stream).inc()
        detections = record.get("detections")
        if detections:
            self._child("detections", stream).inc(len(detections))
        events = record.get("events")
        if events:
            self._child("events", stream).inc(len(events))
        timings = record.get("timings_ms")
        if isinstance(timings, dict):
            for stage, ms in timings.items():
                seconds = _number(ms)
                if seconds is not None:
                    self._child("stage:" + str(stage), stream).observe(seconds / 1000.0)
            inference = _number(timings.get("inference"))
            if inference is not None:
                self._child("inference", stream).observe(inference / 1000.0)
        latency = _number(record.get("latency_ms"))
        if latency is not None:
            self._child("latency", stream).observe(latency / 1000.0)

    def exposition(self) -> bytes:
        """The Prometheus text format of everything above."""
        from prometheus_client import generate_latest

        return generate_latest(self.registry)


# (metric name without _total, help, status key, counter?)
_STATUS_METRICS: List[Tuple[str, str, str, bool]] = [
    ("ssd_edge_dropped_stale_frames", "Stale frames a live source dropped", "dropped_stale_frames", True),
    ("ssd_edge_reopens", "Times a source was reopened", "reopens", True),
    ("ssd_edge_events_sent", "Events delivered by the sinks", "events_sent", True),
    ("ssd_edge_events_failed", "Events the sinks could not deliver", "events_failed", True),
    ("ssd_edge_stream_fps", "Frames per second (the pipeline's own window)", "fps", False),
    ("ssd_edge_latency_p50_ms", "Capture-to-result latency, median, milliseconds", "latency_p50_ms", False),
    ("ssd_edge_latency_p95_ms", "Capture-to-result latency, 95th percentile, milliseconds", "latency_p95_ms", False),
]


class _StatusCollector:
    """Reads the latest statuses and the hub's counters when scraped (nothing to update on the hot path)."""

    def __init__(self, status: Callable[[], Dict[str, dict]], view_state: Callable[[], Dict[str, dict]]) -> None:
        self._status, self._view_state = status, view_state

    def collect(self) -> Iterator[Any]:
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

        statuses = self._status()
        for name, help_text, key, is_counter in _STATUS_METRICS:
            family = (CounterMetricFamily if is_counter else GaugeMetricFamily)(name, help_text, labels=["stream"])
            for stream, status in statuses.items():
                value = _number(status.get(key))
                if value is not None:
                    family.add_metric([stream], value)
            yield family
        alive = GaugeMetricFamily("ssd_edge_stream_alive", "1 while the stream delivers frames", labels=["stream"])
        counts = GaugeMetricFamily("ssd_edge_count", "Zone and line counts (name: zone, or line.direction)",
                                   labels=["stream", "name"])
        for stream, status in statuses.items():
            alive.add_metric([stream], 1.0 if status.get("alive") else 0.0)
            for count_name, value in flatten_counts(status.get("counts")).items():
                counts.add_metric([stream, count_name], value)
        yield alive
        yield counts
        view = self._view_state()
        viewers = GaugeMetricFamily("ssd_edge_viewers", "Open MJPEG viewers", labels=["stream"])
        encodes = CounterMetricFamily("ssd_edge_jpeg_encodes", "Frames JPEG-encoded for viewers and snapshots",
                                      labels=["stream"])
        sent = CounterMetricFamily("ssd_edge_viewer_frames_sent", "Frames written to viewers (per viewer and frame)",
                                   labels=["stream"])
        skipped = CounterMetricFamily("ssd_edge_viewer_skipped_frames",
                                      "Frames a viewer skipped because it was still sending an earlier one",
                                      labels=["stream"])
        for stream, state in view.items():
            viewers.add_metric([stream], float(state["viewers"]))
            encodes.add_metric([stream], float(state["encodes"]))
            sent.add_metric([stream], float(state["sent"]))
            skipped.add_metric([stream], float(state["skipped"]))
        yield viewers
        yield encodes
        yield sent
        yield skipped

    def describe(self) -> Iterator[Any]:
        return iter(())  # families depend on the streams seen; nothing to check at registration


class _ComponentCollector:
    """Other parts of the box, read when scraped: counter C of component N is ``ssd_edge_N_C_total``."""

    def __init__(self, counters: Callable[[], Dict[str, Dict[str, float]]]) -> None:
        self._counters = counters

    def collect(self) -> Iterator[Any]:
        from prometheus_client.core import CounterMetricFamily

        for component, counters in self._counters().items():
            for counter, value in counters.items():
                number = _number(value)
                if number is not None:
                    family = CounterMetricFamily(f"ssd_edge_{component}_{counter}", f"{component}: {counter}")
                    family.add_metric([], number)
                    yield family

    def describe(self) -> Iterator[Any]:
        return iter(())
