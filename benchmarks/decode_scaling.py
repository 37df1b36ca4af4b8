"""Scaling in the decoder: CPU per 1080p H.264 frame decoded to the model's size inside GStreamer, against
decoding the full frame into Python and cv2.resize there (what the camera did before streams/decoding.py).

    /usr/bin/python3 benchmarks/decode_scaling.py [--frames 150] [--rounds 6] [--size 320x320] [--threads 2]

Runs under the system Python (OpenCV with GStreamer). Makes a 1920x1080 H.264 file (x264enc, videotestsrc's
SMPTE bars moving sideways, 6 Mb/s), then alternates the two ways round by round (ABBA order) on the same
file, each the launch line streams/decoding.py plans for this box. CPU is the process's user + system time
(resource.getrusage: GStreamer's decoder and scaler threads included) over the frames read; prints the median
per frame of each way and the ratio of the medians, with the per-round ratios.
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import sys
import tempfile
from pathlib import Path
from typing import Dict, List, Optional, Tuple

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from runtimes.gstreamer import run_to_end
from streams.decoding import DecodeRequest, available_elements, plan_decoding

FULL_HD = (1920, 1080)


def make_video(path: Path, frames: int) -> None:
    """A 1080p30 H.264 MP4 of colour bars moving sideways (x264enc veryfast, 6 Mb/s, a key frame a second)."""
    run_to_end(
        f"videotestsrc num-buffers={frames} pattern=smpte horizontal-speed=6 ! "
        f"video/x-raw,width={FULL_HD[0]},height={FULL_HD[1]},framerate=30/1 ! "
        f"x264enc speed-preset=veryfast key-int-max=30 bitrate=6000 ! h264parse ! mp4mux ! filesink location={path}",
        600, "the 1080p test video (x264enc)")


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def one_round(launch: str, resize_to: Optional[Tuple[int, int]]) -> Tuple[float, int]:
    """(CPU seconds per frame, frames) reading the whole file through ``launch``; ``resize_to``: cv2.resize
    each frame to it in Python (INTER_LINEAR, as the camera's pre-processing stretches)."""
    import cv2

    start = cpu_seconds()
    capture = cv2.VideoCapture(launch, cv2.CAP_GSTREAMER)
    frames = 0
    while True:
        ok, frame = capture.read()
        if not ok:
            break
        if resize_to is not None:
            frame = cv2.resize(frame, resize_to, interpolation=cv2.INTER_LINEAR)
        frames += 1
    capture.release()
    return (cpu_seconds() - start) / max(frames, 1), frames


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--frames", type=int, default=150, help="frames in the test video (default: %(default)s)")
    parser.add_argument("--rounds", type=int, default=6, help="rounds of each way, alternated (default: %(default)s)")
    parser.add_argument("--size", default="320x320", help="the model's input, WxH (default: %(default)s)")
    parser.add_argument("--threads", type=int, default=2, help="software decoder threads (default: %(default)s)")
    args = parser.parse_args()
    import cv2

    cv2.setNumThreads(1)  # as the camera does: the cores go to the runtime, not to OpenCV's pool
    width, height = (int(v) for v in args.size.lower().split("x"))
    print(f"load average {os.getloadavg()[0]:.1f} {os.getloadavg()[1]:.1f} {os.getloadavg()[2]:.1f}")
    elements = available_elements()
    with tempfile.TemporaryDirectory(prefix="decode-scaling-") as folder:
        video = Path(folder) / "smpte-1080p.mp4"
        make_video(video, args.frames)
        ways = {"scaled in the decoder": (DecodeRequest(str(video), "h264", (width, height), args.threads), None),
                "full frame + cv2.resize": (DecodeRequest(str(video), "h264", None, args.threads), (width, height))}
        launches = {name: plan_decoding(request, elements) for name, (request, _) in ways.items()}
        for name, plan in launches.items():
            print(f"{name}: {plan.reason}\n    {plan.launch}")
        cpu: Dict[str, List[float]] = {name: [] for name in ways}
        one_round(launches["scaled in the decoder"].launch, None)  # warm-up: file cache, plugin loading
        for r in range(args.rounds):
            order = list(ways) if r % 4 in (0, 3) else list(ways)[::-1]
            for name in order:
                per_frame, frames = one_round(launches[name].launch, ways[name][1])
                if frames != args.frames:
                    raise SystemExit(f"{name}: read {frames} frames of {args.frames}")
                cpu[name].append(per_frame)
    scaled, full = cpu["scaled in the decoder"], cpu["full frame + cv2.resize"]
    print(f"{args.rounds} rounds x {args.frames} frames, CPU ms per frame (median; each round):")
    for name, values in cpu.items():
        print(f"  {name:<24} {1000 * statistics.median(values):7.2f}   "
              + " ".join(f"{1000 * v:.2f}" for v in values))
    ratios = [s / f for s, f in zip(scaled, full)]
    print(f"  scaled / full: ratio of the medians {statistics.median(scaled) / statistics.median(full):.3f}, "
          f"median of the round ratios {statistics.median(ratios):.3f}")
    print(f"load average {os.getloadavg()[0]:.1f} {os.getloadavg()[1]:.1f} {os.getloadavg()[2]:.1f}")


if __name__ == "__main__":
    main()
