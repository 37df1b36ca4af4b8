"""The recorder's own CPU for a 1080p H.264 stream without re-encoding, in paired runs: the same file read by
recording/tap.py decoding only (the baseline: what the camera does anyway), then with the encoded branch,
the ring buffer and a clip every few seconds. The recorder's share of one core at real time is the extra
process CPU seconds over the video's seconds; medians over --pairs, and the ratio of the CPU times. Runs
under Debian's or JetPack's system Python (GStreamer through PyGObject):

    /usr/bin/python3 benchmarks/recording_cost.py --pairs 3
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from recording.options import parse_record_options
from recording.recorder import Recording
from recording.tap import EncodedTap
from runtimes.gstreamer import run_to_end


def make_video(path: Path, seconds: int, fps: int, kbps: int) -> None:
    """A 1080p H.264 MP4 with a keyframe a second, as a camera would send."""
    run_to_end(
        f"videotestsrc pattern=ball num-buffers={seconds * fps} ! "
        f"video/x-raw,format=I420,width=1920,height=1080,framerate={fps}/1 ! "
        f"x264enc speed-preset=ultrafast key-int-max={fps} bitrate={kbps} ! h264parse ! mp4mux ! "
        f"filesink location={path}", 600, "the 1080p test video (x264enc)")


def run(video: Path, folder: Path, record: bool, every_s: float) -> "tuple[float, float]":
    """(process CPU seconds, video seconds) of reading ``video`` to its end, recording or not."""
    recording = None
    if record:
        options = parse_record_options(folder, ["all"], 5.0, 5.0, None, None, [])
        recording = Recording(options, ["cam"], log=lambda _m: None)
    stream = recording.stream("cam") if recording else None
    started = time.process_time()
    tap = EncodedTap(str(video), on_unit=stream.on_unit if stream else None)
    last_event, seq, time_s = -every_s, 0, 0.0
    while True:
        frame = tap.read(30.0)
        if frame is None:
            break
        time_s = frame.time_s
        if stream is not None:
            stream.on_frame(time_s)
            if time_s - last_event >= every_s:
                stream.on_event({"type": "line_crossed", "seq": seq, "timestamp": time_s, "frame": frame.index})
                last_event, seq = time_s, seq + 1
    tap.close()
    if recording is not None:
        recording.close()
    return time.process_time() - started, time_s


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=3)
    parser.add_argument("--seconds", type=int, default=20)
    parser.add_argument("--kbps", type=int, default=4000)
    parser.add_argument("--event-every", type=float, default=15.0, help="seconds between events")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        video = Path(tmp) / "source.mp4"
        make_video(video, args.seconds, 30, args.kbps)
        shares, ratios = [], []
        for pair in range(args.pairs):
            base_cpu, seconds = run(video, Path(tmp) / "none", False, args.event_every)
            rec_cpu, _ = run(video, Path(tmp) / f"clips{pair}", True, args.event_every)
            shares.append((rec_cpu - base_cpu) / seconds)
            ratios.append(rec_cpu / base_cpu)
            print(f"pair {pair}: decode only {base_cpu:.2f} s CPU, with recording {rec_cpu:.2f} s CPU, "
                  f"for {seconds:.1f} s of video")
        print(f"recorder's CPU: median {statistics.median(shares) * 100:.2f} % of one core at real time "
              f"(1080p H.264 {args.kbps} kbit/s, no re-encoding); CPU ratio with/without median "
              f"{statistics.median(ratios):.3f}")


if __name__ == "__main__":
    main()
