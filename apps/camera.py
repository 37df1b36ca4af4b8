"""Realtime detection on one or many cameras, streams, video files or image folders, with any model the
runtimes load; frames of all streams are batched through one detector.

    python apps/camera.py --model outputs/ssdlite320_shapes_int8.xml --source 0
    python apps/camera.py --model ssd.engine --source csi://0 --source csi://1 --headless --output out/ --json out.jsonl
    python apps/camera.py --model ssd.onnx --sources cameras.txt --score-threshold 0.5   # NAME=SOURCE per line
    python apps/camera.py --config box.yaml --config-writeback   # models, streams, zones, web view, control API

Each stream has a grab thread (live sources deliver their newest frame; files every frame), one inference
worker batches a frame of every stream that has one and keeps requests in flight, and each stream's output
draws and writes (on a worker thread of its own when it draws); see docs/multistream.md. Ctrl-C or SIGTERM
ends cleanly within 2 s whatever a source does: every video is finalised and every JSON line written. The
summary (one JSON line) gives frames, FPS, latency p50/p95 (capture to result; null without frames), stale
frames dropped and reopens, per stream and in total.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import threading
from pathlib import Path
from typing import Any, Dict, Optional, Sequence

# The repository root replaces the script's own folder on the path: a module here (e.g. export/onnx_model.py)
# must not shadow a library's top-level module of the same name (onnxruntime's quantizer imports one).
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.pop(1)
# OpenCV logs a warning per failed camera probe; the app reports failures itself, in one line.
os.environ.setdefault("OPENCV_LOG_LEVEL", "ERROR")

from runtimes.cli import run_cli
from runtimes.errors import UserError


def model_setup(args: argparse.Namespace):
    """What the detector is loaded with (streams/model_setup.py), from the flags."""
    from analytics.cli import tracking
    from streams.model_setup import ModelSetup

    return ModelSetup(args.model, args.runtime, args.batch_size, args.async_depth, args.score_threshold,
                      args.track_low_score if tracking(args) else None)


def pipeline_options(args: argparse.Namespace, class_names: Sequence[str], log=print, recording=None):
    """The pipeline's options; with ``recording`` (--record) file and rtsp:// streams are read through its tap."""
    from recording.cli import tap_readers
    from streams.capture import CaptureOptions
    from streams.pipeline import PipelineOptions

    keep = [c.strip() for c in args.keep_classes.split(",") if c.strip()] if args.keep_classes else None
    if keep:
        unknown = [c for c in keep if c not in class_names]
        if unknown:
            raise UserError(f"--keep-classes: {', '.join(unknown)} not among the model's classes "
                            f"({', '.join(class_names[1:8])}{', ...' if len(class_names) > 8 else ''})")
    show = not args.headless
    if show and not os.environ.get("DISPLAY") and sys.platform.startswith("linux"):
        log("no DISPLAY: running headless")
        show = False
    return PipelineOptions(
        batch_timeout_s=args.batch_timeout / 1000.0, classes=keep, show=show, output=args.output, json=args.json,
        capture=CaptureOptions(realtime=args.realtime, max_frames=args.max_frames, timeout_s=args.source_timeout,
                               max_wait_s=args.max_wait / 1000.0, decode=True,
                               reader_for=tap_readers(recording, args.source_timeout, log)
                               if recording is not None else None),
        gating=gating(args))


def gating(args: argparse.Namespace):
    """Which frames the detector sees (--interval, --motion*): streams/gating.py."""
    from streams.gating import gate_options, motion_options

    motion = motion_options(args.motion, args.motion_threshold, args.motion_max_skip, args.motion_mask)
    return gate_options(args.interval or [], motion)


def run(args: argparse.Namespace, stop: threading.Event, log=print) -> Dict[str, Any]:
    """Open the streams and the model, run until the streams end or ``stop`` is set; the summary (with the
    analytics' counts and sink figures when tracking is on)."""
    from analytics.cli import from_args as analytics_for
    from recording.cli import from_args as recording_for
    from streams.capture import parse_streams
    from streams.config import stream_specs
    from streams.model_setup import scheduled_detector
    from streams.pipeline import Pipeline
    from streams.sources import CsiOptions
    from webview.cli import from_args as live_view_for

    csi = CsiOptions(args.csi_sensor_mode, args.csi_width, args.csi_height, args.csi_fps, args.csi_flip)
    streams = parse_streams(stream_specs(args.source or [], args.sources), csi)  # bad sources before any work
    names = [stream.name for stream in streams]
    gating(args).check_streams(names)
    from streams.schedule_probe import ProbeOptions

    probe = ProbeOptions() if args.schedule == "measure" else None
    detector, schedule = scheduled_detector(model_setup(args), len(streams), log, probe)
    analytics = view = recording = None
    try:
        recording = recording_for(args, names, detector.class_names, log)  # class triggers before streams open
        analytics = analytics_for(args, names, detector.class_names, log, recording)
        view = live_view_for(args, names, log)
        if view is not None and recording is not None:
            view.add_component("recording", recording)  # /healthz says why it is paused, /metrics counts clips
        options = pipeline_options(args, detector.class_names, log, recording)
        pipeline = Pipeline(detector, streams, schedule, options, log, analytics, [view] if view is not None else [])
        pipeline.open(stop)
        summary = pipeline.run(stop)
    finally:
        if view is not None:
            view.close()
        if recording is not None:  # before the sinks: the snapshots it writes now still reach MQTT
            recording.close()
        analytics_summary = analytics.close() if analytics is not None else None
        detector.close()
    if analytics_summary is not None:
        summary["analytics"] = analytics_summary
    return summary


def build_parser() -> argparse.ArgumentParser:
    from streams.capture import DEFAULT_MAX_WAIT_S
    from streams.motion import MotionOptions
    from streams.scores import CAMERA_SCORE_THRESHOLD
    from streams.sources import DEFAULT_TIMEOUT_S

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", help="TensorRT .engine, OpenVINO .xml, .onnx, or a URL a runtime opens (e.g. "
                                   "http://host:8000/model); required without --config")
    p.add_argument("--runtime", help="force a runtime (default: by file type or URL scheme)")
    src = p.add_argument_group("streams")
    src.add_argument("--source", action="append",
                     help="camera index, /dev/videoN, csi://N, rtsp/http URL, GStreamer pipeline, video file or "
                          "image folder; repeat for several streams (default: 0, the first camera)")
    src.add_argument("--sources", type=Path, help="a file with one source per line, optionally NAME=SOURCE "
                                                  "(default names: cam0, cam1, ... in order)")
    src.add_argument("--realtime", action="store_true", help="files: drop frames to keep the file's pace")
    src.add_argument("--max-frames", type=int, default=0, help="stop each stream after N frames "
                                                               "(default: 0 = no limit)")
    src.add_argument("--source-timeout", type=float, default=DEFAULT_TIMEOUT_S,
                     help="seconds an HTTP/RTSP stream may deliver no frame (or take to open) before it is "
                          "reopened (default: %(default)s)")
    src.add_argument("--max-wait", type=float, default=1000 * DEFAULT_MAX_WAIT_S,
                     help="ms a camera's (or --realtime file's) frame may wait for the detector before it is "
                          "dropped as stale (default: %(default)g; 0: only the newest frame waits, the least "
                          "latency; more: fewer frames dropped in bursts, more latency)")
    sched = p.add_argument_group("inference")
    sched.add_argument("--batch-size", type=int, help="frames (of different streams) per network call, up to the "
                                                      "model's batch (default: 1 on a CPU runtime, else one per "
                                                      "stream)")
    sched.add_argument("--async-depth", type=int, help="requests in flight, so capture, pre- and post-processing "
                       "overlap inference (default: per runtime, see docs/multistream.md); 0: one synchronous "
                       "call at a time, OpenVINO's latency hint: the lowest delay per frame")
    sched.add_argument("--schedule", choices=("measure", "rule"), default="measure",
                       help="without --batch-size and --async-depth, on a CPU runtime with 2+ streams: measure the "
                            "batch and requests in flight at start, cached per model and machine (measure), or "
                            "take the fixed rule: 1 frame per call, 4 in flight (default: %(default)s)")
    sched.add_argument("--batch-timeout", type=float, default=10.0,
                       help="ms a batch waits for slower streams' frames (default: %(default)s)")
    sched.add_argument("--score-threshold", type=float,
                       help=f"keep detections scoring above this (default: {CAMERA_SCORE_THRESHOLD}, "
                            "--track-low-score with --track; never below a threshold built into the model)")
    sched.add_argument("--keep-classes", help="comma-separated class names to keep (default: all)")
    gate = p.add_argument_group("frames the detector sees (the tracker predicts the others, with --track)")
    gate.add_argument("--interval", action="append", metavar="N|NAME=N",
                      help="the detector sees every Nth frame of each stream (NAME=N: of that stream; repeatable), "
                           "streams staggered so its load stays flat (default: 1, every frame)")
    gate.add_argument("--motion", action="store_true",
                      help="detect only frames with motion (a frame difference on a small grey copy), and at least "
                           "every --motion-max-skip frames; motion boxes in the JSON lines")
    gate.add_argument("--motion-threshold", type=int, metavar="LEVELS",
                      help=f"grey levels (1-255) a pixel must change by to move (default: {MotionOptions.threshold})")
    gate.add_argument("--motion-max-skip", type=int, metavar="K",
                      help=f"detect at least every K frames whatever moves (default: {MotionOptions.max_skip})")
    gate.add_argument("--motion-mask", metavar="'x,y x,y x,y; ...'",
                      help="polygons in the frame's pixels where motion is ignored (checked against each stream's "
                           "first frame)")
    out = p.add_argument_group("outputs")
    out.add_argument("--headless", action="store_true", help="no window (default: a mosaic of all streams when a "
                                                             "display exists)")
    out.add_argument("--output", type=Path, help="annotated video: X.mp4/.avi with one stream, or a folder "
                                                 "(one NAME.mp4 per stream)")
    out.add_argument("--json", type=Path, help="write one JSON line per frame here (with the stream's name)")
    csi = p.add_argument_group("CSI camera (csi://N), also USB resolution")
    csi.add_argument("--csi-sensor-mode", type=int, default=-1, help="sensor mode (default: -1 = automatic)")
    csi.add_argument("--csi-width", type=int, default=1280, help="default: %(default)s")
    csi.add_argument("--csi-height", type=int, default=720, help="default: %(default)s")
    csi.add_argument("--csi-fps", type=int, default=30, help="default: %(default)s")
    csi.add_argument("--csi-flip", type=int, default=0, help="nvvidconv flip-method (default: %(default)s)")
    from analytics.cli import add_arguments as analytics_arguments
    from box.app import add_arguments as box_arguments
    from recording.cli import add_arguments as recording_arguments
    from webview.cli import add_arguments as live_view_arguments

    analytics_arguments(p)
    recording_arguments(p)
    live_view_arguments(p)
    box_arguments(p)
    return p


def check_at_start(args: argparse.Namespace) -> None:
    """Output paths (a folder, FIFO or device is refused: runtimes/atomic.py), --interval and --motion*, and
    the analytics' checks that need no model, before the model or a stream is opened."""
    from analytics.cli import check_at_start as check_analytics_at_start
    from recording.cli import check_at_start as check_recording_at_start
    from runtimes.atomic import check_output_path
    from streams.outputs import VIDEO_SUFFIXES

    if args.json:
        check_output_path(args.json, "--json")
    if args.output and args.output.suffix.lower() in VIDEO_SUFFIXES:  # (a folder of videos is checked at open)
        check_output_path(args.output, "--output")
    check_analytics_at_start(args)
    check_recording_at_start(args)
    gating(args)


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.config is not None:
        return run_from_config(parser, argv, args)
    if args.config_writeback:
        raise UserError("--config-writeback needs --config FILE (the file it writes)")
    if not args.model:
        raise UserError("give --model FILE (or --config FILE); see --help")
    if args.batch_size is not None and args.batch_size < 1:
        raise UserError(f"--batch-size must be at least 1, got {args.batch_size}")
    if not args.batch_timeout > 0:  # also NaN
        raise UserError(f"--batch-timeout must be more than 0 ms, got {args.batch_timeout}")
    if not 0 < args.source_timeout < 3600:  # also NaN
        raise UserError(f"--source-timeout must be more than 0 and less than 3600 seconds, got {args.source_timeout}")
    if not 0 <= args.max_wait <= 10000:  # also NaN
        raise UserError(f"--max-wait must be 0 to 10000 ms, got {args.max_wait:g}")
    check_at_start(args)
    summary = run(args, stop_on_signals())
    print("summary: " + json.dumps(summary), flush=True)
    return 0


def stop_on_signals() -> threading.Event:
    """An event SIGTERM and SIGINT set: the run ends cleanly."""
    stop = threading.Event()

    def on_signal(signum, _frame) -> None:
        print(f"{signal.Signals(signum).name}: finishing", file=sys.stderr, flush=True)
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    return stop


def run_from_config(parser: argparse.ArgumentParser, argv: Optional[Sequence[str]], args: argparse.Namespace) -> int:
    """--config: the file and the flags over it checked (every problem, exit 2), then the box (box/app.py)."""
    from box.app import box_start, configuration_line, run_box

    start = box_start(parser, argv, args)
    print(configuration_line(start.config), flush=True)
    summary = run_box(start, stop_on_signals())
    print("summary: " + json.dumps(summary), flush=True)
    return 0


if __name__ == "__main__":
    from streams.capture import exit_past_stuck_sources

    exit_past_stuck_sources(run_cli(main))
