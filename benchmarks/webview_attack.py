"""Does an attack on the web view slow the camera app, or its health check? apps/camera.py on one generated
video as fast as it goes (no --realtime), the demo model, ``--serve 127.0.0.1:0 --serve-token``, alternated in
one run between windows of two conditions:

    quiet     nobody but this script's own /healthz and /metrics requests
    attack    300 idle sockets and 70 that send a request head one byte every 2 s (the issue's probe), each
              reopened as soon as the server closes it (at its header deadline, 10 s by default)

    python benchmarks/webview_attack.py [--rounds 10] [--window 5] [--idle 300] [--slow 70]

Each round has one window per condition, the order swapped every round so a drift favours neither. A window's
FPS is the app's ssd_edge_frames_total over the window (from /metrics); its /healthz latency is that of an
authorised request every 0.25 s. Prints per condition the median window FPS, the median (and interquartile
range) of each attack window's FPS over the quiet window of its round (target: within 10%), /healthz latency
median, 95th percentile and maximum, the app's most threads, and the machine's model and load average.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Tuple

import cv2

# The repository root replaces the script's own folder on the path (as in the other benchmarks).
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.pop(1)

from calibration.synthetic import ensure_demo_dataset
from export.demo_model import demo_onnx
from tests.hostile_clients import Attack, get

ROOT = Path(__file__).resolve().parents[1]
TOKEN = "benchmark-token"
CONDITIONS = ["quiet", "attack"]
SETTLE_S = 1.0  # after the attack's sockets are open (or closed), before the window's first count


def generated_video(path: Path, count: int, size: Tuple[int, int] = (320, 240)) -> Path:
    images = sorted((ensure_demo_dataset(verbose=False) / "VOCdevkit/VOC2007/JPEGImages").glob("*.jpg"))[-50:]
    loaded = []
    for image_path in images:
        image = cv2.imread(str(image_path))
        assert image is not None, image_path
        loaded.append(cv2.resize(image, size))
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter.fourcc(*"MJPG"), 30.0, size)
    for i in range(count):
        writer.write(loaded[i % len(loaded)])
    writer.release()
    return path


def start_app(video: Path, log: Path) -> Tuple[subprocess.Popen, int]:
    """The app serving its web view; (process, port). Its output goes to ``log`` (a pipe nobody reads would
    fill and stall it)."""
    out = open(log, "w")
    proc = subprocess.Popen([sys.executable, "apps/camera.py", "--model", str(demo_onnx(verbose=False)),
                             "--source", str(video), "--headless", "--score-threshold", "0.4",
                             "--serve", "127.0.0.1:0", "--serve-token", TOKEN], cwd=ROOT, stdout=out,
                            stderr=subprocess.STDOUT, env=dict(os.environ, PYTHONUNBUFFERED="1"))
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None:
        for line in log.read_text().splitlines():
            if line.startswith("web view: http://127.0.0.1:"):
                return proc, int(line.split(":")[3].split("/")[0])
        time.sleep(0.2)
    proc.kill()
    raise SystemExit(f"the app did not start its web view:\n{log.read_text()[-2000:]}")


def frames_total(port: int) -> float:
    from prometheus_client.parser import text_string_to_metric_families

    answer = get(port, "/metrics", TOKEN)
    return sum(s.value for family in text_string_to_metric_families(answer.body.decode())
               for s in family.samples if s.name == "ssd_edge_frames_total")


@dataclass
class Window:
    fps: float
    latencies_s: List[float]  # of each /healthz
    threads: int  # the app's most


def window(proc: subprocess.Popen, port: int, seconds: float) -> Window:
    """FPS over ``seconds``, /healthz latencies every 0.25 s, the app's most threads."""
    latencies: List[float] = []
    threads = 0
    first, start = frames_total(port), time.monotonic()
    while time.monotonic() - start < seconds:
        t0 = time.monotonic()
        status = get(port, "/healthz", TOKEN).status
        latencies.append(time.monotonic() - t0)
        if status != 200:
            raise SystemExit(f"/healthz answered {status} (has the video ended? give more --frames)")
        threads = max(threads, len(os.listdir(f"/proc/{proc.pid}/task")))
        time.sleep(max(0.0, 0.25 - (time.monotonic() - t0)))
    fps = (frames_total(port) - first) / (time.monotonic() - start)
    return Window(fps, latencies, threads)


def run(rounds: int, window_s: float, idle: int, slow: int, frames: int) -> Dict[str, List[Window]]:
    folder = Path(tempfile.mkdtemp(prefix="webview-attack-"))
    video = generated_video(folder / "in.avi", frames)
    proc, port = start_app(video, folder / "app.log")
    results: Dict[str, List[Window]] = {c: [] for c in CONDITIONS}
    try:
        time.sleep(3.0)  # the model warmed up, the stream's first status in
        for k in range(rounds):
            for condition in (CONDITIONS if k % 2 == 0 else CONDITIONS[::-1]):
                attack = (Attack(port, idle, slow, interval_s=2.0, reconnect=True)
                          if condition == "attack" else None)
                time.sleep(SETTLE_S)
                try:
                    results[condition].append(window(proc, port, window_s))
                finally:
                    if attack is not None:
                        attack.stop()
                print(f"round {k + 1} {condition}: {results[condition][-1].fps:.1f} FPS", flush=True)
    finally:
        proc.terminate()
        proc.wait(60)
    return results


def load_average() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def report(results: Dict[str, List[Window]], what: str, load_before: str) -> None:
    model = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                  if line.startswith("model name")), "?")
    print(f"{model}, {os.cpu_count()} CPUs; load average (1, 5, 15 min) before {load_before}, after "
          f"{load_average()}")
    print(what)
    print(f"{'condition':<10}{'median FPS':>11}{'ratio':>8}{'ratio IQR':>15}{'healthz ms p50':>16}"
          f"{'p95':>8}{'max':>8}{'threads':>9}")
    quiet = results["quiet"]
    for condition, windows in results.items():
        ratios = sorted(w.fps / q.fps for w, q in zip(windows, quiet))  # each against the quiet one of its round
        q1, q3 = ratios[len(ratios) // 4], ratios[(3 * len(ratios)) // 4]
        latencies = sorted(1000 * t for w in windows for t in w.latencies_s)
        p95 = latencies[int(0.95 * (len(latencies) - 1))]
        print(f"{condition:<10}{statistics.median(w.fps for w in windows):>11.1f}{statistics.median(ratios):>8.3f}"
              f"{f'{q1:.3f}-{q3:.3f}':>15}{statistics.median(latencies):>16.1f}{p95:>8.1f}{latencies[-1]:>8.1f}"
              f"{max(w.threads for w in windows):>9}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=10, help="rounds of one window per condition "
                                                               "(default: %(default)s)")
    parser.add_argument("--window", type=float, default=5.0, help="seconds per window (default: %(default)s)")
    parser.add_argument("--idle", type=int, default=300, help="idle sockets (default: %(default)s)")
    parser.add_argument("--slow", type=int, default=70, help="slow-header sockets (default: %(default)s)")
    parser.add_argument("--frames", type=int, default=10000, help="video frames: enough for the whole run at "
                                                                  "the app's speed (default: %(default)s)")
    args = parser.parse_args()
    load_before = load_average()
    results = run(args.rounds, args.window, args.idle, args.slow, args.frames)
    report(results, f"apps/camera.py on a 320x240 video, demo ONNX, {args.rounds} rounds of {args.window:g} s "
                    f"windows; attack: {args.idle} idle + {args.slow} slow-header sockets", load_before)


if __name__ == "__main__":
    main()
