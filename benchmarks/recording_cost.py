"""What recording costs, in paired runs (medians over --pairs, ratios):

1. the recorder's own CPU for a 1080p H.264 stream without re-encoding: the same file read by recording/tap.py
   decoding only (the baseline: what the camera does anyway), then with the encoded branch, the ring buffer
   and a clip every few seconds; its share of one core at real time is the extra process CPU seconds over the
   video's seconds. Under Debian's or JetPack's system Python (GStreamer through PyGObject):

       /usr/bin/python3 benchmarks/recording_cost.py --pairs 3

2. ``--app``: apps/camera.py's FPS on 4 H.264 files (the tracking set's scenes, a counting line, the demo
   model on ONNX Runtime) without and with ``--record``, alternated. Needs the model runtime and PyGObject in
   one interpreter: the virtual environment, given the system's ``gi`` when it has none (a folder holding
   only a link to it is put on the path: the rest of the system's packages stay out):

       .venv/bin/python benchmarks/recording_cost.py --app --pairs 3
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

# The repository root replaces the script's own folder on the path: a script here must not shadow a library's
# module of the same name.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.pop(1)

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


def system_gi() -> None:
    """PyGObject importable: the system's gi (same Python version) through a folder holding only a link to it."""
    try:
        import gi  # noqa: F401
        return
    except ImportError:
        pass
    found = [Path(p) / "gi" for p in ("/usr/lib/python3/dist-packages", "/usr/lib/python3.8/dist-packages")
             if (Path(p) / "gi").is_dir()]
    if not found:
        raise SystemExit("--app needs PyGObject: apt install python3-gi")
    folder = Path(tempfile.mkdtemp(prefix="gi-only-"))
    (folder / "gi").symlink_to(found[0])
    sys.path.insert(0, str(folder))


def app_videos(folder: Path, streams: int, loops: int) -> "list[Path]":
    """One H.264 MP4 per stream from the tracking set's scenes (moving shapes), each scene played ``loops``
    times, a keyframe a second."""
    from calibration.synthetic_tracks import ensure_tracking_set

    scenes = sorted(p for p in ensure_tracking_set().iterdir() if (p / "img1").is_dir())
    videos = []
    for k in range(streams):
        scene = scenes[k % len(scenes)] / "img1"
        count = len(list(scene.glob("*.jpg")))
        video = folder / f"stream{k}.mp4"
        run_to_end(f'multifilesrc location="{scene}/%06d.jpg" index=1 stop-index={count} loop=false '
                   f'caps="image/jpeg,framerate=15/1" num-buffers={count * loops} ! jpegdec ! videoconvert ! '
                   f"video/x-raw,format=I420 ! x264enc speed-preset=ultrafast key-int-max=15 bitrate=800 ! "
                   f"h264parse ! mp4mux ! filesink location={video}", 600, f"the test video {video.name}")
        videos.append(video)
    return videos


def app_fps(videos: "list[Path]", folder: Path, record: bool) -> "tuple[float, float]":
    """apps/camera.py's mean FPS (headless, tracking and counting, with --record or not) and its process CPU
    milliseconds per frame (every thread: the model's, the decoders', GStreamer's; steadier than FPS on a
    shared machine)."""
    import threading

    from apps.camera import build_parser
    from apps.camera import run as run_app
    from export.demo_model import demo_onnx

    zones = folder / "zones.json"
    zones.write_text('{"coordinates": "normalized", "lines": [{"name": "middle", "points": [[0.5, 0], [0.5, 1]]}]}')
    argv = ["--model", str(demo_onnx(verbose=False)), "--headless", "--zones", str(zones),
            "--events", str(folder / f"events-{record}.jsonl")]
    for video in videos:
        argv += ["--source", str(video)]
    if record:
        argv += ["--record", str(folder / "clips"), "--pre-seconds", "2", "--post-seconds", "2"]
    started = time.process_time()
    summary = run_app(build_parser().parse_args(argv), threading.Event(), log=lambda _m: None)
    return summary["mean_fps"], 1000 * (time.process_time() - started) / max(1, summary["frames"])


def app_main(args: argparse.Namespace) -> None:
    system_gi()
    with tempfile.TemporaryDirectory() as tmp:
        videos = app_videos(Path(tmp), args.streams, args.loops)
        app_fps(videos, Path(tmp), False)  # warm-up: the model's first session, the page cache
        runs: "dict[bool, list]" = {False: [], True: []}  # --record -> [(FPS, CPU ms a frame)]
        for pair in range(args.pairs):
            order = (False, True) if pair % 2 == 0 else (True, False)  # alternated: drift hits both alike
            for record in order:
                runs[record].append(app_fps(videos, Path(tmp), record))
            (fps_off, cpu_off), (fps_on, cpu_on) = runs[False][-1], runs[True][-1]
            print(f"pair {pair}: without --record {fps_off:.1f} FPS {cpu_off:.1f} CPU ms/frame, with {fps_on:.1f} "
                  f"FPS {cpu_on:.1f} CPU ms/frame", flush=True)
        clips = len(list((Path(tmp) / "clips").rglob("*.mp4")))
        for k, what in ((0, "FPS"), (1, "CPU ms a frame")):
            off, on = ([run[k] for run in runs[record]] for record in (False, True))
            print(f"camera app, {args.streams} streams, {what}: median {statistics.median(off):.2f} without "
                  f"--record, {statistics.median(on):.2f} with; ratio with/without "
                  f"{statistics.median(on) / statistics.median(off):.3f}, per pair "
                  f"{', '.join(f'{b / a:.2f}' for a, b in zip(off, on))}")
        print(f"({clips} clips written)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=3)
    parser.add_argument("--seconds", type=int, default=20)
    parser.add_argument("--kbps", type=int, default=4000)
    parser.add_argument("--event-every", type=float, default=15.0, help="seconds between events")
    parser.add_argument("--app", action="store_true", help="the camera app's FPS with and without --record")
    parser.add_argument("--streams", type=int, default=4, help="--app: streams (default: %(default)s)")
    parser.add_argument("--loops", type=int, default=2, help="--app: times each scene plays (default: %(default)s)")
    args = parser.parse_args()
    if args.app:
        app_main(args)
        return
    with tempfile.TemporaryDirectory() as tmp:
        video = Path(tmp) / "source.mp4"
        make_video(video, args.seconds, 30, args.kbps)
        shares, ratios = [], []
        for pair in range(args.pairs):
            cpu = {}
            for record in ((False, True) if pair % 2 == 0 else (True, False)):  # alternated: warm-up and drift
                cpu[record], seconds = run(video, Path(tmp) / f"clips{pair}", record, args.event_every)
            base_cpu, rec_cpu = cpu[False], cpu[True]
            shares.append((rec_cpu - base_cpu) / seconds)
            ratios.append(rec_cpu / base_cpu)
            print(f"pair {pair}: decode only {base_cpu:.2f} s CPU, with recording {rec_cpu:.2f} s CPU, "
                  f"for {seconds:.1f} s of video")
        print(f"recorder's CPU: median {statistics.median(shares) * 100:.2f} % of one core at real time, per pair "
              f"{', '.join(f'{v * 100:.1f}' for v in shares)} "
              f"(1080p H.264 {args.kbps} kbit/s, no re-encoding); CPU ratio with/without median "
              f"{statistics.median(ratios):.3f}")


if __name__ == "__main__":
    main()
