"""Soak the camera app: a long video and a live source that breaks, with the app's memory, descriptors and
threads sampled from /proc the whole time.

    python benchmarks/soak.py [--frames 10000] [--failures 100] [--model .cache/demo/ssdlite320_shapes.onnx]

1. video: a generated 320x240 video of ``--frames`` frames (moving shapes) through
   ``apps/camera.py --headless --json --output --max-frames``; checks one JSON line per frame and the video's
   frame count.
2. live: an MJPEG-over-HTTP stream served here on 127.0.0.1 that drops the connection after a few frames,
   ``--failures`` times; the app's live source reopens it each time (streams/capture.py); after
   the last drop the app gets SIGTERM and must end cleanly with its JSON lines written.

For each: resident memory (VmRSS), open file descriptors and threads of the app process, sampled twice a
second: the value once warmed up (median of the samples in the 10% of the run after the first 20%), at the
end (median of the last 10%), the growth between them and the maximum. Target: growth under 5%.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Dict, List, Optional

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.pop(1)  # the script's folder must not shadow a library (see apps/camera.py)


def proc_sample(pid: int) -> Optional[Dict[str, float]]:
    """VmRSS (MB), open descriptors and threads of ``pid``; None once it is gone."""
    try:
        fields = {}
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                key, _, value = line.partition(":")
                fields[key] = value.split()
        fds = len(os.listdir(f"/proc/{pid}/fd"))
        return {"rss_mb": int(fields["VmRSS"][0]) / 1024, "fds": float(fds), "threads": float(fields["Threads"][0]),
                "t": time.monotonic()}
    except (OSError, KeyError, IndexError):
        return None


class Sampler(threading.Thread):
    def __init__(self, pid: int, every_s: float = 0.5) -> None:
        super().__init__(daemon=True)
        self.pid, self.every_s = pid, every_s
        self.samples: List[Dict[str, float]] = []
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.is_set():
            sample = proc_sample(self.pid)
            if sample is None:
                return
            self.samples.append(sample)
            self.stop.wait(self.every_s)


def summarise(name: str, samples: List[Dict[str, float]]) -> List[str]:
    """One line per measure: warmed-up value, end value, growth, maximum."""
    if len(samples) < 20:
        return [f"{name}: only {len(samples)} samples"]
    n = len(samples)
    warm = samples[n // 5: n // 5 + max(2, n // 10)]
    end = samples[-max(2, n // 10):]
    seconds = samples[-1]["t"] - samples[0]["t"]
    lines = [f"{name}: {n} samples over {seconds:.0f} s"]
    for key, unit in (("rss_mb", "MB"), ("fds", ""), ("threads", "")):
        a = statistics.median(s[key] for s in warm)
        b = statistics.median(s[key] for s in end)
        top = max(s[key] for s in samples)
        first = samples[0][key]
        growth = 100 * (b - a) / a if a else 0.0
        lines.append(f"  {key:<8} first {first:8.1f}{unit}  warmed-up {a:8.1f}{unit}  end {b:8.1f}{unit}  "
                     f"growth {growth:+5.1f}%  max {top:8.1f}{unit}  {'ok' if growth < 5 else 'OVER 5%'}")
    return lines


def make_video(path: Path, frames: int, size=(320, 240), fps: float = 30.0) -> None:
    import cv2

    writer = cv2.VideoWriter(str(path), cv2.VideoWriter.fourcc(*"MJPG"), fps, size)
    w, h = size
    for i in range(frames):
        frame = np.full((h, w, 3), 110, np.uint8)
        x, y = (i * 3) % (w - 60), (i * 2) % (h - 60)
        cv2.rectangle(frame, (x, y), (x + 50, y + 40), (30, 30, 220), -1)
        cv2.circle(frame, (w - 40 - x // 2, 40 + y // 2), 25, (220, 180, 20), -1)
        writer.write(frame)
    writer.release()


def app_command(model: Path, source: str, out: Path, max_frames: int = 0) -> List[str]:
    cmd = [sys.executable, "apps/camera.py", "--model", str(model), "--source", source, "--headless",
           "--json", str(out / "out.jsonl")]
    if max_frames:
        cmd += ["--max-frames", str(max_frames), "--output", str(out / "out.mp4")]
    return cmd


def soak_video(model: Path, frames: int, folder: Path) -> List[str]:
    import cv2

    video = folder / "soak.avi"
    started = time.monotonic()
    make_video(video, frames)
    print(f"generated {frames} frames in {time.monotonic() - started:.0f} s: {video}", flush=True)
    out = folder / "video"
    out.mkdir()
    log = open(out / "app.log", "w")
    proc = subprocess.Popen(app_command(model, str(video), out, frames), cwd=ROOT, stdout=log,
                            stderr=subprocess.PIPE, text=True)
    sampler = Sampler(proc.pid)
    sampler.start()
    _, err = proc.communicate()
    log.close()
    sampler.stop.set()
    sampler.join()
    lines = (out / "out.jsonl").read_text().splitlines() if (out / "out.jsonl").is_file() else []
    cap = cv2.VideoCapture(str(out / "out.mp4"))
    written = int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) if cap.isOpened() else 0
    cap.release()
    report = summarise(f"video ({frames} frames, exit {proc.returncode}, {len(lines)} JSON lines, "
                       f"{written} video frames, {time.monotonic() - started:.0f} s)", sampler.samples)
    if proc.returncode != 0:
        report.append(f"  app stderr: {err.strip()[-500:]}")
    return report


class BreakingStream(threading.Thread):
    """MJPEG over HTTP on 127.0.0.1 that drops every connection after ``frames_per_connection`` frames."""

    def __init__(self, frames_per_connection: int = 15, fps: float = 30.0) -> None:
        super().__init__(daemon=True)
        import cv2

        self.server = socket.socket()
        self.server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.server.bind(("127.0.0.1", 0))
        self.server.listen(4)
        self.url = f"http://127.0.0.1:{self.server.getsockname()[1]}/stream.mjpg"
        self.frames = [cv2.imencode(".jpg", _frame(i))[1].tobytes() for i in range(30)]
        self.per_connection, self.interval = frames_per_connection, 1.0 / fps
        self.drops = 0
        self.closed = threading.Event()

    def run(self) -> None:
        while not self.closed.is_set():
            try:
                conn, _ = self.server.accept()
            except OSError:
                return
            try:
                conn.recv(4096)
                conn.sendall(b"HTTP/1.0 200 OK\r\nContent-Type: multipart/x-mixed-replace; boundary=frame\r\n\r\n")
                for i in range(self.per_connection):
                    jpg = self.frames[i % len(self.frames)]
                    conn.sendall(b"--frame\r\nContent-Type: image/jpeg\r\nContent-Length: %d\r\n\r\n" % len(jpg)
                                 + jpg + b"\r\n")
                    time.sleep(self.interval)
            except OSError:
                pass
            finally:
                conn.close()  # the break
                self.drops += 1

    def close(self) -> None:
        self.closed.set()
        self.server.close()


def _frame(i: int) -> np.ndarray:
    import cv2

    frame = np.full((240, 320, 3), 100, np.uint8)
    cv2.rectangle(frame, (10 + 5 * i, 60), (70 + 5 * i, 120), (40, 40, 200), -1)
    return frame


def soak_live(model: Path, failures: int, folder: Path) -> List[str]:
    stream = BreakingStream()
    stream.start()
    out = folder / "live"
    out.mkdir()
    started = time.monotonic()
    log = open(out / "app.log", "w")
    proc = subprocess.Popen(app_command(model, stream.url, out), cwd=ROOT, stdout=log, stderr=subprocess.PIPE,
                            text=True)
    sampler = Sampler(proc.pid)
    sampler.start()
    deadline = started + 30 + 10 * failures
    while stream.drops < failures and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.2)
    drops = stream.drops
    proc.send_signal(signal.SIGTERM)
    try:
        _, err = proc.communicate(timeout=60)
    except subprocess.TimeoutExpired:
        proc.kill()
        _, err = proc.communicate()
    log.close()
    sampler.stop.set()
    sampler.join()
    stream.close()
    lines = (out / "out.jsonl").read_text().splitlines() if (out / "out.jsonl").is_file() else []
    reopens = (out / "app.log").read_text().count("reopened") + err.count("reopened")
    report = summarise(f"live (HTTP MJPEG dropped {drops} times, {reopens} reopens logged, exit {proc.returncode} "
                       f"after SIGTERM, {len(lines)} JSON lines, {time.monotonic() - started:.0f} s)", sampler.samples)
    if lines:
        json.loads(lines[-1])  # the last line is complete
    return report


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--frames", type=int, default=10000, help="video frames (default: %(default)s)")
    parser.add_argument("--failures", type=int, default=100, help="live source drops (default: %(default)s)")
    parser.add_argument("--model", type=Path, help="model file (default: the demo model's ONNX)")
    parser.add_argument("--only", choices=("video", "live"), help="one of the two soaks (default: both)")
    args = parser.parse_args()
    if args.model is None:
        from export.demo_model import demo_onnx

        args.model = demo_onnx(verbose=False)
    with tempfile.TemporaryDirectory(prefix="ssd-edge-soak-") as tmp:
        report: List[str] = []
        if args.only in (None, "video"):
            report += soak_video(args.model, args.frames, Path(tmp))
            print("\n".join(report), flush=True)
        if args.only in (None, "live"):
            live = soak_live(args.model, args.failures, Path(tmp))
            print("\n".join(live), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
