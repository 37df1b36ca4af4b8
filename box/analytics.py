"""Tracking and zones for the box's streams, each with its own tracker options and zones, changed while
the box runs (a stream added, removed or given new zones), the event sinks shared by every stream.

Each tracked stream has an :class:`analytics.pipeline.Analytics` of its own (made again with a new counter
when its zones change: the counts start over from the new zones, the tracks too); untracked streams are
passed over. One Analytics without streams owns the sinks, so closing them is analytics/'s code.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any, Dict, Optional, Sequence, Tuple

import numpy as np

from analytics.cli import DEFAULT_EVENTS_FILE
from analytics.pipeline import Analytics
from analytics.sinks import open_sinks, parse_mqtt_address
from analytics.zone_file import StreamZones
from boxconfig.config import BoxConfig, TrackingConfig


def tracker_options(tracking: TrackingConfig) -> Dict[str, Any]:
    """analytics.tracker.ByteTracker keywords from a stream's ``tracking`` section."""
    return {"high_score": tracking.high_score, "low_score": tracking.low_score,
            "new_track_score": tracking.new_score, "match_iou": tracking.match_iou, "min_hits": tracking.min_hits,
            "max_missed": tracking.max_missed}


class BoxAnalytics:
    """What :class:`streams.pipeline.Analytics` asks for, over every pipeline of the box; thread-safe."""

    def __init__(self, config: BoxConfig, recording: Any = None) -> None:
        """``recording`` (box/recording.py BoxRecording, or None): the recorded streams' events get their clip
        and snapshot before the sinks, and MQTT publishes each snapshot (as the flags' analytics/cli.py)."""
        self.recording = recording
        settings = config.sinks
        zoned = config.zones is not None or any(s.zones is not None for s in config.streams)
        mqtt = settings.mqtt
        events = Path(config.resolve(settings.events_file or DEFAULT_EVENTS_FILE))
        self.sinks, self.events_file = open_sinks(
            events if settings.events_file or zoned else None,
            parse_mqtt_address(mqtt.broker) if mqtt is not None else None, settings.webhook, settings.queue,
            recording.recording.on_snapshot if recording is not None else None,
            mqtt.username if mqtt is not None else None, mqtt.password if mqtt is not None else None)
        self.counts_every_s = settings.counts_every_s
        self._owner = Analytics([], [], None, self.sinks, self.events_file, counts_every_s=self.counts_every_s)
        self._streams: Dict[str, Analytics] = {}
        self._ended: Dict[str, Dict[str, Any]] = {}  # the counts of streams removed
        self._lock = threading.Lock()

    def set_stream(self, name: str, class_names: Sequence[str], tracking: Optional[TrackingConfig],
                   zones: Optional[StreamZones]) -> None:
        """Track stream ``name`` with ``tracking`` and count in ``zones`` from its next frame (None: untracked)."""
        recorded = self.recording is not None and self.recording.records(name)
        made = (Analytics([name], class_names, {name: zones} if zones is not None else None, self.sinks,
                          self.events_file, tracker_options(tracking), counts_every_s=self.counts_every_s,
                          evidence=self.recording.evidence if recorded else None)
                if tracking is not None else None)
        with self._lock:
            if made is None:
                self._streams.pop(name, None)
            else:
                self._streams[name] = made

    def remove_stream(self, name: str) -> None:
        with self._lock:
            gone = self._streams.pop(name, None)
            if gone is not None:
                self._ended[name] = gone.counts(name)

    def tracked(self, name: str) -> bool:
        return name in self._streams

    def process(self, stream: str, record: Dict[str, Any], detections: Any, frame: np.ndarray,
                draw: bool = True, detected: bool = True, size: Optional[Tuple[int, int]] = None) -> None:
        analytics = self._streams.get(stream)
        if analytics is not None:
            analytics.process(stream, record, detections, frame, draw, detected, size)

    def counts(self, stream: str) -> Dict[str, Any]:
        analytics = self._streams.get(stream)
        return analytics.counts(stream) if analytics is not None else {"zones": {}, "lines": {}, "tracks": 0}

    def close(self, timeout_s: float = 5.0) -> Dict[str, Any]:
        """Flush and close the sinks (analytics.pipeline.Analytics.close); every stream's counts, the sinks'."""
        with self._lock:
            counts = dict(self._ended)
            counts.update({name: a.counts(name) for name, a in self._streams.items()})
        return {"streams": counts, "sinks": self._owner.close(timeout_s)["sinks"]}
