"""Does a web viewer slow inference? The demo detector's loop (detect, draw, LiveView.on_frame) on a generated
video's frames, with the live view serving on 127.0.0.1, alternated in one run between:

    none      no viewer connected
    stalled   a viewer that connects to /stream/cam0.mjpg and never reads (its socket buffer fills, its
              server thread blocks in a write; frames for it must be dropped, not queued, not encoded)
    reading   a viewer process that reads the MJPEG stream as fast as it can (informational: encoding JPEGs
              for it costs CPU, which on a 2-core machine competes with inference)

    python benchmarks/viewer_load.py [--rounds 40] [--block 10] [--size 640x480]

Each condition has its own LiveView with its viewer attached throughout; blocks of frames go to one view after
the other, so the conditions alternate every ~0.5 s in the same run. Prints per condition the median block FPS,
the median (and interquartile range) of each block's FPS over the "none" block of the same round (target for
"stalled": within 5%), the median LiveView.on_frame time, and the viewers, frames sent and JPEG encodes.
"""

from __future__ import annotations

import argparse
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Dict, List

import cv2

# The repository root replaces the script's own folder on the path (as in the other benchmarks).
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.pop(1)

from calibration.synthetic import ensure_demo_dataset
from export.demo_model import demo_onnx
from runtimes.loader import load_detector
from streams.overlay import draw
from webview.gate import Limits
from webview.live import LiveView


def frames_of_generated_video(count: int, size) -> List:
    images = sorted((ensure_demo_dataset(verbose=False) / "VOCdevkit/VOC2007/JPEGImages").glob("*.jpg"))[-50:]
    video = Path(tempfile.mkdtemp(prefix="viewer-load-")) / "in.avi"
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter.fourcc(*"MJPG"), 30.0, size)
    for i in range(count):
        image = cv2.imread(str(images[i % len(images)]))
        assert image is not None
        writer.write(cv2.resize(image, size))
    writer.release()
    capture = cv2.VideoCapture(str(video))
    frames = []
    while True:
        ok, frame = capture.read()
        if not ok:
            break
        frames.append(frame)
    return frames


class StalledViewer:
    """Connects, asks for the MJPEG stream, never reads a byte."""

    def __init__(self, port: int) -> None:
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        self.sock.connect(("127.0.0.1", port))
        self.sock.sendall(b"GET /stream/cam0.mjpg HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")

    def close(self) -> None:
        self.sock.close()


READER = """
import socket, sys
sock = socket.create_connection(("127.0.0.1", int(sys.argv[1])))
sock.sendall(b"GET /stream/cam0.mjpg HTTP/1.1\\r\\nHost: 127.0.0.1\\r\\n\\r\\n")
while sock.recv(1 << 16):
    pass
"""


class ReadingViewer:
    """Another process (as a browser would be) reading the MJPEG stream as fast as it arrives."""

    def __init__(self, port: int) -> None:
        self.proc = subprocess.Popen([sys.executable, "-c", READER, str(port)])

    def close(self) -> None:
        self.proc.kill()
        self.proc.wait()


def detect_block(detector, view: LiveView, frames: List, first: int, count: int) -> Dict[str, Any]:
    """``count`` frames through detect, draw and ``view.on_frame``; wall seconds and on_frame seconds."""
    on_frame_s: List[float] = []
    start = time.perf_counter()
    for index in range(first, first + count):
        t0 = time.perf_counter()
        frame = frames[index % len(frames)].copy()  # a pipeline hands over a new array per frame
        dets = detector(frame)
        timings = dict(capture=time.perf_counter() - t0, **detector.last_timings)
        t1 = time.perf_counter()
        draw(frame, dets, 0.0, {k: 1000 * v for k, v in timings.items()})
        timings["draw"] = time.perf_counter() - t1
        record = {"stream": "cam0", "frame": index, "timestamp": t0, "detections": dets.to_list(),
                  "timings_ms": {k: 1000 * v for k, v in timings.items()},
                  "latency_ms": 1000 * (time.perf_counter() - t0)}
        t2 = time.perf_counter()
        view.on_frame("cam0", frame, record)
        on_frame_s.append(time.perf_counter() - t2)
    return {"seconds": time.perf_counter() - start, "on_frame_s": on_frame_s}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--frames", type=int, default=100, help="distinct video frames (default: %(default)s)")
    parser.add_argument("--block", type=int, default=10, help="frames per block (default: %(default)s)")
    parser.add_argument("--rounds", type=int, default=40, help="rounds of one block per condition "
                                                                "(default: %(default)s)")
    parser.add_argument("--size", default="640x480", help="frame size WxH (default: %(default)s)")
    args = parser.parse_args()
    size = tuple(int(v) for v in args.size.lower().split("x"))
    conditions = ["none", "stalled", "reading"]
    frames = frames_of_generated_video(args.frames, size)
    detector = load_detector(demo_onnx(verbose=False), score_threshold=0.4)
    for frame in frames[:10]:
        detector(frame)  # warm-up
    # One live view per condition, each with its viewer attached for the whole run; the blocks of frames go to
    # one view after the other, so the conditions alternate every ~0.5 s and share the machine's drift.
    limits = Limits(send_timeout_s=600.0)  # the stalled viewer must stay connected for the whole run
    views = {c: LiveView(["cam0"], serve=("127.0.0.1", 0), limits=limits, log=lambda _: None) for c in conditions}
    stalled = StalledViewer(views["stalled"].server.port)
    reading = ReadingViewer(views["reading"].server.port)
    time.sleep(1.0)  # both viewers connected and waiting
    results: Dict[str, List[Dict[str, Any]]] = {c: [] for c in conditions}
    index = 0
    try:
        for k in range(args.rounds):
            # each round starts with another condition: a drift within the round favours none of them
            for condition in conditions[k % 3:] + conditions[:k % 3]:
                results[condition].append(detect_block(detector, views[condition], frames, index, args.block))
                index += args.block
        slots = {c: views[c].hub.slot("cam0") for c in conditions}
        state = {c: (slot.viewers, slot.sent, slot.encodes) for c, slot in slots.items() if slot is not None}
    finally:
        stalled.close()
        reading.close()
        for view in views.values():
            view.close()
    print(f"demo detector (ONNX Runtime) + overlay + LiveView.on_frame, {size[0]}x{size[1]}, {args.rounds} rounds "
          f"of {args.block}-frame blocks per condition, interleaved")
    print(f"{'viewer':<10}{'median FPS':>11}{'ratio':>8}{'ratio IQR':>15}{'on_frame µs':>13}{'viewers':>9}"
          f"{'frames sent':>13}{'encodes':>9}")
    base = results["none"]
    for condition, blocks in results.items():
        fps = [args.block / b["seconds"] for b in blocks]
        # each block against the "none" block of its own round
        ratios = sorted(args.block / b["seconds"] / (args.block / n["seconds"]) for b, n in zip(blocks, base))
        q1, q3 = ratios[len(ratios) // 4], ratios[(3 * len(ratios)) // 4]
        on_frame_us = 1e6 * statistics.median(t for b in blocks for t in b["on_frame_s"])
        viewers, sent, encodes = state[condition]
        print(f"{condition:<10}{statistics.median(fps):>11.1f}{statistics.median(ratios):>8.3f}"
              f"{f'{q1:.3f}-{q3:.3f}':>15}{on_frame_us:>13.1f}{viewers:>9}{sent:>13}{encodes:>9}", flush=True)
    print(f"(frames pushed per condition: {args.rounds * args.block}; the stalled viewer never read a byte)")


if __name__ == "__main__":
    main()
