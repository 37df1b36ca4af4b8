"""Recording for the camera app: a :class:`StreamRecorder` per stream (ring buffer, clip planning, the clip
being written, snapshots) and a :class:`Recording` over all of them (the free-space guard, retention, health
and metrics).

    recording = Recording(options, ["door", "yard"])
    tap = EncodedTap(url, on_unit=recording.stream("door").on_unit)        # or the capture layer's own tee
    fields = recording.stream("door").on_event(event.to_dict())           # {"clip": ..., "snapshot": ...}
    recording.stream("door").on_tracks(frame_time_s, bgr_image, [TrackBox(...), ...])  # every frame
    recording.health()   # None, or why recording is paused (for /healthz)
    recording.recent_events(20); recording.evidence_file(evidence_id, "clip")  # the web view's, by id
    recording.on_snapshot(lambda stream, jpeg: ...)   # each snapshot's JPEG once written (MQTT)
    recording.close()

Stream times are seconds of stream time, the same clock as the units' (the tap gives decoded frames the
time of the unit they came from).
"""

from __future__ import annotations

import contextlib
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence

from recording.clip_writer import ClipWriter
from recording.disk import MB, DiskGuard
from recording.evidence import EvidenceIndex
from recording.options import RecordOptions
from recording.paths import ClipPaths, new_clip_paths, remove_dead_temporaries
from recording.planner import ClipPlanner, PlannedClip
from recording.retention import RetentionLimits, enforce
from recording.sidecar import ClipStory, sidecar
from recording.snapshots import SnapshotPicker, SnapshotWatch, TrackBox, write_snapshot
from recording.units import NS, EncodedUnit
from runtimes.atomic import atomic_write_text, move_into_place, temporary_beside

# The ring holds the pre-roll and this much more: the GOP before the pre-roll's start (a clip starts on a
# keyframe) and the lead the encoded branch may have over the decoded frames that events come from.
RING_SLACK_S = 10.0


@dataclass
class RecordingCounters:
    """The metrics: clips written and failed, events not recorded (paused), snapshots, clips removed."""

    clips_written: int = 0
    clips_failed: int = 0
    events_not_recorded: int = 0
    snapshots_written: int = 0
    clips_removed: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def add(self, name: str, count: int = 1) -> None:
        with self.lock:
            setattr(self, name, getattr(self, name) + count)


@dataclass
class ActiveClip:
    planned: PlannedClip
    paths: ClipPaths
    writer: ClipWriter
    story: ClipStory
    pushed: int  # the index of the last unit pushed into the writer
    max_pts_ns: int = -1  # the latest frame it shows
    complete: bool = False  # it reaches the clip's end; units after are not its

    @property
    def end_ns(self) -> int:
        return int(self.planned.end_s * NS)


class StreamRecorder:
    """One stream's recording. ``on_unit`` runs on the tap's streaming thread; ``on_event`` and
    ``on_tracks`` on the app's; clips are finished on threads of their own."""

    def __init__(self, name: str, options: RecordOptions, guard: DiskGuard, counters: RecordingCounters,
                 log: Callable[[str], None] = print, index: Optional[EvidenceIndex] = None,
                 on_snapshot: Optional[Callable[[str, bytes], None]] = None) -> None:
        from recording.ring import UnitRing

        self.name = name
        self.options = options
        self._guard, self._counters, self._log = guard, counters, log
        self._index, self._on_snapshot = index, on_snapshot
        self.ring = UnitRing(options.pre_s + RING_SLACK_S, int(options.ring_mb * MB))
        self.planner = ClipPlanner(options.pre_s, options.post_s)
        self.snapshots = SnapshotPicker()
        self._active: Optional[ActiveClip] = None
        self._now_s = 0.0  # the newest decoded frame's stream time
        self._lock = threading.Lock()
        self._finishing: List[threading.Thread] = []

    def on_unit(self, unit: EncodedUnit) -> None:
        """An encoded unit from the tap: into the ring, and into the open clip up to the clip's end (units
        past it wait in the ring: a later event may still extend the clip). Units of other caps (a source
        reopened with other parameters) start afresh: the open clip is finished, the ring emptied."""
        with self._lock:
            newest = self.ring.newest()
            if newest is not None and newest.caps != unit.caps:
                self.ring.clear()
                if self._active is not None:
                    self.planner.close()
                    self._finish(self._active)
            self.ring.append(unit)
            active = self._active
            if active is not None and unit.index == active.pushed + 1:
                self._feed(active, [unit])
                self._end_if_done()

    def on_frame(self, time_s: float) -> None:
        """The stream time of the newest decoded frame (the events' clock): the open clip ends once it has
        passed the clip's end and the clip has its last frames. :meth:`on_tracks` calls it; call it for
        frames without tracks."""
        with self._lock:
            self._now_s = max(self._now_s, time_s)
            self._end_if_done()

    def _end_if_done(self) -> None:
        active = self._active
        if active is None:
            return
        if active.writer.error is not None or (active.complete and self._now_s >= active.planned.end_s):
            self.planner.close()
            self._finish(active)

    def on_event(self, event: Dict[str, Any]) -> Dict[str, str]:
        """Record around an event (a dict as the sinks send it: ``type``, ``timestamp``, ``seq``, maybe
        ``track_id``); the fields to add to it: ``clip`` and, with a track, ``snapshot`` (paths relative to
        the record folder; the clip is there once its post-roll has been written)."""
        if not self.options.triggers.fires_on(str(event.get("type"))):
            return {}
        time_s = float(event["timestamp"])
        with self._lock:
            active = self._cover(time_s, event, f"event:{event.get('type')}")
            if active is None:
                return {}
            fields = {"clip": self._relative(active.paths.video)}
            files = {"clip": active.paths.video}
            if event.get("track_id") is not None:
                seq = int(event.get("seq", active.planned.number))
                watch = SnapshotWatch(seq, int(event["track_id"]), time_s - self.options.pre_s,
                                      time_s + self.options.post_s, active.paths.snapshot(seq),
                                      active.paths.snapshot(seq, crop=True))
                self.snapshots.watch(watch)
                fields["snapshot"] = self._relative(watch.full)
                files.update(snapshot=watch.full, thumb=watch.crop)
        if self._index is not None:
            self._index.add(self.name, {**event, **fields}, files)
        return fields

    def on_tracks(self, time_s: float, image: Any, tracks: Sequence[TrackBox]) -> None:
        """Every frame's confirmed tracks: class triggers, the tracks a clip shows, snapshots' best frames."""
        self.on_frame(time_s)
        with self._lock:
            for track in tracks:
                if track.class_name in self.options.triggers.classes:
                    self._cover(time_s, None, f"class:{track.class_name}")
            if self._active is not None:
                for track in tracks:
                    self._active.story.saw(track.track_id, track.class_name, time_s, track.score)
            self.snapshots.offer(time_s, image, tracks)
            done = self.snapshots.due(time_s)
        self._write_snapshots(done)

    def _write_snapshots(self, watches: List[SnapshotWatch]) -> None:
        for watch in watches:
            try:
                jpeg = write_snapshot(watch)
            except OSError as exc:  # a full disk: the guard pauses recording at its next check
                self._log(f"recording {self.name}: snapshot {watch.full.name} not written ({exc.strerror})")
                continue
            if jpeg is not None:
                self._counters.add("snapshots_written")
                if self._on_snapshot is not None:
                    self._on_snapshot(self.name, jpeg)

    def _cover(self, time_s: float, event: Optional[Dict[str, Any]], trigger: str) -> Optional[ActiveClip]:
        """The clip covering ``time_s`` (started when none is open); None while recording is paused."""
        if self._guard.check() is not None:
            if event is not None:
                self._counters.add("events_not_recorded")
            return None
        planned, is_new = self.planner.add(time_s, event)
        if is_new or self._active is None:
            self._start(planned)
        elif self._active is not None:  # extended: the units that waited in the ring go in now
            self._active.complete = False
            self._feed(self._active, self.ring.after(self._active.pushed))
        if self._active is not None:
            self._active.story.triggers.add(trigger)
        return self._active

    def _start(self, planned: PlannedClip) -> None:
        """Open the clip's writer with the ring's units from the keyframe at or before its start."""
        units = self.ring.from_keyframe(planned.start_s)
        if not units:
            self.planner.close()
            return  # no video yet: the event is too early in the stream
        paths = new_clip_paths(self.options.folder, self.name, units[0].wall_time, planned.number)
        writer = ClipWriter(units[0].caps, temporary_beside(paths.video))
        self._active = ActiveClip(planned, paths, writer, ClipStory(), units[0].index - 1)
        self._feed(self._active, units)

    def _feed(self, active: ActiveClip, units: Sequence[EncodedUnit]) -> None:
        """Push ``units`` (consecutive, following what the clip has). The clip is complete at the first
        reference frame after what it has reached its end: with B-frames (pts out of decode order) the frames
        between the last two reference frames come after both, so stopping there leaves no gap."""
        for unit in units:
            if active.complete or (unit.pts_ns > active.max_pts_ns and active.max_pts_ns >= active.end_ns):
                active.complete = True
                return
            active.writer.push(unit)
            active.pushed, active.max_pts_ns = unit.index, max(active.max_pts_ns, unit.pts_ns)

    def _finish(self, active: ActiveClip) -> None:
        if self._active is active:
            self._active = None
        thread = threading.Thread(target=self._complete, args=(active,), name=f"clip-{self.name}", daemon=True)
        self._finishing = [t for t in self._finishing if t.is_alive()] + [thread]
        thread.start()

    def _complete(self, active: ActiveClip) -> None:
        """Off the streaming thread: wait for the muxer, rename into place, write the sidecar."""
        writer, paths = active.writer, active.paths
        if writer.finish() and writer.first is not None and writer.last is not None:
            try:
                move_into_place([writer.temp], [paths.video])
                content = sidecar(self.name, paths.video.name, active.planned.events, active.story, writer.first,
                                  active.max_pts_ns / NS, writer.units, writer.bytes,
                                  (active.planned.start_s, active.planned.end_s), self.options.pre_s,
                                  self.options.post_s)
                atomic_write_text(paths.sidecar, _json(content))
                self._counters.add("clips_written")
                return
            except OSError as exc:
                writer.error = exc.strerror or str(exc)
        with contextlib.suppress(FileNotFoundError):
            writer.temp.unlink()
        self._counters.add("clips_failed")
        self._log(f"recording {self.name}: clip {paths.video.name} not written ({writer.error})")
        self._guard.failed(str(writer.error), writer.bytes)
        self._guard.check()

    def _relative(self, path: Path) -> str:
        return path.relative_to(self.options.folder).as_posix()

    def close(self, timeout_s: float = 30.0) -> None:
        """Finish the open clip with what there is (its sidecar says ``cut_short``) and write what the
        snapshots have; wait for the clips being finished."""
        with self._lock:
            self.planner.close()
            if self._active is not None:
                self._finish(self._active)
            done = self.snapshots.flush()
            threads = list(self._finishing)
        self._write_snapshots(done)
        deadline = time.monotonic() + timeout_s
        for thread in threads:
            thread.join(max(0.0, deadline - time.monotonic()))


def _json(content: Dict[str, Any]) -> str:
    import json

    return json.dumps(content, indent=1) + "\n"


class Recording:
    """Recording for ``streams``: temporaries of killed runs removed first, then a thread that checks free
    space and retention every ``options.retention_interval_s``."""

    def __init__(self, options: RecordOptions, streams: Sequence[str], log: Callable[[str], None] = print) -> None:
        self._log = log
        for path in remove_dead_temporaries(options.folder):
            log(f"recording: removed {path}, left by a run that was killed while writing it")
        self.options = options
        self.counters = RecordingCounters()
        self.guard = DiskGuard(options.folder, int(options.min_free_mb * MB))
        self.limits = RetentionLimits.of(options.retain_days, options.retain_gb)
        self.index = EvidenceIndex(options.folder)
        self._snapshot_listeners: List[Callable[[str, bytes], None]] = []
        self._streams = {name: StreamRecorder(name, options, self.guard, self.counters, log, self.index,
                                              self._snapshot_written) for name in streams}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._maintain, name="recording-retention", daemon=True)
        self._thread.start()

    def stream(self, name: str) -> StreamRecorder:
        return self._streams[name]

    def add_stream(self, name: str) -> StreamRecorder:
        """Record stream ``name`` too (one added while the app runs; a name recorded before keeps its recorder)."""
        if name not in self._streams:  # (replaced, never changed: other threads look streams up)
            recorder = StreamRecorder(name, self.options, self.guard, self.counters, self._log, self.index,
                                      self._snapshot_written)
            self._streams = dict(self._streams, **{name: recorder})
        return self._streams[name]

    def on_snapshot(self, listener: Callable[[str, bytes], None]) -> None:
        """Call ``listener(stream, jpeg)`` with each event's snapshot (the full frame, box drawn) once written,
        on the thread that wrote it (the app's): it must not block."""
        self._snapshot_listeners.append(listener)

    def _snapshot_written(self, stream: str, jpeg: bytes) -> None:
        for listener in self._snapshot_listeners:
            try:
                listener(stream, jpeg)
            except Exception as exc:  # a listener's failure must not stop recording
                self._log(f"recording {stream}: snapshot listener failed ({type(exc).__name__}: {exc})")

    def recent_events(self, limit: int) -> List[Dict[str, Any]]:
        """The web view's list: the newest recorded events, newest first (recording/evidence.py)."""
        return self.index.recent(limit)

    def evidence_file(self, evidence_id: str, kind: str) -> Optional[Path]:
        """The file of kind ``clip``, ``snapshot`` or ``thumb`` the recorder wrote for an event, by its id;
        None when unknown, not written yet or removed."""
        return self.index.file(evidence_id, kind)

    def maintain(self) -> None:
        """One round of retention and the free-space check (the thread's, also callable directly)."""
        if self.limits.max_age_s is not None or self.limits.max_bytes is not None:
            removed = enforce(self.options.folder, self.limits, time.time())
            self.counters.add("clips_removed", len(removed))
        self.guard.check()

    def _maintain(self) -> None:
        while not self._stop.wait(self.options.retention_interval_s):
            self.maintain()

    def health(self) -> Optional[str]:
        """None while recording works; else the reason it is paused."""
        return self.guard.reason

    def metrics(self) -> Dict[str, int]:
        counters = self.counters
        with counters.lock:
            values = {name: getattr(counters, name) for name in ("clips_written", "clips_failed",
                      "events_not_recorded", "snapshots_written", "clips_removed")}
        values["recording_pauses"] = self.guard.pauses
        return values

    def close(self) -> None:
        self._stop.set()
        for recorder in self._streams.values():
            recorder.close()
        self._thread.join(5.0)
