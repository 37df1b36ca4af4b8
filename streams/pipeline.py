"""Many streams, one detector: capture -> scheduler (batches, requests in flight) -> per-stream output.

Stages, each in its own place: :meth:`Pipeline.open` starts a capture layer per stream (streams/capture.py:
its grab thread opens the source; a live one that fails is retried while the others run; the run needs at
least one), the scheduler on the calling thread (streams/scheduler.py), an output per stream (draw,
analytics, video, JSON line, observers such as the web view; a worker thread of its own when it draws), a
status tick once a second, the display mosaic, and :meth:`Pipeline.summary`. ``stop`` (Ctrl-C, SIGTERM) ends
the run with every output finished, whatever a source does (a grab thread stuck in its source is left
behind after :data:`CLOSE_WAIT_S`).
"""

from __future__ import annotations

import dataclasses
import queue
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Protocol, Sequence, Tuple

import numpy as np

from runtimes.atomic import JsonLines
from runtimes.detections import Detections
from runtimes.detector import Detector
from runtimes.errors import UserError
from streams.capture import CaptureOptions, StreamCapture, StreamSource
from streams.decoding import decode_size, decoder_threads
from streams.frame import Frame, FrameResult, in_source_pixels
from streams.gating import Decision, FrameGate, GateOptions
from streams.outputs import VideoOutput, video_paths
from streams.scheduler import BatchScheduler, Schedule
from streams.stats import StreamStats, percentile

CLOSE_WAIT_S = 0.5  # how long closing waits for all grab threads together (SIGTERM must end the app in 2 s)
OUTPUT_WAIT_S = 30.0  # how long closing waits for an output worker to write its last (at most 5) frames


class Observer(Protocol):
    """Something that watches the run (the web view): called on the streams' output threads, it must not
    block."""

    def on_frame(self, stream: str, frame: np.ndarray, record: Dict[str, Any]) -> None: ...

    def on_status(self, statuses: Dict[str, Dict[str, Any]]) -> None: ...


class Analytics(Protocol):
    """Per-stream tracking and zone events (analytics/): adds ``tracks`` and ``events`` to the record and,
    with ``draw``, draws them on the frame."""

    def process(self, stream: str, record: Dict[str, Any], detections: Detections, frame: np.ndarray,
                draw: bool = True, detected: bool = True, size: Optional[Tuple[int, int]] = None) -> None: ...

    def counts(self, stream: str) -> Dict[str, Any]: ...


@dataclass
class PipelineOptions:
    """How a run is scheduled and what it writes (the camera app's options)."""

    batch_timeout_s: float = 0.010  # how long a round waits for slower streams
    classes: Optional[List[str]] = None  # class names to keep (None: all)
    capture: CaptureOptions = field(default_factory=CaptureOptions)
    gating: GateOptions = field(default_factory=GateOptions)  # which frames the detector sees
    show: bool = False
    output: Optional[Path] = None
    json: Optional[Path] = None
    json_folder: Optional[Path] = None  # one NAME.jsonl per stream, complete when the stream is removed (the box)
    keep_running: bool = False  # run until stopped even when every stream has ended: streams may be added
    capture_of: Dict[str, CaptureOptions] = field(default_factory=dict)  # a stream's own, in place of ``capture``


class StreamOutput:
    """The output of one stream: filter, analytics, draw, write, observe, count. It runs on a worker thread
    of its own when it draws (a video, the display, observers: milliseconds a frame); otherwise on the
    scheduler's thread as each result is handed over, because waking a thread for every frame cost the CPU
    more than the counting and JSON line it would do there (docs/multistream.md)."""

    def __init__(self, name: str, pipeline: "Pipeline", video: Optional[VideoOutput], threaded: bool) -> None:
        self.name, self.pipeline, self.video = name, pipeline, video
        self.stats = StreamStats(name)
        self.started = time.monotonic()
        # The stream's filters (the box changes them while it runs): kept classes (None: all), least score.
        self.classes: Optional[List[str]] = pipeline.options.classes
        self.min_score: Optional[float] = None
        folder = pipeline.options.json_folder
        self.json = JsonLines(folder / f"{name}.jsonl") if folder is not None else pipeline.json
        self.detected = 0  # frames the detector saw (the others: --interval, --motion)
        self.queue: "queue.Queue[Optional[FrameResult]]" = queue.Queue(maxsize=4)  # None: the end
        self.latest: Optional[np.ndarray] = None  # the last annotated frame, for the display
        self.thread = threading.Thread(target=self._run, name=f"output-{name}", daemon=True) if threaded else None

    def start(self) -> None:
        if self.thread is not None:
            self.thread.start()

    def put(self, item: Optional[FrameResult]) -> None:
        """Handle ``item`` here or hand it to the worker; None ends the worker."""
        if self.thread is None:
            if item is not None:
                self._handle(item)
            return
        while self.thread.is_alive():  # never block forever on a worker that has died
            try:
                self.queue.put(item, timeout=0.2)
                return
            except queue.Full:
                continue

    def _run(self) -> None:
        try:
            while True:
                item = self.queue.get()
                if item is None:
                    return
                self._handle(item)
        except BaseException as exc:  # handed to the run, which stops
            self.pipeline.fail(exc)

    def _handle(self, result: FrameResult) -> None:
        from streams.overlay import draw

        p = self.pipeline
        frame, timings = result.frame, result.timings
        detections = in_source_pixels(result.detections, frame)
        if p.relabel is not None:
            detections = p.relabel(detections)
        if self.classes or self.min_score is not None:
            detections = detections.filter(self.min_score, self.classes or None)
        started = time.perf_counter()
        image = frame.image
        record: Dict[str, Any] = {"stream": self.name, "frame": frame.index, "timestamp": round(frame.timestamp, 6),
                                  "detections": detections.to_list()}
        self.detected += result.detected
        if p.gating:  # only when frames may skip the detector: other runs' lines stay as they were
            record["detected"] = result.detected
        if result.motion is not None:
            record["motion"] = [[round(float(v), 1) for v in box] for box in result.motion]
        if p.analytics is not None:
            p.analytics.process(self.name, record, detections, image, draw=p.annotate, detected=result.detected,
                                size=frame.size)
        if p.annotate:
            draw(image, detections, self.stats.smoothed_fps, {k: 1000 * v for k, v in timings.items()})
        timings["draw"] = time.perf_counter() - started
        latency = time.monotonic() - frame.captured
        self.stats.add(latency)
        record["timings_ms"] = {k: round(1000 * v, 3) for k, v in timings.items()}
        record["latency_ms"] = round(1000 * latency, 3)
        if self.video is not None:
            self.video.write(image)
        if self.json is not None:
            self.json.write(record)
        for observer in p.observers:
            observer.on_frame(self.name, image, record)
        self.latest = image


class Pipeline:
    """Runs ``streams`` (streams/capture.parse_streams) on ``detector`` as ``schedule`` says
    (streams/scheduler.plan_schedule) with ``options``; see the module docstring."""

    def __init__(self, detector: Detector, streams: Sequence[StreamSource], schedule: Schedule,
                 options: PipelineOptions, log: Callable[[str], None] = print, analytics: Optional[Analytics] = None,
                 observers: Sequence[Observer] = (), json: Optional[JsonLines] = None) -> None:
        """``json``: a JSON lines file shared with other pipelines (the box's models), closed by its owner."""
        self.detector, self.streams, self.schedule, self.options, self.log = (detector, list(streams), schedule,
                                                                              options, log)
        self.analytics, self.observers = analytics, list(observers)
        self.shared_json = json
        self.annotate = bool(options.output is not None or options.show or observers)
        self.gating = options.gating.gates
        self.gates: Dict[str, FrameGate] = {}
        self.captures: List[StreamCapture] = []
        self.outputs: Dict[str, StreamOutput] = {}
        self.json: Optional[JsonLines] = None
        self.errors: List[BaseException] = []
        self.stop = threading.Event()
        self.started = self.ended = 0.0
        self.scheduler: Optional[BatchScheduler] = None
        self.opened = False
        self.running = threading.Event()  # set once the scheduler exists: streams may be added, the model swapped
        self.removed: Dict[str, Dict[str, Any]] = {}  # the summaries of streams removed while running
        # Detections of a swapped-in model with other class names given the old names (box/model_swap.py).
        self.relabel: Optional[Callable[[Detections], Detections]] = None
        self._changing = threading.Lock()  # one change (add, remove, swap) at a time

    # -- stages ---------------------------------------------------------------------------------------

    def open(self, stop: Optional[threading.Event] = None) -> None:
        """Start every stream's capture and wait for its first attempt to open (bounded, and ended early by
        ``stop``); UserError when none opens (the failures named)."""
        if stop is not None:
            self.stop = stop
        self.opened = True
        if self.options.json_folder is not None:
            self.options.json_folder.mkdir(exist_ok=True)
        self.json = self.shared_json
        if self.options.json is not None and self.json is None:
            self.json = JsonLines(self.options.json)
        videos = video_paths(self.options.output, [s.name for s in self.streams])
        self.captures = [StreamCapture(stream, self._capture_options(stream.name), self.log) for stream in self.streams]
        gating = self.options.gating
        gating.check_streams([s.name for s in self.streams])
        self.gates = {s.name: FrameGate(gating.interval_of(s.name), k, gating.motion_for(s.name))
                      for k, s in enumerate(self.streams)}
        for capture in self.captures:
            capture.start()
        # An attempt is bounded by the source's timeout (FFmpeg); a GStreamer pipeline that hangs opening
        # is left to its grab thread and the run goes on without waiting for it.
        deadline = time.monotonic() + 2 * self.options.capture.timeout_s + 1.0
        while not all(c.attempted.is_set() for c in self.captures) and time.monotonic() < deadline:
            if self.stop.wait(0.05):
                break
        self._report_opened()
        for capture in self.captures:
            path = videos[capture.name]
            self.outputs[capture.name] = StreamOutput(capture.name, self, VideoOutput(path, capture.fps)
                                                      if path is not None else None, threaded=self.annotate)

    def _capture_options(self, stream: str) -> CaptureOptions:
        """The stream's capture options with the size decoding plans scale to (the model's input, or the full frame
        when an output draws: streams/decoding.decode_size) and a software decoder's threads for the streams
        served (streams/decoding.decoder_threads, a stream added counted with those running)."""
        model = (self.detector.meta.input_width, self.detector.meta.input_height)
        size = decode_size(model, [None] if self.annotate else [])
        threads = decoder_threads(max(len(self.streams), len(self.outputs) + 1))
        return dataclasses.replace(self.options.capture_of.get(stream, self.options.capture), decode_size=size,
                                   decode_threads=threads)

    def _report_opened(self) -> None:
        """Log each stream's first attempt; UserError (captures closed) when every stream failed it."""
        failures = []
        for capture in self.captures:
            if capture.error is not None:
                failures.append(capture)
                again = " (live: retrying while the others run)" if capture.live else ""
                self.log(f"stream {capture.name}: {capture.error}{again}")
            elif capture.attempted.is_set():
                self.log(f"stream {capture.name}: {capture.description}")
            elif not self.stop.is_set():
                self.log(f"stream {capture.name}: still opening {capture.source.text}; the others run meanwhile")
        if failures and len(failures) == len(self.captures):
            self._close_captures()
            if len(failures) == 1:
                raise UserError(str(failures[0].error))
            raise UserError(f"none of the {len(failures)} streams could be opened: "
                            + "; ".join(f"{c.name}: {c.error}" for c in failures))
        self.log(f"model: {self.detector.describe()}; scores above {self.detector.score_threshold:g}; "
                 f"{self.schedule.reason}")
        if self.gating:
            self.log(self.options.gating.describe())

    def run(self, stop: Optional[threading.Event] = None) -> Dict[str, Any]:
        """Run until every stream has ended or ``stop`` is set; the summary."""
        if not self.opened:
            self.open(stop)
        elif stop is not None:
            self.stop = stop
        requests = self.detector.requests(self.schedule.depth)
        self.scheduler = BatchScheduler(self.captures, requests, self.schedule.batch, self.options.batch_timeout_s,
                                        self._deliver, self.stop, self._decide if self.gating else None,
                                        self.detector.class_names)
        self.scheduler.keep_running = self.options.keep_running
        helpers = [threading.Thread(target=self._status_loop, name="status", daemon=True)]
        if self.options.show:
            helpers.append(threading.Thread(target=self._display_loop, name="display", daemon=True))
        for output in self.outputs.values():
            output.start()
        self.started = time.monotonic()
        for capture in self.captures:
            capture.notify = self.scheduler.notify
        for helper in helpers:
            helper.start()
        self.running.set()
        try:
            self.scheduler.run()
        finally:
            self.stop.set()
            self._finish()
        if self.errors:
            raise self.errors[0]
        return self.summary()

    def fail(self, exc: BaseException) -> None:
        self.errors.append(exc)
        self.stop.set()

    def _decide(self, frame: Frame) -> Decision:
        return self.gates[frame.stream].check(frame)

    def _deliver(self, results: List[FrameResult]) -> None:
        for result in results:
            self.outputs[result.frame.stream].put(result)

    def _close_captures(self) -> None:
        """Stop every capture, then wait for their grab threads together, at most :data:`CLOSE_WAIT_S`."""
        for capture in self.captures:
            capture.stop()
        deadline = time.monotonic() + CLOSE_WAIT_S
        for capture in self.captures:
            if not capture.close(max(0.0, deadline - time.monotonic())):
                self.log(f"stream {capture.name}: its source is still inside a call; not waiting for it")

    def _finish(self) -> None:
        with self._changing:
            self._finish_locked()

    def _finish_locked(self) -> None:
        for capture in self.captures:
            capture.stop()
        for output in self.outputs.values():
            output.put(None)
        for output in self.outputs.values():
            if output.thread is not None:
                output.thread.join(OUTPUT_WAIT_S)
        self.ended = time.monotonic()
        self._close_captures()
        for output in self.outputs.values():
            if output.video is not None:
                output.video.close()
            if output.json is not None and output.json is not self.json:
                output.json.close()
        if self.json is not None and self.json is not self.shared_json:
            self.json.close()
        if self.observers:
            self._publish_status()

    # -- changes while running (the box, box/runner.py) -------------------------------------------------

    def add_stream(self, stream: StreamSource, capture: Optional[CaptureOptions] = None,
                   wait_s: float = 10.0) -> StreamOutput:
        """Open ``stream`` (waiting for its first attempt, at most its timeout twice) and serve it from the
        scheduler's next round, its output (and observers' ``on_stream_added``) ready before its first frame;
        UserError when it cannot be opened (a live source is retried) or its name is taken. ``capture``: its
        capture options (default: the pipeline's)."""
        scheduler = self._scheduler(wait_s)
        with self._changing:
            if stream.name in self.outputs:
                raise UserError(f"stream {stream.name}: a stream of this name is running; remove it first")
            if capture is not None:
                self.options.capture_of[stream.name] = capture
            grab = StreamCapture(stream, self._capture_options(stream.name), self.log, scheduler.notify)
            grab.start()
            deadline = time.monotonic() + 2 * grab.options.timeout_s + 1.0
            while not grab.attempted.wait(0.05) and time.monotonic() < deadline and not self.stop.is_set():
                pass
            if grab.error is not None and not grab.live:
                grab.close(CLOSE_WAIT_S)
                raise UserError(f"stream {stream.name}: {grab.error}")
            self.log(f"stream {stream.name}: {grab.description} (added)")
            names = [c.name for c in self.captures] + [stream.name]
            path = video_paths(self.options.output, names)[stream.name] if self.options.output else None
            output = StreamOutput(stream.name, self, VideoOutput(path, grab.fps) if path is not None else None,
                                  threaded=self.annotate)
            gating = self.options.gating
            self.gates[stream.name] = FrameGate(gating.interval_of(stream.name), len(self.gates),
                                                gating.motion_for(stream.name))
            self.outputs = dict(self.outputs, **{stream.name: output})  # replaced, never changed: readers iterate
            output.start()
            self.captures = self.captures + [grab]
            for observer in self.observers:
                if hasattr(observer, "on_stream_added"):
                    observer.on_stream_added(stream.name)
            scheduler.between_batches(lambda: scheduler.add_capture(grab))
            return output

    def remove_stream(self, name: str, wait_s: float = OUTPUT_WAIT_S) -> Dict[str, Any]:
        """Stop stream ``name``: its capture out of the scheduler, every frame taken from it delivered, its
        output drained, its video and JSON lines file closed (complete); its summary (kept in the run's)."""
        scheduler = self._scheduler(wait_s)
        with self._changing:
            capture = next((c for c in self.captures if c.name == name), None)
            if capture is None:
                raise KeyError(name)
            handed_on = threading.Event()
            scheduler.between_batches(lambda: scheduler.remove_capture(capture, handed_on.set))
            capture.stop()
            if not handed_on.wait(wait_s):
                self.log(f"stream {name}: its last frames were not delivered within {wait_s:g} s")
            output = self.outputs[name]
            self.captures = [c for c in self.captures if c is not capture]
            output.put(None)
            if output.thread is not None:
                output.thread.join(wait_s)
            if output.video is not None:
                output.video.close()
            if output.json is not None and output.json is not self.json:
                output.json.close()
            if not capture.close(CLOSE_WAIT_S):
                self.log(f"stream {name}: its source is still inside a call; not waiting for it")
            summary = output.stats.summary(time.monotonic() - max(self.started, output.started), capture.dropped,
                                           capture.reopens)
            summary["detected_frames"] = output.detected
            self.removed[name] = summary
            self.outputs = {k: v for k, v in self.outputs.items() if k != name}
            self.gates.pop(name, None)
            for observer in self.observers:
                if hasattr(observer, "on_stream_removed"):
                    observer.on_stream_removed(name)
            return summary

    def set_filters(self, name: str, classes: Optional[List[str]], min_score: Optional[float]) -> None:
        """Stream ``name`` keeps ``classes`` (None: all) scoring at least ``min_score`` from its next frame."""
        output = self.outputs[name]
        output.classes, output.min_score = classes, min_score

    def swap_detector(self, detector: Detector, relabel: Optional[Callable[[Detections], Detections]] = None,
                      wait_s: float = OUTPUT_WAIT_S) -> Detector:
        """Serve the streams with ``detector`` from the next batch: the requests in flight on the old one are
        drained and delivered first, so no frame is lost; the old detector, for the caller to close. The
        caller checked that ``detector`` takes the same input and batch (box/model_swap.py). ``relabel`` gives
        its detections the class names the streams use (it passes the old detector's through unchanged)."""
        scheduler = self._scheduler(wait_s)
        with self._changing:
            requests = detector.requests(self.schedule.depth)
            swapped = threading.Event()
            old = self.detector

            def swap() -> None:
                self.detector, self.relabel = detector, relabel
                scheduler.replace_requests(requests, detector.class_names)
                swapped.set()

            scheduler.between_batches(swap)
            if not swapped.wait(wait_s):
                raise UserError(f"the model could not be swapped within {wait_s:g} s: the scheduler did not answer")
            return old

    def _scheduler(self, wait_s: float) -> BatchScheduler:
        if not self.running.wait(wait_s) or self.scheduler is None or self.ended:
            raise UserError("the pipeline is not running")
        return self.scheduler

    # -- watching -------------------------------------------------------------------------------------

    def statuses(self) -> Dict[str, Dict[str, Any]]:
        now = (self.ended or time.monotonic()) - self.started
        found = {}
        for capture in self.captures:
            stats = self.outputs[capture.name].stats
            latencies = list(stats.latencies_ms)[-1000:]
            alive = capture.state == "running" and stats.last is not None and time.monotonic() - stats.last < 5.0
            found[capture.name] = {"name": capture.name, "frames": stats.frames, "fps": round(stats.fps(now), 3),
                                   "latency_p50_ms": percentile(latencies, 50),
                                   "latency_p95_ms": percentile(latencies, 95),
                                   "dropped_stale_frames": capture.dropped, "reopens": capture.reopens,
                                   "alive": alive, "error": capture.error, "state": capture.state}
            if self.analytics is not None:
                found[capture.name]["counts"] = self.analytics.counts(capture.name)
        return found

    def _publish_status(self) -> None:
        statuses = self.statuses()
        for observer in self.observers:
            observer.on_status(statuses)

    def _status_loop(self) -> None:
        while not self.stop.wait(1.0):
            if self.observers:
                self._publish_status()

    def _display_loop(self) -> None:
        import cv2

        from streams.mosaic import mosaic

        while not self.stop.wait(1 / 30):
            tiles = [(name, out.latest) for name, out in self.outputs.items() if out.latest is not None]
            if tiles:
                cv2.imshow("ssd-edge", mosaic(tiles))
                if cv2.waitKey(1) & 0xFF in (ord("q"), 27):
                    self.stop.set()
        cv2.destroyAllWindows()

    def summary(self) -> Dict[str, Any]:
        """Per-stream figures and the totals (frames, mean FPS, latency p50/p95 over every frame)."""
        elapsed = self.ended - self.started
        per_stream = dict(self.removed)
        for c in self.captures:
            output = self.outputs[c.name]
            per_stream[c.name] = output.stats.summary(self.ended - max(self.started, output.started), c.dropped,
                                                      c.reopens)
            per_stream[c.name]["detected_frames"] = output.detected
        latencies = [v for c in self.captures for v in self.outputs[c.name].stats.latencies_ms]  # (not the removed)
        frames = sum(s["frames"] for s in per_stream.values())
        summary: Dict[str, Any] = {
            "frames": frames, "seconds": round(elapsed, 3),
            "mean_fps": round(frames / elapsed, 3) if elapsed > 0 else 0.0,
            "latency_p50_ms": percentile(latencies, 50), "latency_p95_ms": percentile(latencies, 95),
            "dropped_stale_frames": sum(s["dropped_stale_frames"] for s in per_stream.values()),
            "reopens": sum(s["reopens"] for s in per_stream.values()),
            "detected_frames": sum(s["detected_frames"] for s in per_stream.values()),
            "streams": per_stream}
        summary["schedule"] = {"batch": self.schedule.batch, "requests_in_flight": self.schedule.depth}
        summary["score_threshold"] = self.detector.score_threshold
        return summary
