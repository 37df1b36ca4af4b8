"""The running box: the streams of a :class:`~boxconfig.config.BoxConfig` grouped by model, each model a
detector, schedule and :class:`~streams.pipeline.Pipeline` of its own whose scheduler runs on a thread of its
own, with the analytics, event sinks, JSON lines and web view shared by all; streams added, removed or
changed and models swapped while it runs (box/control_impl.py is the control API's side).

    runner = BoxRunner(config, log=print)
    runner.open(stop)                      # every model loaded, every stream opened, or UserError
    summary = runner.run(stop)             # until every stream has ended or ``stop`` is set
"""

from __future__ import annotations

import os
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence

from box.analytics import BoxAnalytics
from box.recording import BoxRecording
from boxconfig.config import BoxConfig, ModelConfig, StreamConfig
from boxconfig.gating_section import gate_options
from boxconfig.zone_sections import zones_of_model
from runtimes.atomic import JsonLines
from runtimes.errors import UserError
from streams.capture import CaptureOptions, StreamSource, parse_streams
from streams.config import StreamSpec
from streams.model_setup import ModelSetup, load, scheduled_detector
from streams.outputs import VIDEO_SUFFIXES
from streams.pipeline import Observer, Pipeline, PipelineOptions
from streams.scheduler import Schedule
from streams.sources import CsiOptions

JSON_SUFFIXES = (".jsonl", ".json")  # outputs.json naming a file: one file for every stream; else a folder


@dataclass
class ModelGroup:
    """One model of the box and the streams it serves."""

    name: str
    config: ModelConfig
    detector: Any
    schedule: Schedule
    pipeline: Pipeline
    thread: Optional[threading.Thread] = None


def model_setup(model: ModelConfig, streams: Sequence[StreamConfig], base: BoxConfig) -> ModelSetup:
    """How ``model`` is loaded for ``streams``: with the lowest tracker low score of its tracked streams
    (ByteTrack's second association needs those detections) unless the model sets its threshold."""
    lows = [s.tracking.low_score for s in streams if s.tracks or base.recorded(s) or base.zones is not None]
    return ModelSetup(base.resolve(model.path), model.runtime, model.batch_size, model.async_depth,
                      model.score_threshold, min(lows) if lows else None, dict(model.options))


def capture_options(stream: StreamConfig, reader_for: Any = None) -> CaptureOptions:
    """``reader_for``: the recording's tap for a recorded stream (box/recording.py), else None."""
    return CaptureOptions(realtime=stream.realtime, max_frames=stream.max_frames, timeout_s=stream.source_timeout_s,
                          max_wait_s=stream.max_wait_ms / 1000.0, decode=True, reader_for=reader_for)


class BoxRunner:
    """Runs ``config`` (checked: boxconfig.loading) until its streams end or ``stop`` is set. ``observers``
    watch every pipeline (the web view: told of streams added and removed); ``label`` names the
    configuration in messages (its file)."""

    def __init__(self, config: BoxConfig, log: Callable[[str], None] = print, observers: Sequence[Observer] = (),
                 label: str = "configuration") -> None:
        self.config, self.log, self.observers, self.label = config, log, list(observers), label
        self.csi = CsiOptions(config.csi.sensor_mode, config.csi.width, config.csi.height, config.csi.fps,
                              config.csi.flip)
        self.sources = self.parse(config.streams)  # bad sources before any model loads
        outputs = config.outputs
        if outputs.video and Path(outputs.video).suffix.lower() in VIDEO_SUFFIXES:
            raise UserError(f"{label}: outputs.video {outputs.video}: the box writes one video a stream; give a "
                            "folder (one NAME.mp4 each)")
        self.groups: Dict[str, ModelGroup] = {}
        self.analytics: Optional[BoxAnalytics] = None
        self.recording: Optional[BoxRecording] = None  # (recording.dir set)
        self.json: Optional[JsonLines] = None
        self.stop = threading.Event()
        self.lock = threading.RLock()  # one change of the box at a time (control API, reload)
        self.started = self.ended = 0.0

    def parse(self, streams: Sequence[StreamConfig]) -> Dict[str, StreamSource]:
        """Each stream's source, checked (UserError naming the stream)."""
        parsed = parse_streams([StreamSpec(s.name, s.source) for s in streams], self.csi)
        return {source.name: source for source in parsed}

    # -- start and run ------------------------------------------------------------------------------

    def open(self, stop: Optional[threading.Event] = None) -> None:
        """Load every model, check its streams' zones against its classes, open the streams; UserError (every
        model loaded so far closed) when one fails."""
        if stop is not None:
            self.stop = stop
        if not self.config.outputs.headless and os.environ.get("DISPLAY"):
            self.log("the box draws no window; its web view (webview.port) shows the streams")
        try:
            self.recording = BoxRecording.of(self.config, self.label, self.log)  # before any stream opens
            self.analytics = BoxAnalytics(self.config, self.recording)
            json_path = self.config.outputs.json
            if json_path and Path(json_path).suffix.lower() in JSON_SUFFIXES:
                self.json = JsonLines(Path(self.config.resolve(json_path)))
            for name, model in self.config.models.items():
                self.groups[name] = self._open_group(name, model)
            if self.recording is not None:
                self.recording.check_classes(self.config, [g.detector.class_names for g in self.groups.values()])
        except BaseException:
            self.close()
            raise

    def _open_group(self, name: str, model: ModelConfig) -> ModelGroup:
        streams = self.config.streams_of(name)
        detector, schedule = scheduled_detector(model_setup(model, streams, self.config), max(1, len(streams)),
                                                lambda text: self.log(f"model {name}: {text}"))
        try:
            pipeline = Pipeline(detector, [self.sources[s.name] for s in streams], schedule,
                                self.pipeline_options(model, streams), self.log, self.analytics, self.observers,
                                self.json)
            group = ModelGroup(name, model, detector, schedule, pipeline)
            zones = zones_of_model(self.config, name, detector.class_names, self.label)
            pipeline.open(self.stop)  # (frames flow once it runs, after the streams are configured here)
            for stream in streams:
                self.configure_stream(group, stream, zones.get(stream.name))
        except BaseException:
            detector.close()
            raise
        return group

    def pipeline_options(self, model: ModelConfig, streams: Sequence[StreamConfig]) -> PipelineOptions:
        outputs = self.config.outputs
        json_path = Path(self.config.resolve(outputs.json)) if outputs.json else None
        folder = json_path if json_path is not None and json_path.suffix.lower() not in JSON_SUFFIXES else None
        return PipelineOptions(batch_timeout_s=model.batch_timeout_ms / 1000.0, show=False,
                               output=Path(self.config.resolve(outputs.video)) if outputs.video else None,
                               json_folder=folder, keep_running=True, capture=CaptureOptions(decode=True),
                               capture_of={s.name: capture_options(s, self.reader_for(s)) for s in streams},
                               gating=gate_options(streams))

    def reader_for(self, stream: StreamConfig) -> Any:
        return self.recording.reader_for(stream) if self.recording is not None else None

    def configure_stream(self, group: ModelGroup, stream: StreamConfig, zones: Any) -> None:
        """The stream's tracking and zones (the analytics) and filters (its output), from its next frame."""
        assert self.analytics is not None
        # Zones of the top-level section need tracks too; recording follows tracks, as --record.
        tracked = stream.tracks or zones is not None or self.config.recorded(stream)
        self.analytics.set_stream(stream.name, group.detector.class_names, stream.tracking if tracked else None,
                                  zones)
        if stream.name in group.pipeline.outputs:  # (one added gets them once its output exists)
            group.pipeline.set_filters(stream.name, stream.keep_classes, stream.score_threshold)

    def run(self, stop: Optional[threading.Event] = None) -> Dict[str, Any]:
        """Run every model's pipeline on a thread of its own until every stream has ended (files) or ``stop``
        is set; the summary per model and stream, with the analytics' counts."""
        if stop is not None:
            self.stop = stop
        if not self.groups:
            self.open(self.stop)
        errors: List[BaseException] = []
        summaries: Dict[str, Dict[str, Any]] = {}
        for group in self.groups.values():
            def work(g: ModelGroup = group) -> None:
                try:
                    summaries[g.name] = g.pipeline.run(self.stop)
                except BaseException as exc:  # handed to the caller, after the others have stopped
                    errors.append(exc)
                    self.stop.set()

            group.thread = threading.Thread(target=work, name=f"model-{group.name}", daemon=True)
            group.thread.start()
        self.started = time.monotonic()
        try:
            while not self.stop.wait(0.2):
                if self.all_ended():
                    break
        finally:
            self.stop.set()
            for group in self.groups.values():
                if group.thread is not None:
                    group.thread.join()
            self.ended = time.monotonic()
            analytics = self.close()
        if errors:
            raise errors[0]
        summary: Dict[str, Any] = {"seconds": round(self.ended - self.started, 3), "models": summaries}
        if analytics is not None:
            summary["analytics"] = analytics
        return summary

    def all_ended(self) -> bool:
        """Every stream of every model ended (a change under way counts as running)."""
        if not self.lock.acquire(blocking=False):
            return False
        try:
            captures = [c for g in self.groups.values() for c in g.pipeline.captures]
            return all(c.finished for c in captures)
        finally:
            self.lock.release()

    def close(self) -> Optional[Dict[str, Any]]:
        """Close the detectors, the JSON lines file and the sinks; the analytics' summary."""
        for group in self.groups.values():
            group.detector.close()
        if self.json is not None:
            self.json.close()
        if self.recording is not None:  # (before the sinks: the snapshots it writes now still reach MQTT)
            self.recording.close()
        return self.analytics.close() if self.analytics is not None else None

    # -- what the control API changes (box/control_impl.py checks the request first) -----------------

    def group_of(self, stream: str) -> ModelGroup:
        return self.groups[self.config.stream(stream).model]

    def add_stream(self, stream: StreamConfig, config: BoxConfig) -> None:
        """Start ``stream`` (of ``config``, the new configuration) in its model's pipeline."""
        group = self.groups[stream.model]
        source = self.parse([stream])[stream.name]
        zones = zones_of_model(config, stream.model, group.detector.class_names, self.label).get(stream.name)
        gating = gate_options(config.streams_of(stream.model))
        if gating.gates and not group.pipeline.gating:  # (its scheduler decides on every frame or on none)
            raise UserError(f"stream {stream.name}: interval or motion needs a restart of the box: model "
                            f"{stream.model} started with none of its streams gated, so its scheduler checks no frame")
        group.pipeline.options.gating = gating
        if self.recording is not None:
            self.recording.add(stream, config)
        self.configure_stream(group, stream, zones)
        try:
            group.pipeline.add_stream(source, capture_options(stream, self.reader_for(stream)))
        except BaseException:
            assert self.analytics is not None
            self.analytics.remove_stream(stream.name)
            raise
        group.pipeline.set_filters(stream.name, stream.keep_classes, stream.score_threshold)

    def remove_stream(self, name: str) -> Dict[str, Any]:
        """Stop stream ``name`` with its outputs finalised; its summary."""
        group = self.group_of(name)
        summary = group.pipeline.remove_stream(name)
        assert self.analytics is not None
        self.analytics.remove_stream(name)
        return summary

    def statuses(self) -> Dict[str, Dict[str, Any]]:
        found: Dict[str, Dict[str, Any]] = {}
        for group in self.groups.values():
            for name, status in group.pipeline.statuses().items():
                found[name] = dict(status, model=group.name)
        return found

    def load_candidate(self, name: str, model: ModelConfig) -> Any:
        """Model ``name``'s replacement loaded for its schedule's batch (not yet serving)."""
        group = self.groups[name]
        setup = model_setup(model, self.config.streams_of(name), self.config)
        return load(setup, max_batch=group.schedule.batch)
