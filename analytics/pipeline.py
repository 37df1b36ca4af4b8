"""Analytics for the camera pipeline: per stream a tracker and zone counter, shared event sinks, overlay.

:class:`Analytics` is made by :func:`analytics.cli.from_args` and called from the pipeline's output threads
(one call per processed frame; each stream from one thread at a time, different streams from different
threads at once); :meth:`Analytics.counts` may be called from any thread (the web view).
"""

from __future__ import annotations

import threading
from typing import Any, Callable, Dict, List, Optional, Protocol, Sequence, Tuple

import numpy as np

from analytics.events import Event, TrackBox
from analytics.overlay import Trails, draw_tracks, draw_zones
from analytics.sinks import JsonLinesSink, Sink
from analytics.tracker import ByteTracker, Tracks
from analytics.zone_file import StreamZones
from analytics.zones import StreamCounter


class Evidence(Protocol):
    """What records a stream's evidence (recording.recorder.StreamRecorder): every frame's tracks, and per
    event the fields to add to it (``clip``, ``snapshot``) before it goes to the sinks."""

    def on_frame(self, time_s: float) -> None: ...

    def on_tracks(self, time_s: float, image: Any, tracks: Sequence[TrackBox]) -> None: ...

    def on_event(self, event: Dict[str, Any]) -> Dict[str, str]: ...


class _Stream:
    def __init__(self, name: str, tracker: ByteTracker, counter: Optional[StreamCounter], trail_length: int) -> None:
        self.name = name
        self.tracker = tracker
        self.counter = counter
        self.trails = Trails(trail_length)
        self.seq = 0
        self.last_counts_ts: Optional[float] = None


class Analytics:
    """Tracking, zones and events for the streams named ``stream_names``.

    Args:
        class_names: the model's classes (index 0 the background).
        zones: {stream: StreamZones} from :func:`analytics.zone_file.load_zone_file`, or None (tracking only).
        sinks: where events go; ``events_file`` (also in ``sinks``) receives what the others could not deliver.
        tracker_options: keyword thresholds of :class:`analytics.tracker.ByteTracker`.
        counts_every_s: a "counts" event per stream every this many seconds of stream time (0: never).
        evidence: the stream's :class:`Evidence` by name (``recording.stream``), or None: no recording.
    """

    def __init__(self, stream_names: Sequence[str], class_names: Sequence[str],
                 zones: Optional[Dict[str, StreamZones]] = None, sinks: Sequence[Sink] = (),
                 events_file: Optional[JsonLinesSink] = None, tracker_options: Optional[Dict[str, Any]] = None,
                 counts_every_s: float = 60.0, trail_length: int = 20,
                 evidence: Optional[Callable[[str], Evidence]] = None) -> None:
        self.class_names = list(class_names)
        self.evidence = evidence
        self.sinks = list(sinks)
        self.events_file = events_file
        self.counts_every_s = counts_every_s
        if events_file is not None:
            for sink in self.sinks:
                if sink is not events_file and sink.on_undelivered is None:
                    sink.on_undelivered = events_file.record_undelivered
        options = dict(tracker_options or {})
        self._streams: Dict[str, _Stream] = {}
        for name in stream_names:
            spec = (zones or {}).get(name)
            counter = StreamCounter(name, spec, self.class_names) if spec and (spec.zones or spec.lines) else None
            self._streams[name] = _Stream(name, ByteTracker(num_classes=len(self.class_names), **options), counter,
                                          trail_length)
        self._lock = threading.Lock()
        self._closed = False

    @property
    def stream_names(self) -> List[str]:
        return list(self._streams)

    def process(self, stream: str, record: Dict[str, Any], detections: Any, frame: Optional[np.ndarray],
                draw: bool = True, detected: bool = True, size: Optional[Tuple[int, int]] = None) -> None:
        """Track and count one frame of ``stream``.

        Adds ``record["tracks"]`` ([{"id", "label", "name", "score", "box": [x1, y1, x2, y2]}]) and
        ``record["events"]`` (event dicts, see :mod:`analytics.events`), hands the events to the sinks and,
        when ``frame`` (H, W, 3 uint8 BGR) is given and ``draw``, draws tracks, zones and counts on it.
        ``record`` needs "frame" (index) and "timestamp" (s); ``detections`` is a runtimes Detections.
        A frame the detector did not see (``detected`` False: ``--interval``, ``--motion``) moves the tracks
        by the tracker's prediction alone; its tracks are marked ``"predicted": true``. ``size``: the
        (width, height) the detections' pixels refer to (the source's, when the frame was scaled in decoding);
        default the frame's.
        """
        state = self._streams.get(stream)
        if state is None:
            raise KeyError(f"stream {stream!r} was not among the streams analytics was made for")
        tracks = (state.tracker.update(detections.boxes, detections.scores, detections.labels) if detected
                  else state.tracker.predict())
        index, timestamp = int(record["frame"]), float(record["timestamp"])
        events: List[Event] = []
        if state.counter is not None:
            size = size or ((frame.shape[1], frame.shape[0]) if frame is not None else (1, 1))
            with self._lock:
                events = state.counter.update(index, timestamp, tracks, size)
                if self.counts_every_s > 0:
                    if state.last_counts_ts is None:
                        state.last_counts_ts = timestamp
                    elif timestamp - state.last_counts_ts >= self.counts_every_s:
                        state.last_counts_ts = timestamp
                        events.append(Event("counts", stream, index, timestamp, counts=state.counter.counts()))
        dicts = []
        for event in events:
            event.seq = state.seq
            state.seq += 1
            dicts.append(event.to_dict())
        record["tracks"] = tracks.to_list(self.class_names)
        record["events"] = dicts
        if self.evidence is not None:
            self._record_evidence(self.evidence(stream), timestamp, frame, record["tracks"], dicts)
        for sink in self.sinks:
            for item in dicts:
                sink.submit(item)
        if frame is not None and draw:
            self._draw(state, tracks, frame)
        else:
            state.trails.update(tracks)

    @staticmethod
    def _record_evidence(evidence: Evidence, timestamp: float, frame: Optional[np.ndarray],
                         tracks: List[Dict[str, Any]], events: List[Dict[str, Any]]) -> None:
        """The frame (before anything is drawn on it) and its tracks to the recorder, then each event's
        ``clip`` and ``snapshot`` into the event (so every sink and the JSON line carry them)."""
        if frame is None:
            evidence.on_frame(timestamp)
        else:
            evidence.on_tracks(timestamp, frame, [TrackBox(t["id"], t["name"], tuple(t["box"]), t["score"])
                                                  for t in tracks])
        for item in events:
            item.update(evidence.on_event(item))

    def _draw(self, state: _Stream, tracks: Tracks, frame: np.ndarray) -> None:
        state.trails.update(tracks)
        if state.counter is not None:
            zones, lines = state.counter.geometry()
            draw_zones(frame, zones, lines, self.counts(state.name))
        draw_tracks(frame, tracks, state.trails)

    def counts(self, stream: str) -> Dict[str, Any]:
        """Live counts of ``stream``: {"zones": {name: {"total", "by_class", "entered"}}, "lines": {name: {"in",
        "out", "by_class"}}, "tracks": live track count}. Safe to call from any thread."""
        state = self._streams[stream]
        with self._lock:
            counts = state.counter.counts() if state.counter is not None else {"zones": {}, "lines": {}}
        counts["tracks"] = len(state.tracker)
        return counts

    def summary(self) -> Dict[str, Any]:
        """{"streams": {name: counts}, "sinks": {sink name: {"sent", "failed", "queued"}}}."""
        return {"streams": {name: self.counts(name) for name in self._streams},
                "sinks": {sink.name: sink.stats() for sink in self.sinks}}

    def close(self, timeout_s: float = 5.0) -> Dict[str, Any]:
        """Flush every sink within about ``timeout_s`` (network sinks first, so what they could not deliver
        reaches the events file), then return :meth:`summary`."""
        if not self._closed:
            self._closed = True
            others = [s for s in self.sinks if s is not self.events_file]
            threads = [threading.Thread(target=s.close, args=(timeout_s,), daemon=True) for s in others]
            for t in threads:
                t.start()
            for t in threads:
                t.join(timeout_s + 2.0)
            if self.events_file is not None:
                self.events_file.close(timeout_s)
        return self.summary()
