"""What one frame of a 1080p camera costs this box, step by step (benchmarks/camera_bound.FrameCosts), measured
apart from the camera app, for benchmarks/cameras.py's bound.

Decoding: the process's CPU time (user + system, GStreamer's threads included) reading sources through the
decode plan the camera chooses with a camera for every core (streams/decoding.py: scaled to the model's input,
its decoder threads), one alone or several at once. The rest: this thread's CPU
time over the decoded frames: the motion test (streams/motion.py, also the share of frames it sends to the
detector), the detector's pre-processing, the post-processor on the network's real outputs at the camera's
tracking score threshold, the tracker's update and prediction. Inference: the CPU time of benchmark_app's calls
with the throughput hint at batch 1 (on a quiet machine, cores / its images per second).
"""

from __future__ import annotations

import resource
import time
from pathlib import Path
from typing import Dict, List, Sequence, Tuple

import numpy as np

from benchmarks.camera_bound import FrameCosts
from benchmarks.decode_scaling import cpu_seconds as process_cpu


def decode_cost(locations: Sequence[str], codec: str, size: Tuple[int, int], frames: int, fps: float,
                skip: int = 10) -> Tuple[float, List[np.ndarray], str]:
    """(CPU seconds per frame, the first location's frames, the plan's line) reading ``frames`` frames of each
    of ``locations`` (files or rtsp:// URLs) at once, a thread each, ``fps`` frames a second each, through the
    camera's decode plan at ``size`` on a box with a camera for every core (its decoder threads), after
    ``skip`` untimed ones (set-up). As a full box decodes cameras: several at once, sharing the caches and
    the memory, each frame decoded when it is due (a decoder woken for each frame costs more a frame than
    one decoding a file flat out; docs/multistream.md, "The bound")."""
    import os
    import threading

    import cv2

    from streams.decoding import DecodeRequest, available_elements, decoder_threads, plan_decoding

    threads = decoder_threads(os.cpu_count() or 1)
    plans = [plan_decoding(DecodeRequest(location, codec, size, threads), available_elements())
             for location in locations]
    captures = [cv2.VideoCapture(plan.launch, cv2.CAP_GSTREAMER) for plan in plans]
    got: List[List[np.ndarray]] = [[] for _ in captures]
    ready = threading.Barrier(len(captures) + 1)

    def read(capture, into: List[np.ndarray]) -> None:
        try:
            for _ in range(skip):
                capture.read()
        finally:
            ready.wait()
        start = time.monotonic()
        while len(into) < frames:  # (OpenCV lets go of the GIL while it reads)
            early = start + len(into) / fps - time.monotonic()
            if early > 0:
                time.sleep(early)  # the frame is not due yet: a camera's pace
            ok, frame = capture.read()
            if not ok:
                break
            into.append(frame)

    readers = [threading.Thread(target=read, args=(c, into), daemon=True) for c, into in zip(captures, got)]
    try:
        for reader in readers:
            reader.start()
        ready.wait()
        started = process_cpu()
        for reader in readers:
            reader.join()
        spent = process_cpu() - started
    finally:
        for capture in captures:
            capture.release()
    for location, plan, frames_read in zip(locations, plans, got):
        if len(frames_read) < frames // 2:
            raise RuntimeError(f"{location}: read {len(frames_read)} of {frames} frames through {plan.launch}")
    return spent / sum(len(f) for f in got), got[0], plans[0].reason


def thread_seconds(work, repeat: int = 1) -> float:
    """This thread's CPU seconds for ``repeat`` calls of ``work()``, per call."""
    started = time.thread_time()
    for _ in range(repeat):
        work()
    return (time.thread_time() - started) / repeat


def motion_cost(frames: Sequence[np.ndarray]) -> Tuple[float, float]:
    """(CPU seconds per frame of the motion test at the camera's defaults, the share it sends to the detector)."""
    from streams.motion import MotionGate, MotionOptions

    gate = MotionGate(MotionOptions())
    verdicts: List[bool] = []
    seconds = thread_seconds(lambda: verdicts.extend(gate.check(f).detect for f in frames)) / len(frames)
    return seconds, sum(verdicts) / len(verdicts)


def host_costs(detector, frames: Sequence[np.ndarray], sample: int = 40) -> Dict[str, float]:
    """CPU seconds per frame of ``detector``'s pre-processing and post-processing (the network's real outputs
    of the frames), the tracker's update with those detections and its prediction, on the first ``sample``
    frames; and the mean detections a frame."""
    from analytics.tracker import ByteTracker

    frames = list(frames[:sample])
    outputs = [detector.infer(detector.prepare(f)) for f in frames]
    sizes = [[(f.shape[0], f.shape[1])] for f in frames]
    time.sleep(0.5)  # the runtime's threads settle after those calls: they share the cores with this one
    pre = thread_seconds(lambda: [detector.prepare(f) for f in frames], 3) / len(frames)
    post = thread_seconds(lambda: [detector.postprocessor.batch(o, s) for o, s in zip(outputs, sizes)], 3)
    found = [detector.postprocessor.batch(o, s)[0] for o, s in zip(outputs, sizes)]
    warm = ByteTracker(num_classes=len(detector.class_names))
    for d in found:  # untimed: the first association imports and warms the assignment code
        warm.update(d.boxes, d.scores, d.labels)
    tracker = ByteTracker(num_classes=len(detector.class_names))
    track = thread_seconds(lambda: [tracker.update(d.boxes, d.scores, d.labels) for d in found], 3)
    predict = thread_seconds(lambda: [tracker.predict() for _ in found], 3)
    n = len(frames)
    return {"preprocess": pre, "postprocess": post / n, "track": track / n, "predict": predict / n,
            "detections": float(np.mean([len(d.scores) for d in found]))}


def benchmark_app_run(xml: Path, seconds: float) -> Tuple[float, int, float]:
    """(CPU seconds, inferences, images/s) of one benchmark_app run on ``xml`` for ``seconds`` (throughput hint,
    batch 1, as benchmarks/batching.benchmark_app calls it); the CPU is the child's, compiling included."""
    import re
    import subprocess

    from benchmarks.batching import benchmark_app_tool, ir_input_shape

    tool = benchmark_app_tool()
    if tool is None:
        raise RuntimeError("benchmark_app is missing beside this Python: pip install openvino")
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    out = subprocess.run([tool, "-m", str(xml), "-d", "CPU", "-hint", "throughput", "-ip", "f32", "-infer_precision",
                          "f32", "-shape", ir_input_shape(xml, 1), "-t", str(max(1, int(round(seconds))))],
                         capture_output=True, text=True).stdout
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    count = re.search(r"Count:\s+(\d+) iterations", out)
    throughput = re.search(r"Throughput:\s+([\d.]+)\s*FPS", out)
    if not (count and throughput):
        raise RuntimeError(f"benchmark_app printed no count on {xml}: {out.strip()[-300:]}")
    cpu = after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime
    return cpu, int(count.group(1)), float(throughput.group(1))


def inference_cost(xml: Path, seconds: float) -> Tuple[float, float]:
    """(CPU seconds one network call takes, benchmark_app's images/s on all cores): the CPU of a ``seconds`` run
    less a 1 s run's over the inferences between them, so compiling and warming up cancel out. CPU time, not
    cores / images/s: on a shared machine the first is what a call costs, the second what was left to it."""
    short_cpu, short_count, _ = benchmark_app_run(xml, 1)
    long_cpu, long_count, throughput = benchmark_app_run(xml, max(seconds, 2))
    return (long_cpu - short_cpu) / max(long_count - short_count, 1), throughput


def frame_costs(decode: float, host: Dict[str, float], inference: float, gate: float = 0.0) -> FrameCosts:
    return FrameCosts(decode=decode, preprocess=host["preprocess"], postprocess=host["postprocess"],
                      inference=inference, track=host["track"], predict=host["predict"], gate=gate)
