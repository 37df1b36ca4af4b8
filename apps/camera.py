"""Realtime detection on a camera, stream, video file or image folder, with any model the runtimes load.

    python apps/camera.py --model outputs/ssdlite320_shapes_int8.xml --source 0
    python apps/camera.py --model ssd.engine --source csi://0 --csi-width 1920 --csi-height 1080 --headless \\
        --output out.mp4 --json out.jsonl
    python apps/camera.py --model ssd.onnx --source rtsp://192.168.1.10/stream --score-threshold 0.5

Capture, inference and drawing/writing run in three threads, so the frame rate approaches the slowest
stage rather than their sum; live sources always deliver their newest frame (no delay piles up) and are
reopened with back-off when they drop. Ctrl-C or SIGTERM ends cleanly: the video is finalised and every
JSON line written. The summary gives frames, mean FPS and p50/p95 latency (capture to result).
"""

from __future__ import annotations

import argparse
import json
import os
import queue
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

# The repository root replaces the script's own folder on the path: a module here (e.g. export/onnx_model.py)
# must not shadow a library's top-level module of the same name (onnxruntime's quantizer imports one).
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.pop(1)
# OpenCV logs a warning per failed camera probe; the app reports failures itself, in one line.
os.environ.setdefault("OPENCV_LOG_LEVEL", "ERROR")

from runtimes.cli import run_cli
from runtimes.errors import UserError

_END = object()


class Outputs:
    """The annotated video and the JSON lines, written to temporary files and renamed into place on close."""

    def __init__(self, video: Optional[Path], jsonl: Optional[Path], fps: float) -> None:
        from runtimes.atomic import check_output_dir

        for path in (video, jsonl):
            if path is not None:
                check_output_dir(path)
        self.video, self.jsonl, self.fps = video, jsonl, fps
        self._writer: Any = None
        self._json_file = None
        if jsonl is not None:
            self._json_tmp = jsonl.with_name(f".{jsonl.name}.tmp")
            self._json_file = open(self._json_tmp, "w")
        if video is not None:
            self._video_tmp = video.with_name(f".{video.stem}.tmp{video.suffix}")

    def write(self, frame, record: Dict[str, Any]) -> None:
        import cv2

        if self.video is not None:
            if self._writer is None:
                fourcc = cv2.VideoWriter.fourcc(*("MJPG" if self.video.suffix.lower() == ".avi" else "mp4v"))
                self._writer = cv2.VideoWriter(str(self._video_tmp), fourcc, self.fps,
                                               (frame.shape[1], frame.shape[0]))
                if not self._writer.isOpened():
                    raise UserError(f"{self.video}: OpenCV cannot write this video format; use .mp4 or .avi")
            self._writer.write(frame)
        if self._json_file is not None:
            self._json_file.write(json.dumps(record) + "\n")

    def close(self) -> None:
        if self._writer is not None:
            self._writer.release()
            os.replace(self._video_tmp, self.video)  # type: ignore[arg-type]  # set with _writer
        if self._json_file is not None:
            self._json_file.close()
            os.replace(self._json_tmp, self.jsonl)  # type: ignore[arg-type]  # set with _json_file


def percentile(values: List[float], q: float) -> float:
    import numpy as np

    return float(np.percentile(values, q)) if values else float("nan")


def run(args: argparse.Namespace, stop: threading.Event, log=print) -> Dict[str, Any]:
    """The pipelined loop; returns the summary. ``stop`` ends it early (signals set it)."""
    from apps.overlay import draw
    from apps.sources import CsiOptions, FileSource, open_source, parse_source
    from runtimes.loader import load_detector

    options: Dict[str, Any] = {}
    if args.score_threshold is not None:
        options["score_threshold"] = args.score_threshold
    from runtimes.loader import runtime_for

    # OpenVINO runs through its async queue (overlapping pre/post-processing with inference) unless
    # --async-depth 0; other runtimes take one synchronous call per frame.
    pipelined = args.async_depth > 0 and runtime_for(Path(args.model), args.runtime) == "openvino"
    if pipelined and args.async_depth > 1:
        options["hint"] = "throughput"  # one stream per request in flight: the requests infer in parallel
    detector = load_detector(args.model, args.runtime, **options)
    wanted = [c.strip() for c in args.classes.split(",")] if args.classes else None
    if wanted:
        unknown = [c for c in wanted if c not in detector.class_names]
        if unknown:
            raise UserError(f"--classes: {', '.join(unknown)} not among the model's classes "
                            f"({', '.join(detector.class_names[1:8])}, ...)")
    spec = parse_source(str(args.source), CsiOptions(args.csi_sensor_mode, args.csi_width, args.csi_height,
                                                     args.csi_fps, args.csi_flip))
    source = open_source(spec, args.realtime, log)
    log(f"source: {source.description}; model: {detector.describe()}")
    fps_out = source.fps if isinstance(source, FileSource) else 30.0
    outputs = Outputs(args.output, args.json, fps_out)
    show = not args.headless
    if show and not os.environ.get("DISPLAY") and sys.platform.startswith("linux"):
        log("no DISPLAY: running headless")
        show = False

    captured: "queue.Queue[Any]" = queue.Queue(maxsize=2)
    results: "queue.Queue[Any]" = queue.Queue(maxsize=2)
    latencies: List[float] = []
    errors: List[BaseException] = []
    frames_done = [0]

    def capture() -> None:
        try:
            while not stop.is_set():
                t0 = time.perf_counter()
                item = source.read()
                if item is None:
                    break
                stamp = time.monotonic()
                captured.put((item, stamp, time.perf_counter() - t0))
                if args.max_frames and item[0] + 1 >= args.max_frames:
                    break
        except BaseException as exc:  # handed to the main thread
            errors.append(exc)
        finally:
            captured.put(_END)

    def output() -> None:
        import cv2

        window_fps = 0.0
        last = time.monotonic()
        try:
            while True:
                item = results.get()
                if item is _END:
                    break
                (index, stamp_s, frame), stamp, timings, dets = item
                t0 = time.perf_counter()
                now = time.monotonic()
                rate = 1.0 / max(now - last, 1e-6)
                window_fps = 0.9 * window_fps + 0.1 * rate if window_fps else rate  # smoothed for display
                last = now
                if args.output is not None or show:
                    draw(frame, dets, window_fps, {k: 1000 * v for k, v in timings.items()})
                timings["draw"] = time.perf_counter() - t0
                latency = time.monotonic() - stamp
                latencies.append(latency)
                outputs.write(frame, {"frame": index, "timestamp": round(stamp_s, 6),
                                      "detections": dets.to_list(),
                                      "timings_ms": {k: round(1000 * v, 3) for k, v in timings.items()},
                                      "latency_ms": round(1000 * latency, 3)})
                frames_done[0] += 1
                if show:
                    cv2.imshow("ssd-edge", frame)
                    if cv2.waitKey(1) & 0xFF in (ord("q"), 27):
                        stop.set()
        except BaseException as exc:
            errors.append(exc)
            stop.set()

    threads = [threading.Thread(target=capture, name="capture", daemon=True),
               threading.Thread(target=output, name="output", daemon=True)]

    def deliver(item: Any, dets: Any, timings: Dict[str, float]) -> None:
        frame_item, stamp, capture_s = item
        if wanted:
            dets = dets.filter(classes=wanted)
        result = (frame_item, stamp, dict(capture=capture_s, **timings), dets)
        while threads[1].is_alive():  # never block forever on an output thread that has died
            try:
                results.put(result, timeout=0.2)
                return
            except queue.Full:
                continue

    stream = None
    if pipelined:
        from runtimes.openvino_runner import AsyncStream, OpenVINODetector

        assert isinstance(detector, OpenVINODetector)  # load_detector chose it from the same runtime_for
        stream = AsyncStream(detector, args.async_depth, deliver)
    for t in threads:
        t.start()
    started = time.monotonic()
    try:
        while not stop.is_set():
            try:
                item = captured.get(timeout=0.2)
            except queue.Empty:
                continue
            if item is _END:
                break
            if stream is not None:
                stream.submit(item[0][2], item)
            else:
                deliver(item, detector(item[0][2]), detector.last_timings)
    finally:
        if stream is not None:
            stream.close()  # every submitted frame reaches the output before it ends
        stop.set()
        while True:  # unblock the capture thread if it waits on a full queue
            try:
                captured.get_nowait()
            except queue.Empty:
                break
        results.put(_END)
        threads[1].join()
        threads[0].join(timeout=5)
        source.close()
        outputs.close()
    elapsed = time.monotonic() - started
    if errors:
        raise errors[0]
    ms = [1000 * v for v in latencies]
    summary = {"frames": frames_done[0], "seconds": round(elapsed, 3),
               "mean_fps": round(frames_done[0] / elapsed, 3) if elapsed > 0 else 0.0,
               "latency_p50_ms": round(percentile(ms, 50), 3), "latency_p95_ms": round(percentile(ms, 95), 3),
               "dropped_stale_frames": getattr(source, "dropped", 0), "reopens": getattr(source, "reopens", 0)}
    return summary


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", type=Path, required=True, help="TensorRT .engine, OpenVINO .xml or .onnx")
    p.add_argument("--runtime", help="force a runtime (default: by file type)")
    p.add_argument("--source", default="0", help="camera index, /dev/videoN, csi://N, rtsp/http URL, GStreamer "
                                                 "pipeline, video file or image folder (default: %(default)s)")
    p.add_argument("--async-depth", type=int, default=2,
                   help="OpenVINO requests in flight (throughput hint, one stream each), so pre- and "
                        "post-processing overlap inference: the highest frame rate; 0: one synchronous call per "
                        "frame with the latency hint: the lowest delay per frame (default: %(default)s)")
    p.add_argument("--headless", action="store_true", help="no window (default: show one when a display exists)")
    p.add_argument("--output", type=Path, help="write the annotated video here (.mp4 or .avi)")
    p.add_argument("--json", type=Path, help="write one JSON line per frame here")
    p.add_argument("--max-frames", type=int, default=0, help="stop after N frames (default: 0 = no limit)")
    p.add_argument("--score-threshold", type=float, help="show detections above this (default: the model's)")
    p.add_argument("--classes", help="comma-separated class names to keep (default: all)")
    p.add_argument("--realtime", action="store_true", help="files: drop frames to keep the file's pace")
    csi = p.add_argument_group("CSI camera (csi://N), also USB resolution")
    csi.add_argument("--csi-sensor-mode", type=int, default=-1, help="sensor mode (default: -1 = automatic)")
    csi.add_argument("--csi-width", type=int, default=1280, help="default: %(default)s")
    csi.add_argument("--csi-height", type=int, default=720, help="default: %(default)s")
    csi.add_argument("--csi-fps", type=int, default=30, help="default: %(default)s")
    csi.add_argument("--csi-flip", type=int, default=0, help="nvvidconv flip-method (default: %(default)s)")
    return p


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    stop = threading.Event()

    def on_signal(signum, _frame) -> None:
        print(f"{signal.Signals(signum).name}: finishing", file=sys.stderr, flush=True)
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    summary = run(args, stop)
    print("summary: " + json.dumps(summary), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main))
