"""Does a setting the app controls remove the two speeds a compiled OpenVINO model settles at on these VMs?

    python benchmarks/openvino_bimodal.py [--compilations 8] [--calls 80] [--precision fp32] [--settings ...]

The same IR (the demo model, batch 1, as the camera app's default schedule runs it) is compiled again and
again, under each setting in turn (settings alternate compilation by compilation, so drift hits all alike).
Each compilation is warmed up, then timed in two windows half a second apart: the median network call of
each window (a frame is pre-processed with OpenCV before every call, as in the app, outside the timing).
"Settled" is the second window; a compilation whose two windows differ by more than 15% changed speed
during its life. A compilation is "slow" when it settled more than ``--slow-ratio`` times the median
settled compilation of the whole run (the two speeds are ~1.6x apart; a ratio to the fastest would count
one lucky outlier's neighbours as slow).

Settings (all with the latency hint and FP32 compute, as the runner compiles, unless they change it):
INFERENCE_NUM_THREADS 1 / 2, NUM_STREAMS 2, ENABLE_CPU_PINNING on / off, SCHEDULING_CORE_TYPE PCORE_ONLY,
the throughput hint, OpenCV's own thread pool on (cv2.setNumThreads default) instead of off, two capture
threads (decoding a 640x480 video at 30 FPS each) started before the compilation instead of after it, and a
fresh process per compilation.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, List, Tuple

import numpy as np

# The repository root replaces the script's own folder on the path: a module here (e.g. export/onnx_model.py)
# must not shadow a library's top-level module of the same name (onnxruntime's quantizer imports one).
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.pop(1)

from benchmarks.batching import DEFAULT_WORK, load_average, model_files, test_frames

BASE_CONFIG = {"PERFORMANCE_HINT": "LATENCY", "INFERENCE_PRECISION_HINT": "f32"}


@dataclass(frozen=True)
class Setting:
    name: str
    config: Dict[str, Any] = field(default_factory=dict)  # added to (or replacing keys of) BASE_CONFIG
    capture_first: bool = False  # capture threads started before compiling (else after)
    opencv_threads: bool = False  # OpenCV's thread pool left on (the apps turn it off)
    fresh_process: bool = False


SETTINGS = [
    Setting("default"),
    Setting("threads 1", {"INFERENCE_NUM_THREADS": 1}),
    Setting("threads 2", {"INFERENCE_NUM_THREADS": 2}),
    Setting("streams 2", {"NUM_STREAMS": 2}),
    Setting("pinning on", {"ENABLE_CPU_PINNING": True}),
    Setting("pinning off", {"ENABLE_CPU_PINNING": False}),
    Setting("pcore only", {"SCHEDULING_CORE_TYPE": "PCORE_ONLY"}),
    Setting("throughput hint", {"PERFORMANCE_HINT": "THROUGHPUT"}),
    Setting("opencv threads on", opencv_threads=True),
    Setting("capture before compile", capture_first=True),
    Setting("fresh process", fresh_process=True),
]


class Captures:
    """``count`` threads decoding ``video`` at ``fps`` each (the camera app's grab threads, paced like
    cameras), until stopped."""

    def __init__(self, video: Path, count: int = 2, fps: float = 30.0) -> None:
        self.video, self.fps = video, fps
        self.halt = threading.Event()
        self.threads = [threading.Thread(target=self._run, daemon=True, name=f"capture-{i}") for i in range(count)]

    def _run(self) -> None:
        import cv2

        cap = cv2.VideoCapture(str(self.video))
        while not self.halt.wait(1.0 / self.fps):
            ok, _ = cap.read()
            if not ok:
                cap.set(cv2.CAP_PROP_POS_FRAMES, 0)
        cap.release()

    def start(self) -> "Captures":
        for t in self.threads:
            t.start()
        return self

    def stop(self) -> None:
        self.halt.set()
        for t in self.threads:
            t.join()


def compile_model(xml: Path, config: Dict[str, Any]):
    """``xml`` at batch 1, taking BGR pixels as the runner compiles it, with ``config``; (compiled, meta)."""
    import openvino as ov

    from runtimes.openvino_runner import read_metadata, take_bgr

    core = ov.Core()
    model = core.read_model(str(xml))
    meta = read_metadata(model, str(xml))
    shape = model.input(0).get_partial_shape()
    shape[0] = ov.Dimension(1)
    model.reshape({model.input(0): shape})
    model = take_bgr(model, meta)
    return core, core.compile_model(model, "CPU", config), meta


def settle(xml: Path, config: Dict[str, Any], frames: List[np.ndarray], calls: int,
           before: Callable[[], None] = lambda: None,
           after: Callable[[], None] = lambda: None) -> Tuple[float, float, float]:
    """One compilation's median network call (ms) in two windows of ``calls`` calls, 0.5 s apart, and the
    process's CPU ms per call in the second (all threads: inference, the pre-processing between calls, captures)."""
    from runtimes.metadata import InputSpec
    from runtimes.preprocess import Preprocessor

    before()
    core, compiled, meta = compile_model(xml, config)
    after()
    request = compiled.create_infer_request()
    prep = Preprocessor(meta, InputSpec(layout="NHWC", channel_order="BGR", normalisation_in_graph=True))
    windows, cpu = [], 0.0
    for window in range(3):
        times = []
        cpu_start = time.process_time()
        for i in range(calls if window else 30):  # window 0: warm-up
            batch = np.ascontiguousarray(prep(frames[i % len(frames)]), dtype=np.float32)
            start = time.perf_counter()
            request.start_async({0: batch}, share_inputs=True)
            request.wait()
            times.append(time.perf_counter() - start)
        windows.append(1000 * statistics.median(times))
        cpu = 1000 * (time.process_time() - cpu_start) / len(times)  # the process's CPU ms per call (+ prep)
        if window == 1:
            time.sleep(0.5)
    del request, compiled, core
    return windows[1], windows[2], cpu


def run_setting(setting: Setting, xml: Path, frames: List[np.ndarray], video: Path,
                calls: int) -> Tuple[float, float, float]:
    import cv2

    if setting.fresh_process:
        cmd = [sys.executable, str(Path(__file__).resolve()), "--child", str(xml), "--calls", str(calls)]
        out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout.strip().splitlines()
        first, second, cpu = json.loads(out[-1])
        return float(first), float(second), float(cpu)
    config = dict(BASE_CONFIG, **setting.config)
    captures = Captures(video)
    if setting.opencv_threads:
        cv2.setNumThreads(-1)  # OpenCV's default pool (one thread per core)
    try:
        if setting.capture_first:
            return settle(xml, config, frames, calls, before=captures.start)
        return settle(xml, config, frames, calls, after=captures.start)
    finally:
        captures.stop()
        cv2.setNumThreads(1)


def child(xml: Path, calls: int) -> None:
    """The fresh-process setting's side: one default compilation, settled with capture threads after it."""
    import cv2

    cv2.setNumThreads(1)
    frames = test_frames(20)
    video = write_video(Path(tempfile.mkdtemp(prefix="bimodal-child-")), frames)
    captures = Captures(video)
    try:
        found = settle(xml, dict(BASE_CONFIG), frames, calls, after=captures.start)
    finally:
        captures.stop()
    print(json.dumps(found), flush=True)


def write_video(folder: Path, frames: List[np.ndarray]) -> Path:
    import cv2

    path = folder / "capture.avi"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter.fourcc(*"MJPG"), 30.0, (640, 480))
    for frame in frames * 5:
        writer.write(frame)
    writer.release()
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--compilations", type=int, default=8, help="per setting (default: %(default)s)")
    parser.add_argument("--calls", type=int, default=80, help="timed calls per window (default: %(default)s)")
    parser.add_argument("--precision", default="fp32", choices=["fp32", "int8"], help="default: %(default)s")
    parser.add_argument("--settings", nargs="+", default=[s.name for s in SETTINGS],
                        choices=[s.name for s in SETTINGS], metavar="SETTING",
                        help="which settings (default: all: " + ", ".join(repr(s.name) for s in SETTINGS) + ")")
    parser.add_argument("--slow-ratio", type=float, default=1.3,
                        help="slow: settled above this times the run's median (default: %(default)s)")
    parser.add_argument("--work", type=Path, default=DEFAULT_WORK, help="built models (default: %(default)s)")
    parser.add_argument("--child", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child is not None:
        child(args.child, args.calls)
        return
    import cv2

    cv2.setNumThreads(1)  # as the camera app does beside a CPU runtime
    xml = model_files("demo", args.work, 300)[f"openvino {args.precision}"]
    frames = test_frames(20)
    video = write_video(Path(tempfile.mkdtemp(prefix="bimodal-")), frames)
    chosen = [s for s in SETTINGS if s.name in args.settings]
    found: Dict[str, List[Tuple[float, float, float]]] = {s.name: [] for s in chosen}
    loads = []
    began = time.monotonic()
    print(f"{xml.name}: {args.compilations} compilations x {len(chosen)} settings; load {load_average()}", flush=True)
    for i in range(args.compilations):
        order = chosen if i % 2 == 0 else chosen[::-1]
        for setting in order:
            try:
                found[setting.name].append(run_setting(setting, xml, frames, video, args.calls))
            except (RuntimeError, subprocess.CalledProcessError) as exc:  # reported; the other settings go on
                print(f"{setting.name}: FAILED: {exc}", flush=True)
        loads.append(load_average())
        print(f"pass {i + 1}: {time.monotonic() - began:.0f} s, load {loads[-1]}; "
              + ", ".join(f"{n} {v[-1][1]:.1f}" for n, v in found.items() if v), flush=True)
    middle = statistics.median(run[1] for runs in found.values() for run in runs)
    limit = args.slow_ratio * middle
    print(f"\nsettled network call per compilation, ms (median of all {middle:.2f}; slow: > {limit:.2f})\n")
    print("| setting | compilations | slow | median | settled, sorted | changed speed in life | CPU ms per call, "
          "median fast / slow |")
    print("|---|---|---|---|---|---|---|")
    for name, runs in found.items():
        if not runs:
            continue
        settled = sorted(run[1] for run in runs)
        slow = sum(v > limit for v in settled)
        changed = sum(abs(a - b) / b > 0.15 for a, b, _ in runs)
        cpu_fast = [c for _, b, c in runs if b <= limit]
        cpu_slow = [c for _, b, c in runs if b > limit]
        cpu = " / ".join(f"{statistics.median(v):.1f}" if v else "-" for v in (cpu_fast, cpu_slow))
        print(f"| {name} | {len(runs)} | {slow} | {statistics.median(settled):.2f} | "
              f"{', '.join(f'{v:.1f}' for v in settled)} | {changed} | {cpu} |")
    print(f"\nload average after each pass: {'; '.join(loads)}")


if __name__ == "__main__":
    main()
