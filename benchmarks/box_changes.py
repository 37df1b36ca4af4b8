"""What changing a running box costs the streams it keeps (issue #27), paired: two streams of the demo INT8 IR
played at their rate (15 FPS files, as cameras deliver), for --seconds each run, with a third stream added and
removed every --period seconds through the control API's library side, against the same run without changes;
runs alternated (--pairs), medians and the ratio of the two streams' frames.

    .venv/bin/python benchmarks/box_changes.py --pairs 2 --seconds 60 --period 10

Prints the CPU model and the load average beside the figures (the machine is shared: compare within a run).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Dict, List

# The repository root replaces the script's own folder on the path (a script here must not shadow a library).
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.pop(1)

FPS = 15.0


def make_video(path: Path, seconds: float) -> Path:
    """A 320x240 MJPG file of the tracking set's first scene, repeated to ``seconds`` at :data:`FPS`."""
    import cv2

    from calibration.synthetic_tracks import ensure_tracking_set

    scene = sorted(p for p in ensure_tracking_set().iterdir() if (p / "img1").is_dir())[0]
    images = [cv2.resize(cv2.imread(str(p)), (320, 240)) for p in sorted((scene / "img1").glob("*.jpg"))]
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter.fourcc(*"MJPG"), FPS, (320, 240))
    for k in range(int(seconds * FPS)):
        writer.write(images[k % len(images)])
    writer.release()
    return path


def one_run(model: Path, video: Path, seconds: float, period: float, change: bool) -> Dict[str, int]:
    """Frames of streams a and b in ``seconds`` (c added and removed every ``period`` when ``change``)."""
    from box.control_impl import BoxController
    from box.runner import BoxRunner
    from boxconfig.__main__ import camera_defaults
    from boxconfig.loading import check_config

    defaults = camera_defaults()
    streams = [{"name": n, "source": str(video), "realtime": True} for n in "ab"]
    config = check_config({"models": {"m": {"path": str(model)}}, "streams": streams,
                           "outputs": {"headless": True}}, "bench", defaults)
    runner = BoxRunner(config, log=lambda _: None)
    control = BoxController(runner, defaults)
    stop = threading.Event()
    runner.open(stop)
    worker = threading.Thread(target=runner.run, args=(stop,))
    worker.start()
    frames = lambda: {n: runner.statuses()[n]["frames"] for n in "ab"}
    start = frames()
    began = time.monotonic()
    added = False
    while time.monotonic() - began < seconds:
        if change:
            if added:
                control.remove_stream("c")
            else:
                control.add_stream({"name": "c", "source": str(video), "realtime": True})
            added = not added
        stop.wait(max(0.0, min(period, seconds - (time.monotonic() - began))))
    end = frames()
    stop.set()
    worker.join()
    return {n: end[n] - start[n] for n in "ab"}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--pairs", type=int, default=2)
    p.add_argument("--seconds", type=float, default=60.0)
    p.add_argument("--period", type=float, default=10.0)
    p.add_argument("--model", type=Path, default=Path("outputs/ssdlite320_shapes_int8.xml"),
                   help="default: %(default)s (python export/build_engine.py --int8 builds it)")
    args = p.parse_args()
    model = args.model
    if not model.is_file():
        p.error(f"--model {model}: no such file; build it with python export/build_engine.py --int8")
    with tempfile.TemporaryDirectory() as folder:
        video = make_video(Path(folder) / "scene.avi", args.seconds + 10)
        totals: Dict[bool, List[int]] = {False: [], True: []}
        for pair in range(args.pairs):
            for change in ((False, True) if pair % 2 == 0 else (True, False)):  # alternated: ABBA
                counts = one_run(model, video, args.seconds, args.period, change)
                totals[change].append(sum(counts.values()))
                print(f"pair {pair + 1} {'changes' if change else 'steady '}: frames a+b {counts}, "
                      f"{sum(counts.values()) / args.seconds:.2f} FPS; load {os.getloadavg()[0]:.1f}", flush=True)
    steady, changed = statistics.median(totals[False]), statistics.median(totals[True])
    pairs = [round(c / s, 3) for s, c in zip(totals[False], totals[True])]
    print(f"ratio of each pair (changes / steady): {pairs}")
    print(f"median FPS of a+b: steady {steady / args.seconds:.2f}, with a stream added/removed every "
          f"{args.period:g} s {changed / args.seconds:.2f}; ratio {changed / steady:.3f} "
          f"(bound: {2 * FPS:g} FPS)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
