"""Many streams through apps/camera.py against the box's bound, on OpenVINO FP32 and INT8 with the demo model,
side by side in one run.

    python benchmarks/multistream.py [--rounds 2] [--duration 5] [--streams 1 2 4 8] [--quick]

Streams are 640x480 MJPG videos written from the demo data set's test images, long enough that none ends
before the run is stopped after ``--duration`` seconds (a file stream is read as fast as the pipeline takes
its frames, so every run is saturated). The camera app's ``run(args, stop, log)`` is imported and run headless
with no outputs; the IRs are the demo model's dynamic-batch FP32 and INT8 IRs (benchmarks/batching.py builds
them), so every ``--batch-size`` applies.

Per round, alternating so that drift hits every variant alike:

* the bound, before and after the round's runs: ``benchmark_app -hint throughput -b N`` on each IR (N = 1,
  2, 4, 8), the best images/s; and the host's CPU cost per frame, measured in this process (thread CPU
  time): decoding a 640x480 frame of the video, the detector's pre-processing, and the post-processor on the
  network's real outputs. With C cores
  and host cost h CPU-seconds per frame, inference gets the CPU left: bound = T / (1 + T * h / C), i.e. T
  scaled by the share 1 - bound * h / C;
* the app with 1, 2, 4, 8 streams at its default schedule (``plan_schedule``): aggregate FPS, the worst
  stream's FPS over the best's, each stream's latency p95, and where its CPU went: each thread's CPU time
  (/proc) while it streamed, per frame, by what the thread does;
* the scheduling knobs at each ``--knob-streams`` count: ``--batch-size``, ``--async-depth``, ``--batch-timeout``;
* N independent single-stream processes of apps/camera.py side by side (what batching in one process buys);
* the first ``--knob-streams`` count of streams at the videos' own 30 FPS (``--realtime``, as cameras
  deliver frames): the latency below saturation (saturated, a file frame's latency includes its wait in the
  queue).

The tables give medians over rounds. Other sessions share this machine: the load average is printed with
every run.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

# The repository root replaces the script's own folder on the path: a module here (e.g. export/onnx_model.py)
# must not shadow a library's top-level module of the same name (onnxruntime's quantizer imports one).
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.pop(1)

from benchmarks.batching import DEFAULT_WORK, benchmark_app, load_average, model_files, test_frames
from benchmarks.batching import median as med

ROOT = Path(__file__).resolve().parents[1]

PRECISIONS = ("fp32", "int8")


@dataclass(frozen=True)
class Variant:
    """One measured configuration: ``streams`` streams of ``precision``, the app's knobs (None: its
    default), or ``processes``: one single-stream app process per stream."""

    precision: str
    streams: int
    batch: Optional[int] = None
    depth: Optional[int] = None
    timeout_ms: float = 10.0
    processes: bool = False
    realtime: bool = False  # files at their own 30 FPS (--realtime), as cameras deliver: latency below saturation
    static: bool = False  # the IR built from the static batch-1 ONNX (what max_batch=1 would compile)
    rule: bool = False  # the fixed rule (--schedule rule) instead of the schedule measured at start

    @property
    def label(self) -> str:
        if self.processes:
            return f"{self.streams} processes x 1 stream"
        if self.realtime:
            return f"{self.streams} streams at 30 FPS each (--realtime)"
        if self.static:
            return f"{self.streams} streams (default schedule), static batch-1 IR"
        if self.rule:
            return f"{self.streams} streams --schedule rule"
        knobs = [f"--batch-size {self.batch}" if self.batch is not None else "",
                 f"--async-depth {self.depth}" if self.depth is not None else "",
                 f"--batch-timeout {self.timeout_ms:g}" if self.timeout_ms != 10.0 else ""]
        return f"{self.streams} streams " + (" ".join(k for k in knobs if k) or "(default schedule)")

    def app_args(self, xml: Path, videos: Sequence[Path]) -> List[str]:
        args = ["--model", str(xml), "--headless", "--batch-timeout", f"{self.timeout_ms:g}"]
        for i in range(self.streams):
            args += ["--source", str(videos[i % len(videos)])]
        if self.batch is not None:
            args += ["--batch-size", str(self.batch)]
        if self.depth is not None:
            args += ["--async-depth", str(self.depth)]
        if self.realtime:
            args.append("--realtime")
        if self.rule:
            args += ["--schedule", "rule"]
        return args


# -- inputs ------------------------------------------------------------------------------------------------

def write_videos(folder: Path, count: int, frames: int) -> List[Path]:
    """``count`` 640x480 MJPG videos of ``frames`` frames, each cycling the test images from its own offset."""
    import cv2

    images = test_frames(250)
    videos = []
    for v in range(count):
        path = folder / f"stream{v}.avi"
        writer = cv2.VideoWriter(str(path), cv2.VideoWriter.fourcc(*"MJPG"), 30.0, (640, 480))
        for i in range(frames):
            writer.write(images[(i + 37 * v) % len(images)])
        writer.release()
        videos.append(path)
    return videos


# -- the bound -----------------------------------------------------------------------------------------------

def host_costs(xml: Path, video: Path, count: int = 200) -> Dict[str, float]:
    """CPU seconds per frame (this thread's CPU time) of decoding a frame of ``video``, the detector's
    pre-processing of it, and the post-processor on the network's outputs for it (at the camera's score
    threshold, as the app runs it)."""
    import cv2

    from runtimes.loader import load_detector
    from streams.scores import CAMERA_SCORE_THRESHOLD

    cap = cv2.VideoCapture(str(video))
    for _ in range(20):  # untimed: the decoder's set-up on its first frames is not a per-frame cost
        cap.read()
    frames = []
    started = time.thread_time()
    for _ in range(count):
        ok, frame = cap.read()
        if not ok:
            break
        frames.append(frame)
    decode = (time.thread_time() - started) / len(frames)
    cap.release()
    with load_detector(xml, max_batch=1, score_threshold=CAMERA_SCORE_THRESHOLD) as detector:
        sample = frames[:40]
        prepared, outputs = [], []
        for frame in sample:
            prepared.append(detector.prepare(frame))
            outputs.append(detector.infer(prepared[-1]))
        size = [(frame.shape[0], frame.shape[1]) for frame in sample]
        time.sleep(0.2)  # inference threads settle; they do not run on this thread anyway
        started = time.thread_time()
        for _ in range(3):
            for frame in sample:
                detector.prepare(frame)
        pre = (time.thread_time() - started) / (3 * len(sample))
        started = time.thread_time()
        for _ in range(3):
            for out, hw in zip(outputs, size):
                detector.postprocessor.batch(out, [hw])
        post = (time.thread_time() - started) / (3 * len(sample))
    return {"decode": decode, "preprocess": pre, "postprocess": post}


def bound_fps(throughput: float, host_s: float, cores: int) -> float:
    """Frames/s when each frame costs ``host_s`` CPU-seconds on the host and inference, which reaches
    ``throughput`` with all ``cores``, gets the rest: F = T * (1 - F * h / C)  =>  F = T / (1 + T * h / C)."""
    return throughput / (1.0 + throughput * host_s / cores)


def thread_cpu() -> Dict[int, float]:
    """CPU seconds (user + system) of each thread of this process, by native thread id (Linux; {} elsewhere)."""
    found: Dict[int, float] = {}
    tick = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
    try:
        tids = os.listdir("/proc/self/task")
    except OSError:
        return found
    for tid in tids:
        try:
            with open(f"/proc/self/task/{tid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()  # after the command name, which may hold spaces
        except OSError:  # the thread ended meanwhile
            continue
        found[int(tid)] = (int(fields[11]) + int(fields[12])) / tick
    return found


RUNTIME_THREADS = "runtime (inference; OpenVINO's callbacks, with post-processing)"
THREAD_ROLES = (("capture-", "capture (decoding)"), ("output-", "output workers"),
                ("MainThread", "scheduler (pre-processing, submitting)"))


def cpu_by_role(before: Dict[int, float], after: Dict[int, float], names: Dict[int, str]) -> Dict[str, float]:
    """CPU seconds between two :func:`thread_cpu` snapshots by what the threads do: the app's Python threads by
    name, threads Python did not start (the runtime's) together."""
    roles: Dict[str, float] = {}
    for tid, seconds in after.items():
        name = names.get(tid)
        role = RUNTIME_THREADS if name is None else next(
            (r for prefix, r in THREAD_ROLES if name.startswith(prefix)), "other Python threads")
        roles[role] = roles.get(role, 0.0) + seconds - before.get(tid, 0.0)
    return roles


# -- runs ----------------------------------------------------------------------------------------------------

def run_app(variant: Variant, xml: Path, videos: Sequence[Path], duration: float) -> Dict[str, Any]:
    """apps/camera.py's run() in this process, stopped after ``duration`` s of streaming; its summary."""
    from apps.camera import build_parser, run

    args = build_parser().parse_args(variant.app_args(xml, videos))
    stop = threading.Event()
    timer: List[threading.Timer] = []
    cpu: Dict[str, Any] = {}

    def finish() -> None:  # the threads' CPU while they still run, then the stop
        cpu["after"], cpu["names"] = thread_cpu(), {t.native_id: t.name for t in threading.enumerate()}
        stop.set()

    def log(line: str) -> None:
        if line.startswith("model:") and not timer:  # the model is compiled and the streams open: time from here
            cpu["before"] = thread_cpu()
            timer.append(threading.Timer(duration, finish))
            timer[0].start()

    try:
        summary = run(args, stop, log=log)
    finally:
        for t in timer:
            t.cancel()
    if "after" in cpu:
        summary["cpu_s"] = cpu_by_role(cpu["before"], cpu["after"], cpu["names"])
    return summary


def run_processes(variant: Variant, xml: Path, videos: Sequence[Path], duration: float) -> Dict[str, Any]:
    """``variant.streams`` single-stream apps/camera.py processes side by side, all stopped (SIGTERM)
    ``duration`` s after the last one has compiled its model; their summaries combined as one run's."""
    procs = []
    for i in range(variant.streams):
        cmd = [sys.executable, str(ROOT / "apps" / "camera.py"), "--model", str(xml), "--headless",
               "--source", str(videos[i % len(videos)])]
        procs.append(subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT))
    lines: List[List[str]] = [[] for _ in procs]
    ready = [threading.Event() for _ in procs]

    def read(i: int) -> None:
        stdout = procs[i].stdout
        assert stdout is not None
        for line in stdout:
            lines[i].append(line)
            if line.startswith("model:"):
                ready[i].set()
        ready[i].set()

    readers = [threading.Thread(target=read, args=(i,), daemon=True) for i in range(len(procs))]
    for reader in readers:
        reader.start()
    for event in ready:
        event.wait(120)
    time.sleep(duration)
    for proc in procs:
        proc.send_signal(signal.SIGTERM)
    for proc, reader in zip(procs, readers):
        proc.wait(60)
        reader.join(10)
    summaries = []
    for i, proc in enumerate(procs):
        found = [json.loads(line[len("summary: "):]) for line in lines[i] if line.startswith("summary: ")]
        if not found:
            err = (proc.stderr.read() if proc.stderr else "").strip().splitlines()
            raise RuntimeError(f"camera process {i} gave no summary (exit {proc.returncode}): "
                               f"{err[-1] if err else 'no output'}")
        summaries.append(found[0])
    streams = {f"proc{i}": s["streams"]["cam0"] for i, s in enumerate(summaries)}
    # Each process's FPS is over its own run; side by side, the aggregate is their sum.
    return {"aggregate_fps": sum(s["mean_fps"] for s in summaries), "streams": streams,
            "schedule": summaries[0].get("schedule")}


def figures(summary: Dict[str, Any]) -> Dict[str, Any]:
    """aggregate FPS, worst/best stream FPS, per-stream p95 latency and the stream FPS from a summary."""
    per = summary["streams"]
    fps = [s["mean_fps"] for s in per.values()]
    aggregate = summary.get("aggregate_fps", summary.get("mean_fps"))
    frames = max(summary.get("frames", 0), 1)
    return {"aggregate": aggregate, "fairness": min(fps) / max(fps) if max(fps) > 0 else 0.0,
            "p95": [s["latency_p95_ms"] for s in per.values()], "fps": fps,
            "schedule": summary.get("schedule"),
            "cpu_ms": {role: 1000 * seconds / frames for role, seconds in summary.get("cpu_s", {}).items()}}


def variants(args: argparse.Namespace) -> List[Variant]:
    found: List[Variant] = []
    for precision in args.precisions:
        found += [Variant(precision, n) for n in args.streams]
        for n in ([] if args.no_knobs else args.knob_streams):
            for batch, depth, timeout in [(1, 0, 10.0), (1, 1, 10.0), (1, 2, 10.0), (1, 4, 10.0), (2, 2, 10.0),
                                          (n, 1, 10.0), (n, 2, 10.0), (n, 2, 2.0), (n, 2, 30.0)]:
                variant = Variant(precision, n, min(batch, n), depth, timeout)
                if variant not in found:
                    found.append(variant)
        if not args.no_processes:
            found += [Variant(precision, n, processes=True) for n in args.streams if n > 1]
        if not args.no_realtime:
            found.append(Variant(precision, args.knob_streams[0], realtime=True))
        if args.static:
            found.append(Variant(precision, args.knob_streams[0], static=True))
        if args.rule:
            found += [Variant(precision, n, rule=True) for n in args.streams if n > 1]
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--streams", nargs="+", type=int, default=[1, 2, 4, 8], help="default: %(default)s")
    parser.add_argument("--precisions", nargs="+", default=list(PRECISIONS), choices=PRECISIONS,
                        help="default: %(default)s")
    parser.add_argument("--rounds", type=int, default=2, help="alternations (default: %(default)s)")
    parser.add_argument("--duration", type=float, default=5.0,
                        help="seconds each run streams after its model is compiled (default: %(default)s)")
    parser.add_argument("--knob-streams", type=int, nargs="+", default=[4],
                        help="stream counts of the scheduling-knob sweep; the first also runs --realtime and "
                             "--static (default: %(default)s)")
    parser.add_argument("--no-knobs", action="store_true", help="skip the scheduling-knob sweep")
    parser.add_argument("--no-processes", action="store_true", help="skip the N single-stream processes")
    parser.add_argument("--static", action="store_true",
                        help="also the default schedule on IRs built from the static batch-1 ONNX")
    parser.add_argument("--no-realtime", action="store_true", help="skip the --realtime variant")
    parser.add_argument("--rule", action="store_true",
                        help="also each stream count (2+) with --schedule rule, beside the schedule measured at start")
    parser.add_argument("--app-seconds", type=float, default=3.0, help="benchmark_app -t (default: %(default)s)")
    parser.add_argument("--video-frames", type=int, default=3000,
                        help="frames per video: more than a stream reads in --duration (default: %(default)s)")
    parser.add_argument("--quick", action="store_true", help="validation run: 1 round, 2 s runs, 2 and 4 streams")
    parser.add_argument("--work", type=Path, default=DEFAULT_WORK, help="built models (default: %(default)s)")
    args = parser.parse_args()
    if min(args.streams + args.knob_streams) < 1:
        parser.error("--streams and --knob-streams count streams: give 1 or more")
    if args.quick:
        args.rounds, args.duration, args.app_seconds, args.streams = 1, 2.0, 1.0, [1, 4]
        args.video_frames = 600

    from runtimes.preprocess import leave_cores_to_runtime

    leave_cores_to_runtime()  # as the camera app does (run() does it again)
    files = model_files("demo", args.work, 300)
    irs = {p: files[f"openvino {p}"] for p in args.precisions}
    static_irs: Dict[str, Path] = {}
    if args.static:
        from benchmarks.batching import openvino_ir
        from export.demo_model import demo_onnx

        static_irs = {p: openvino_ir(demo_onnx(verbose=False), p, args.work) for p in args.precisions}
    cores = os.cpu_count() or 1
    folder = Path(tempfile.mkdtemp(prefix="multistream-bench-"))
    videos = write_videos(folder, 2, args.video_frames)
    todo = variants(args)
    results: Dict[Variant, List[Dict[str, Any]]] = {v: [] for v in todo}
    apps: Dict[Tuple[str, int], List[float]] = {}
    costs: Dict[str, Dict[str, List[float]]] = {p: {} for p in args.precisions}
    began = time.monotonic()
    print(f"{cores} cores; load average at start: {load_average()}; {len(todo)} variants x {args.rounds} rounds",
          flush=True)
    def measure_bound(when: str) -> None:
        for precision in args.precisions:
            for batch in (1, 2, 4, 8):
                found = benchmark_app(irs[precision], batch, "throughput", args.app_seconds)
                if found:
                    apps.setdefault((precision, batch), []).append(found["images_per_s"])
            for stage, seconds in host_costs(irs[precision], videos[0]).items():
                costs[precision].setdefault(stage, []).append(seconds)
        print(f"round {round_no + 1}: bound measured ({when}) at {time.monotonic() - began:.0f} s, "
              f"load {load_average()}", flush=True)

    for round_no in range(args.rounds):
        order = todo if round_no % 2 == 0 else todo[::-1]  # alternate the order too: no variant always first
        measure_bound("before the runs")  # and after them: the bound brackets the runs it judges
        for variant in order:
            runner = run_processes if variant.processes else run_app
            try:
                xml = (static_irs if variant.static else irs)[variant.precision]
                summary = runner(variant, xml, videos, args.duration)
            except Exception as exc:  # one failed run is reported, the others still run
                print(f"  {variant.precision} {variant.label}: FAILED: {type(exc).__name__}: {exc}", flush=True)
                continue
            got = figures(summary)
            got["load"] = load_average()
            results[variant].append(got)
            if any(s["frames"] >= args.video_frames for s in summary["streams"].values()):
                print("  note: a stream reached the end of its video; raise --video-frames", flush=True)
            print(f"  {variant.precision} {variant.label}: {got['aggregate']:.1f} FPS, worst/best "
                  f"{got['fairness']:.2f}, p95 {max(got['p95']):.0f} ms, schedule {got['schedule']}, "
                  f"load {got['load']}", flush=True)
        measure_bound("after the runs")
        print(f"round {round_no + 1} done at {time.monotonic() - began:.0f} s", flush=True)
    report(args, results, apps, costs, cores)


def report(args: argparse.Namespace, results: Dict[Variant, List[Dict[str, Any]]],
           apps: Dict[Tuple[str, int], List[float]], costs: Dict[str, Dict[str, List[float]]], cores: int) -> None:
    print(f"\n## the bound (medians over {args.rounds} rounds, measured before and after each; {cores} cores)\n")
    bounds: Dict[Tuple[str, int], float] = {}
    best: Dict[str, float] = {}
    for precision in args.precisions:
        host = {stage: med(v) for stage, v in costs[precision].items()}
        h = sum(host.values())
        print(f"{precision.upper()}: host CPU per frame: decode {1000 * host['decode']:.2f} + preprocess "
              f"{1000 * host['preprocess']:.2f} + postprocess {1000 * host['postprocess']:.2f} = {1000 * h:.2f} ms")
        for batch in (1, 2, 4, 8):
            runs = apps.get((precision, batch), [])
            if not runs:
                continue
            t = med(runs)
            bounds[(precision, batch)] = bound_fps(t, h, cores)
            print(f"  benchmark_app -hint throughput -b {batch}: T = {t:.1f} images/s (runs "
                  f"{', '.join(f'{v:.0f}' for v in runs)}); bound = T / (1 + T * h / C) = {t:.1f} / (1 + {t:.1f}"
                  f" * {h:.5f} / {cores}) = {bounds[(precision, batch)]:.1f} FPS (share of CPU left "
                  f"{1 - bounds[(precision, batch)] * h / cores:.2f})")
        found = [v for (p, _), v in bounds.items() if p == precision]
        best[precision] = max(found) if found else float("nan")
        print(f"  the box's bound: {best[precision]:.1f} FPS (best batch)\n")
    print(f"## the camera app, aggregate FPS against the bound (medians over {args.rounds} rounds)\n")
    print("| precision | variant | schedule (batch, in flight) | aggregate FPS | vs bound at its batch | vs box bound "
          "| worst/best stream FPS | latency p95 per stream, ms | runs, FPS | load avg |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for variant, runs in results.items():
        if not runs:
            continue
        agg = med([r["aggregate"] for r in runs])
        schedule = runs[0]["schedule"] or {}
        batch = schedule.get("batch", 1) if not variant.processes else 1
        sched = f"{batch}, {schedule.get('requests_in_flight', '?')}" + (" each" if variant.processes else "")
        at_batch = bounds.get((variant.precision, batch), float("nan"))
        p95 = [med([r["p95"][i] for r in runs]) for i in range(len(runs[0]["p95"]))]
        agg_runs = ", ".join(f"{r['aggregate']:.0f}" for r in runs)
        print(f"| {variant.precision.upper()} | {variant.label} | {sched} | {agg:.1f} | {agg / at_batch:.2f} | "
              f"{agg / best[variant.precision]:.2f} | {med([r['fairness'] for r in runs]):.2f} | "
              f"{', '.join(f'{v:.0f}' for v in p95)} | {agg_runs} | "
              f"{'; '.join(r['load'] for r in runs)} |")
    defaults = [(v, runs) for v, runs in results.items() if runs and runs[0]["cpu_ms"] and v.batch is None
                and v.depth is None and not (v.processes or v.realtime or v.static)]
    if defaults:
        roles = [r for _, r in THREAD_ROLES] + [RUNTIME_THREADS]
        print("\n## where the CPU goes in the app: ms per frame by thread (default schedule, medians; the bound "
              "counts decode + preprocess + postprocess measured alone, above)\n")
        print("| precision | streams | " + " | ".join(roles) + " | all | cores busy |")
        print("|---|---|" + "---|" * (len(roles) + 2))
        for variant, runs in defaults:
            per_role = [med([r["cpu_ms"].get(role, 0.0) for r in runs]) for role in roles]
            total = med([sum(r["cpu_ms"].values()) for r in runs])
            busy = med([sum(r["cpu_ms"].values()) * r["aggregate"] / 1000 for r in runs])
            print(f"| {variant.precision.upper()} | {variant.streams} | "
                  + " | ".join(f"{v:.2f}" for v in per_role) + f" | {total:.2f} | {busy:.2f} |")
    if not args.no_processes:
        print("\n## batching in one process vs N single-stream processes (aggregate FPS, medians)\n")
        for precision in args.precisions:
            for n in (n for n in args.streams if n > 1):
                one = results.get(Variant(precision, n), [])
                many = results.get(Variant(precision, n, processes=True), [])
                if one and many:
                    ratios = [a["aggregate"] / b["aggregate"] for a, b in zip(one, many)]
                    print(f"{precision.upper()} {n} streams: one process {med([r['aggregate'] for r in one]):.1f} "
                          f"vs {n} processes {med([r['aggregate'] for r in many]):.1f} FPS: "
                          f"{med(ratios):.2f}x (per round {', '.join(f'{r:.2f}' for r in ratios)})")


if __name__ == "__main__":
    main()
