"""How many real 1080p cameras this box holds (issue #28): N simulated 1080p25 cameras through apps/camera.py on
the demo INT8 IR, the largest N at which every stream keeps >= 95% of its frames (detected or tracked) with a
p95 latency <= 200 ms, beside the box's bound from per-frame costs measured in the same run.

    python benchmarks/cameras.py [--codecs h264 h265] [--transports file rtsp] [--settings 1 2 4 motion]
                                 [--duration 10] [--model outputs/ssdlite320_shapes_int8.xml]

Cameras: 1080p25 MP4s (benchmarks/camera_scene.py: a still scene where an object moves 20% of the time,
4 Mb/s; five variants per codec, each with its motion and key frames at other times, camera k playing variant
k mod 5, as independent cameras do) made once into .cache/camera-bench/; played as files at their rate
(``--realtime``) or through GStreamer's RTSP server on 127.0.0.1 (a process of its own, every camera its own
playback). Settings:
``--interval 1, 2, 4`` and ``--motion``; every run tracks (``--track``), so a frame the detector skips is
still handled, by the tracker's prediction, and writes JSON lines (the figures are read from them).

A run streams ``--duration`` s after the app has opened its streams and compiled its model, then gets SIGTERM.
Each stream is judged over its frames stamped ``--warmup`` s to ``--duration`` - 1 s after it started: the
frames that reached its output against the 25 a second its camera sent, and their latency p95 (capture to
result). N is searched from the bound (benchmarks/camera_bound.largest_held): up by one while held; when not,
down to the cameras its worst stream kept up with (N x handled / 95%), then up by one again.

The bound, per codec and transport (benchmarks/camera_costs.py, benchmarks/camera_bound.py): the CPU time of
decoding and scaling a frame (with a camera a core decoding at once, each at 25 frames a second, as on a full box:
the decoders share the caches and wake for each frame; one camera alone is printed beside it), the motion test, pre-
and post-processing, tracking, and a network call (benchmark_app's); decoding and the call are measured before and
after the codec's runs (the mean). A camera costs 25 x the mean CPU per frame each second, and bound N = cores /
that: what the box would hold were its cores the app's alone. Each run also gives the cores the app kept busy,
beside what the bound's costs predict for its N (more: the app's own overhead; less: other processes took the
cores). The app needs OpenVINO and OpenCV with GStreamer in one process: this script runs itself in a venv made from
the system Python (Debian's OpenCV 4.6 with GStreamer, numpy 1.x) with ``--system-site-packages`` and pip's openvino
(.cache/camera-venv, made when missing).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.pop(1)
os.environ.setdefault("OPENCV_LOG_LEVEL", "ERROR")  # GStreamer's duration queries on live sources warn

from benchmarks.camera_bound import (
    FrameCosts,
    StreamResult,
    bound_cameras,
    camera_load,
    detected_share,
    estimate_held,
    held,
    largest_held,
    stream_result,
)
from runtimes.cli import run_cli
from runtimes.errors import UserError

ROOT = Path(__file__).resolve().parents[1]
ENV = ROOT / ".cache" / "camera-venv"
WORK = ROOT / ".cache" / "camera-bench"
SYSTEM_PYTHON = "/usr/bin/python3"
MODEL = ROOT / "outputs" / "ssdlite320_shapes_int8.xml"
SETTINGS = ("1", "2", "4", "motion")
TAIL_S = 1.0  # frames of a run's last second may still be in flight at the stop: not judged


# -- the environment -----------------------------------------------------------------------------------------

def in_env() -> bool:
    return Path(sys.prefix).resolve() == ENV.resolve()


def make_env() -> None:
    """.cache/camera-venv: the system Python's packages (OpenCV with GStreamer, numpy 1.x, PyGObject) and pip's
    openvino, the release this interpreter runs when it has one (the figures then compare with the rest)."""
    try:
        from importlib.metadata import version

        wheel = f"openvino=={version('openvino')}"
    except Exception:  # this interpreter has no openvino: pip's newest
        wheel = "openvino"
    print(f"making {ENV} (system Python with --system-site-packages, pip install {wheel})", flush=True)
    for step in ([SYSTEM_PYTHON, "-m", "venv", "--system-site-packages", str(ENV)],
                 [str(ENV / "bin" / "python"), "-m", "pip", "install", "-q", wheel]):
        try:
            subprocess.run(step, check=True)
        except (OSError, subprocess.CalledProcessError) as exc:
            raise UserError(f"making {ENV} failed ({' '.join(step)}: {exc}); remove it and run again") from None


def check_env() -> None:
    """One line naming what is missing when this interpreter cannot run the cameras."""
    import re

    import cv2
    import numpy

    if not re.search(r"GStreamer:\s+YES", cv2.getBuildInformation()):
        raise UserError(f"OpenCV {cv2.__version__} here has no GStreamer: apt install python3-opencv "
                        f"gstreamer1.0-libav, then remove {ENV}")
    if int(numpy.__version__.split(".")[0]) >= 2:
        raise UserError(f"numpy {numpy.__version__} in {ENV}: the device side runs numpy 1.x; remove {ENV}")
    try:
        import openvino  # noqa: F401
    except ImportError as exc:
        raise UserError(f"{ENV} has no usable openvino ({exc}): remove it, and this script makes it again") from None


# -- one run of the camera app -------------------------------------------------------------------------------

@dataclass
class Run:
    """One run of apps/camera.py with N cameras: each stream's figures, the load average after it, the cores the
    app and the RTSP server kept busy meanwhile (CPU seconds over the run's seconds), whether it held."""

    cameras: int
    streams: List[StreamResult]
    load: str
    app_cores: float
    server_cores: float = 0.0
    note: str = ""
    held: bool = field(init=False)

    def __post_init__(self) -> None:
        self.held = held(self.streams)

    def line(self) -> str:
        worst = min(self.streams, key=lambda s: s.handled) if self.streams else None
        p95 = [s.p95_ms for s in self.streams if s.p95_ms is not None]
        return (f"{self.cameras} cameras: {'held' if self.held else 'NOT held'}; handled "
                f"{100 * worst.handled:.1f}% (worst stream), p95 {max(p95) if p95 else float('nan'):.0f} ms "
                f"(worst); app {self.app_cores:.2f} cores; load {self.load}"
                + (f"; RTSP server {self.server_cores:.2f} cores" if self.server_cores else "")
                + (f"; {self.note}" if self.note else "")
                if worst else f"{self.cameras} cameras: no frames; {self.note}")


def process_seconds(pid: int) -> float:
    """CPU seconds (user + system) of process ``pid`` so far; 0 when it is gone."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def app_command(model: Path, sources: Sequence[str], setting: str, realtime: bool, json_path: Path) -> List[str]:
    cmd = [sys.executable, str(ROOT / "apps" / "camera.py"), "--model", str(model), "--headless", "--track",
           "--json", str(json_path)]
    for source in sources:
        cmd += ["--source", source]
    if realtime:
        cmd.append("--realtime")
    cmd += ["--motion"] if setting == "motion" else ["--interval", setting]
    return cmd


def run_cameras(cmd: List[str], cameras: int, duration: float, warmup: float, fps: float,
                server_pid: Optional[int]) -> Run:
    """``cmd`` (apps/camera.py) streamed ``duration`` s after its ``model:`` line, then SIGTERM; its figures."""
    json_path = Path(cmd[cmd.index("--json") + 1])
    err_path = json_path.with_suffix(".err")
    with open(err_path, "w") as err_file:  # a file, not a pipe: nobody has to drain it while the app runs
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=err_file, text=True, cwd=ROOT)
    lines: List[str] = []
    ready = threading.Event()

    def read() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.append(line)
            if line.startswith("model:"):
                ready.set()
        ready.set()

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    if not ready.wait(180) or proc.poll() is not None:
        proc.kill()
        raise RuntimeError(f"the camera app did not start: {last_line(err_path)}")
    server_before = process_seconds(server_pid) if server_pid else 0.0
    app_before = process_seconds(proc.pid)
    time.sleep(duration)
    app_cores = (process_seconds(proc.pid) - app_before) / duration
    server_cores = (process_seconds(server_pid) - server_before) / duration if server_pid else 0.0
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(60)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
    reader.join(10)
    json_path.with_suffix(".out").write_text("".join(lines))  # the app's lines, beside its records and stderr
    load = " ".join(f"{v:.1f}" for v in os.getloadavg())
    records: Dict[str, List[Dict[str, Any]]] = {}
    with open(json_path) as f:
        for line in f:
            record = json.loads(line)
            records.setdefault(record["stream"], []).append(record)
    names = [f"cam{i}" for i in range(cameras)]
    window = (warmup, duration - TAIL_S)
    streams = [stream_result([r["timestamp"] for r in records.get(n, [])],
                             [r["latency_ms"] for r in records.get(n, [])],
                             [bool(r.get("detected", True)) for r in records.get(n, [])], fps, window)
               for n in names]
    notes = [] if proc.returncode == 0 else [f"exit {proc.returncode}: {last_line(err_path)}"]
    planned = sum(line.startswith("stream cam") and "scaled to" in line for line in lines)
    if planned < cameras:
        notes.append(f"only {planned} of {cameras} streams decoded by the scaling plan")
    summary = [json.loads(line[len("summary: "):]) for line in lines if line.startswith("summary: ")]
    if summary and summary[0].get("dropped_stale_frames"):
        notes.append(f"{summary[0]['dropped_stale_frames']} frames dropped (app's count)")
    return Run(cameras, streams, load, app_cores, server_cores, "; ".join(notes))


def last_line(path: Path) -> str:
    lines = path.read_text(errors="replace").strip().splitlines() if path.is_file() else []
    return lines[-1][:300] if lines else "no output on stderr"


# -- the bound -------------------------------------------------------------------------------------------------

@dataclass
class Bound:
    """Per-frame costs of one codec and transport: the host's steps and the motion test's cost and detected share
    measured once; decoding and the network call measured before and after the codec's runs (the mean), as the
    cores' speed drifts over a run of minutes."""

    host: Dict[str, float]
    gate: float
    motion_share: float
    size: Tuple[int, int]  # the model's input: what the decode plan scales to
    plan: str = ""
    decode_alone: float = 0.0  # CPU s a frame decoded and scaled, one camera alone (for the record)
    decode: List[float] = field(default_factory=list)  # the same with a camera a core decoding at once
    inference: List[float] = field(default_factory=list)  # CPU s a call
    throughput: List[float] = field(default_factory=list)  # benchmark_app's images/s meanwhile

    def measure_drifting(self, locations: Sequence[str], codec: str, model: Path, frames: int,
                         seconds: float) -> None:
        """The costs that drift over a run, measured once more: decoding (a camera a core of ``locations``)
        and the network call."""
        from benchmarks.camera_costs import decode_cost, inference_cost
        from benchmarks.camera_scene import FPS

        self.decode.append(decode_cost(locations, codec, self.size, frames, FPS)[0])
        cpu, images_per_s = inference_cost(model, seconds)
        self.inference.append(cpu)
        self.throughput.append(images_per_s)

    def costs(self, setting: str) -> FrameCosts:
        from benchmarks.camera_costs import frame_costs

        return frame_costs(statistics.mean(self.decode), self.host, statistics.mean(self.inference),
                           self.gate if setting == "motion" else 0.0)

    def share(self, setting: str) -> float:
        return self.motion_share if setting == "motion" else detected_share(int(setting))

    def cameras(self, setting: str, cores: int, fps: float) -> float:
        return bound_cameras(cores, camera_load(self.costs(setting), fps, self.share(setting)))


def measure_bound(locations: Sequence[str], codec: str, model: Path, frames: int, app_seconds: float) -> Bound:
    """The costs of ``frames`` frames through the camera's decode plan: of the first of ``locations`` alone,
    then of as many as there are (a camera a core) at once; and one inference measurement."""
    from apps.camera import build_parser, model_setup
    from benchmarks.camera_costs import decode_cost, host_costs, motion_cost
    from benchmarks.camera_scene import FPS
    from streams.model_setup import load

    args = build_parser().parse_args(["--model", str(model), "--track", "--async-depth", "1"])
    with load(model_setup(args), max_batch=1) as detector:  # the app's score threshold with --track, one request
        size = (detector.meta.input_width, detector.meta.input_height)
        alone, decoded, plan = decode_cost(locations[:1], codec, size, frames, FPS)
        gate, share = motion_cost(decoded)
        host = host_costs(detector, decoded)
    bound = Bound(host, gate, share, size, plan, alone)
    bound.measure_drifting(locations, codec, model, frames, app_seconds)
    return bound


# -- the benchmark ---------------------------------------------------------------------------------------------

def parse_args(argv: Optional[Sequence[str]]) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--codecs", nargs="+", default=["h264", "h265"], choices=["h264", "h265"])
    p.add_argument("--transports", nargs="+", default=["file", "rtsp"], choices=["file", "rtsp"])
    p.add_argument("--settings", nargs="+", default=list(SETTINGS), choices=SETTINGS,
                   help="--interval N, or --motion (default: %(default)s)")
    p.add_argument("--duration", type=float, default=10.0, help="s each run streams (default: %(default)s)")
    p.add_argument("--warmup", type=float, default=2.0, help="s of each stream not judged (default: %(default)s)")
    p.add_argument("--max-cameras", type=int, default=16, help="the search's ceiling (default: %(default)s)")
    p.add_argument("--video-seconds", type=float, default=30.0,
                   help="length of the test videos: more than --duration + the start (default: %(default)s)")
    p.add_argument("--cost-frames", type=int, default=250, help="frames the bound's costs are measured on "
                                                                "(default: %(default)s; RTSP: 100)")
    p.add_argument("--app-seconds", type=float, default=3.0, help="benchmark_app -t (default: %(default)s)")
    p.add_argument("--model", type=Path, default=MODEL, help="the IR (default: the demo INT8 IR)")
    args = p.parse_args(argv)
    if not 3 * TAIL_S <= args.duration <= args.video_seconds - 10:
        p.error(f"--duration must be {3 * TAIL_S:g} s or more and 10 s less than --video-seconds")
    if not 0 <= args.warmup < args.duration - 2 * TAIL_S:
        p.error("--warmup must leave at least 2 s of --duration")
    if args.max_cameras < 1:
        p.error("--max-cameras must be 1 or more")
    return args


def start_server(videos: Dict[str, Path]) -> Tuple[subprocess.Popen, int]:
    proc = subprocess.Popen([sys.executable, str(ROOT / "benchmarks" / "camera_scene.py")]
                            + [f"{codec}={path}" for codec, path in videos.items()],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, cwd=ROOT)
    assert proc.stdout is not None
    first = proc.stdout.readline().split()
    if len(first) != 2 or first[0] != "port":
        proc.kill()
        raise UserError("GStreamer's RTSP server did not start: apt install gir1.2-gst-rtsp-server-1.0")
    return proc, int(first[1])


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = parse_args(argv)
    if not args.model.is_file():
        raise UserError(f"--model {args.model}: no such IR; build the demo INT8 IR with "
                        "python export/build_engine.py --int8")
    if not in_env():
        if not (ENV / "bin" / "python").exists():
            make_env()
        python = str(ENV / "bin" / "python")
        os.execv(python, [python, str(Path(__file__).resolve())] + list(sys.argv[1:] if argv is None else argv))
    check_env()
    from benchmarks.camera_scene import FPS, PHASES, make_video

    cores = os.cpu_count() or 1
    print(f"{cores} cores; {cpu_model()}; load average {os.getloadavg()}; model {args.model}", flush=True)
    WORK.mkdir(parents=True, exist_ok=True)
    videos = {}  # "h264-p0": its file, a variant per phase (camera k plays phase k mod PHASES)
    for codec in args.codecs:
        for phase in range(PHASES):
            path = WORK / f"scene-{codec}-{args.video_seconds:g}s{f'-p{phase}' if phase else ''}.mp4"
            if not path.is_file():
                print(f"making {path} (once)", flush=True)
            videos[f"{codec}-p{phase}"] = make_video(path, codec, args.video_seconds, phase)
    server = port = None
    if "rtsp" in args.transports:
        server, port = start_server(videos)
    results: Dict[Tuple[str, str, str], Tuple[int, float, List[Run]]] = {}
    bounds: Dict[Tuple[str, str], Bound] = {}
    folder = Path(tempfile.mkdtemp(prefix="cameras-bench-"))
    began = time.monotonic()
    try:
        for codec in args.codecs:
            for transport in args.transports:
                locations = [str(videos[f"{codec}-p{phase}"]) if transport == "file"
                             else f"rtsp://127.0.0.1:{port}/{codec}-p{phase}" for phase in range(PHASES)]
                frames = args.cost_frames if transport == "file" else min(args.cost_frames, 100)
                full = cameras_of(locations, cores)  # a camera a core
                bound = bounds[(codec, transport)] = measure_bound(full, codec, args.model, frames,
                                                                   args.app_seconds)
                print(f"{codec} {transport}: {bound.plan}; decode {1000 * bound.decode_alone:.2f} ms/frame alone, "
                      f"{1000 * bound.decode[0]:.2f} with {cores} at once, load {os.getloadavg()[0]:.1f}", flush=True)
                for setting in args.settings:
                    results[(codec, transport, setting)] = search(
                        args, Case(codec, transport, setting, tuple(locations)), bound.cameras(setting, cores, FPS),
                        folder, server.pid if server is not None else None, began)
                bound.measure_drifting(full, codec, args.model, frames, args.app_seconds)
    finally:
        if server is not None and server.stdin is not None:
            server.stdin.close()
            server.wait(10)
    report(args, results, bounds, cores, FPS)
    print(f"\ntook {time.monotonic() - began:.0f} s; load average at the end {os.getloadavg()}")
    return 0


@dataclass(frozen=True)
class Case:
    """A codec, transport and setting; ``locations`` the file or RTSP URL of each phase of the scene."""

    codec: str
    transport: str
    setting: str
    locations: Tuple[str, ...]

    def sources(self, cameras: int) -> List[str]:
        return cameras_of(self.locations, cameras)


def cameras_of(locations: Sequence[str], cameras: int) -> List[str]:
    """The sources of ``cameras`` cameras: camera k plays phase k mod the phases (``locations``, one a phase)."""
    return [locations[k % len(locations)] for k in range(cameras)]


def search(args: argparse.Namespace, case: Case, bound: float, folder: Path, server_pid: Optional[int],
           began: float) -> Tuple[int, float, List[Run]]:
    """(the largest N held, the bound it started from, every run) for ``case``."""
    from benchmarks.camera_scene import FPS

    runs: List[Run] = []

    def holds(n: int) -> Tuple[bool, int]:
        cmd = app_command(args.model, case.sources(n), case.setting, case.transport == "file",
                          folder / f"run{time.monotonic_ns()}.jsonl")
        run = run_cameras(cmd, n, args.duration, args.warmup, FPS, server_pid)
        runs.append(run)
        print(f"  {case.codec} {case.transport} {label(case.setting)}: {run.line()} "
              f"[{time.monotonic() - began:.0f} s]", flush=True)
        return run.held, estimate_held(n, run.streams)

    n, _ = largest_held(int(bound), holds, args.max_cameras)
    return n, bound, runs


def label(setting: str) -> str:
    return "--motion" if setting == "motion" else f"--interval {setting}"


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            return next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), "CPU ?")
    except OSError:
        return "CPU ?"


def report(args: argparse.Namespace, results: Dict[Tuple[str, str, str], Tuple[int, float, List[Run]]],
           bounds: Dict[Tuple[str, str], Bound], cores: int, fps: float) -> None:
    print(f"\n## per-frame costs, CPU ms ({cores} cores; decoding with {cores} cameras at once, inference (CPU a "
          "call) and benchmark_app's images/s before / after the runs)\n")
    print("| codec | transport | decode + scale: alone | at once | motion test (share detected) | pre | post | track "
          "| predict | inference | images/s | detections/frame |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for (codec, transport), b in bounds.items():
        h = b.host
        print(f"| {codec} | {transport} | {1000 * b.decode_alone:.2f} | "
              + " / ".join(f"{1000 * v:.2f}" for v in b.decode)
              + f" | {1000 * b.gate:.2f} ({b.motion_share:.2f}) | "
              f"{1000 * h['preprocess']:.2f} | {1000 * h['postprocess']:.2f} | {1000 * h['track']:.3f} | "
              f"{1000 * h['predict']:.3f} | " + " / ".join(f"{1000 * v:.2f}" for v in b.inference)
              + " | " + " / ".join(f"{v:.0f}" for v in b.throughput) + f" | {h['detections']:.1f} |")
    print(f"\n## cameras held (>= 95% of frames handled per stream, p95 <= 200 ms; {fps:g} FPS 1080p)\n")
    print("| codec | transport | setting | N held | bound | ratio | p95 ms (worst stream, at N) | handled % "
          "(worst, at N) | app cores at N (bound's) | bound on the cores it got (ratio) | tried (N: held?) | "
          "load avg |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for (codec, transport, setting), (n, _, runs) in results.items():
        bound = bounds[(codec, transport)].cameras(setting, cores, fps)
        at = next((r for r in runs if r.cameras == n), None)
        p95 = max((s.p95_ms or 0.0) for s in at.streams) if at else float("nan")
        handled = 100 * min(s.handled for s in at.streams) if at else float("nan")
        cores_at = f"{at.app_cores:.2f} ({n * cores / bound:.2f})" if at else "-"
        # On a shared machine: the most cores any of its runs kept busy, over what a camera costs
        got = max(r.app_cores for r in runs) * bound / cores if runs else float("nan")
        tried = ", ".join(f"{r.cameras}: {'yes' if r.held else 'no'}" for r in runs)
        loads = "; ".join(r.load.split()[0] for r in runs)
        print(f"| {codec.upper()} | {transport} | {label(setting)} | {n} | {bound:.2f} | {n / bound:.2f} | "
              f"{p95:.0f} | {handled:.1f} | {cores_at} | {got:.2f} ({n / got if got else math.nan:.2f}) | "
              f"{tried} | {loads} |")


if __name__ == "__main__":
    sys.exit(run_cli(main))
