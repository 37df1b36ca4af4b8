"""Cost of tracking and counting, and proof that dead event sinks do not slow the inference path.

    python benchmarks/tracking.py [--frames 300] [--rounds 5] [--skip-sinks] [--skip-intervals]

1. Tracker + zones time per frame at 10 and 100 objects (scripted detections moving across a 1920x1080
   frame with one zone and one line; target <= 0.5 ms at 100), and the whole Analytics.process with and
   without drawing. Medians over ``--rounds`` rounds of ``--frames`` frames.
2. The demo model (ONNX Runtime) + analytics on the generated tracking set, alternating in the same run:
   no sinks at all, then dead sinks (a webhook to a closed port, a webhook that accepts and never answers,
   an MQTT broker killed after the sink connected, and the events file that keeps what they fail).
   Prints the median FPS of each and their ratio (target: dead within 5% of none).
3. Tracking with an interval: the demo model's detections on every frame of the tracking set, replayed with
   the detector's boxes on every 1st, 2nd and 4th frame and the tracker's prediction between (``--interval
   N``); MOTA and IDF1 by py-motmetrics (target: interval 2 within 0.03 of interval 1).
"""

from __future__ import annotations

import argparse
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Dict, List, Tuple

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.pop(1)

from analytics.pipeline import Analytics
from analytics.sinks import JsonLinesSink, MqttSink, Sink, WebhookSink
from analytics.tracker import ByteTracker
from analytics.zone_file import parse_zones
from analytics.zones import StreamCounter
from runtimes.detections import Detections

CLASSES = ["__background__", "ellipse", "rectangle", "triangle", "star", "cross"]


def scripted_frames(objects: int, frames: int, seed: int = 0) -> List[Detections]:
    """``objects`` boxes of 40-80 px on a grid over 1920x1080, each moving at its own constant velocity with
    1 px of noise; scores 0.2-1.0 (some go to the low-score association)."""
    rng = np.random.default_rng([seed, objects])
    side = int(np.ceil(np.sqrt(objects)))
    gx, gy = np.meshgrid(np.linspace(100, 1700, side), np.linspace(100, 900, side))
    start = np.stack([gx.ravel(), gy.ravel()], axis=1)[:objects]
    velocity = rng.uniform(-1.5, 1.5, (objects, 2))
    size = rng.uniform(40, 80, (objects, 1))
    scores = rng.uniform(0.2, 1.0, objects).astype(np.float32)
    labels = rng.integers(1, len(CLASSES), objects)
    out = []
    for t in range(frames):
        centre = start + velocity * t + rng.normal(0, 1, start.shape)
        boxes = np.concatenate([centre - size / 2, centre + size / 2], axis=1).astype(np.float32)
        out.append(Detections(boxes, scores, labels, CLASSES))
    return out


ZONES = {"coordinates": "normalized",
         "zones": [{"name": "middle", "polygon": [[0.3, 0.3], [0.7, 0.3], [0.7, 0.7], [0.3, 0.7]],
                    "dwell_limit_s": 2.0}],
         "lines": [{"name": "gate", "points": [[0.1, 0.5], [0.9, 0.5]]}]}


def cost(frames: int, rounds: int) -> None:
    print(f"1. per-frame cost, median of {rounds} rounds x {frames} frames (ms)")
    print(f"{'objects':>8}{'tracker':>10}{'zones':>10}{'tracker+zones':>15}{'process':>10}{'+ drawing':>11}")
    image = np.zeros((1080, 1920, 3), np.uint8)
    for objects in (10, 100):
        scene = scripted_frames(objects, frames)
        spec = parse_zones(ZONES, ["s"], CLASSES)
        medians: Dict[str, List[float]] = {"tracker": [], "zones": [], "both": [], "process": [], "draw": []}
        for _ in range(rounds):
            tracker = ByteTracker(num_classes=len(CLASSES))
            counter = StreamCounter("s", spec["s"], CLASSES)
            t_track, t_zone = [], []
            for i, dets in enumerate(scene):
                t0 = time.perf_counter()
                tracks = tracker.update(dets.boxes, dets.scores, dets.labels)
                t1 = time.perf_counter()
                counter.update(i, i / 30, tracks, (1920, 1080))
                t2 = time.perf_counter()
                t_track.append(t1 - t0)
                t_zone.append(t2 - t1)
            skip = 5  # the first frames have no confirmed tracks yet
            medians["tracker"].append(statistics.median(t_track[skip:]))
            medians["zones"].append(statistics.median(t_zone[skip:]))
            medians["both"].append(statistics.median(np.add(t_track, t_zone)[skip:]))
            for key, draw in (("process", False), ("draw", True)):
                analytics = Analytics(["s"], CLASSES, spec, counts_every_s=1.0)
                times = []
                for i, dets in enumerate(scene):
                    frame = image.copy() if draw else image
                    t0 = time.perf_counter()
                    analytics.process("s", {"frame": i, "timestamp": i / 30}, dets, frame, draw=draw)
                    times.append(time.perf_counter() - t0)
                medians[key].append(statistics.median(times[skip:]))
        m = {k: 1000 * statistics.median(v) for k, v in medians.items()}
        print(f"{objects:>8}{m['tracker']:>10.3f}{m['zones']:>10.3f}{m['both']:>15.3f}{m['process']:>10.3f}"
              f"{m['draw']:>11.3f}")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def dead_sinks(folder: Path, log=print) -> Tuple[List[Sink], JsonLinesSink, List[object]]:
    """Sinks whose endpoints are down: (sinks, the events file among them, things to close afterwards)."""
    events = JsonLinesSink(folder / "events.jsonl", queue_size=100000)
    sinks: List[Sink] = [events, WebhookSink(f"http://127.0.0.1:{_free_port()}/events", queue_size=1000)]
    black_hole = socket.socket()
    black_hole.bind(("127.0.0.1", 0))
    black_hole.listen(64)  # accepts, never answers: every POST waits for its timeout
    sinks.append(WebhookSink(f"http://127.0.0.1:{black_hole.getsockname()[1]}/", timeout_s=2.0, queue_size=1000))
    keep: List[object] = [black_hole]
    mosquitto = shutil.which("mosquitto") or shutil.which("/usr/sbin/mosquitto")
    if mosquitto:
        port = _free_port()
        conf = folder / "mosquitto.conf"
        conf.write_text(f"listener {port} 127.0.0.1\nallow_anonymous true\n")
        broker = subprocess.Popen([mosquitto, "-c", str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        for _ in range(100):
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", port)) == 0:
                    break
            time.sleep(0.05)
        sinks.append(MqttSink("127.0.0.1", port, "bench", queue_size=1000))
        broker.kill()
        broker.wait()
    else:
        log("   (mosquitto not installed: no MQTT sink in the dead set)")
    for sink in sinks:
        if sink is not events:
            sink.on_undelivered = events.record_undelivered
    return sinks, events, keep


def sinks_fps(rounds: int, log=print) -> None:
    import cv2

    from calibration.synthetic_tracks import ensure_tracking_set, frame_paths, sequences_of
    from export.demo_model import demo_onnx
    from runtimes.loader import load_detector

    detector = load_detector(demo_onnx(verbose=False), score_threshold=0.05)
    root = ensure_tracking_set(verbose=False)
    images = [np.asarray(cv2.imread(str(p))) for seq in sequences_of(root)[:3] for p in frame_paths(seq)]
    folder = Path(tempfile.mkdtemp(prefix="tracking-bench-"))
    sinks, events, keep = dead_sinks(folder, log)
    spec = parse_zones(ZONES, ["s"], CLASSES)
    print(f"2. demo model (ONNX Runtime) + analytics on {len(images)} frames of the tracking set, "
          f"{rounds} passes each, alternated in blocks")
    print(f"   dead sinks: {', '.join(s.name for s in sinks)}")
    analytics = {"none": Analytics(["s"], CLASSES, spec, [], None, counts_every_s=0.2),
                 "dead": Analytics(["s"], CLASSES, spec, sinks, events, counts_every_s=0.2)}
    fps: Dict[str, List[float]] = {"none": [], "dead": []}
    spent: Dict[str, float] = {"none": 0.0, "dead": 0.0}
    frame_index = {"none": 0, "dead": 0}
    emitted = 0
    block = 24  # frames per timed block; blocks alternate none, dead, none, ... (this VM's speed drifts)
    for b in range(rounds * len(images) // block):
        for kind in (("none", "dead") if b % 2 == 0 else ("dead", "none")):
            t0 = time.perf_counter()
            for _ in range(block):
                i = frame_index[kind]
                frame_index[kind] += 1
                image = images[i % len(images)]
                dets = detector(image)
                record: Dict[str, Any] = {"frame": i, "timestamp": i / 15}
                t1 = time.perf_counter()
                analytics[kind].process("s", record, dets, image, draw=False)
                spent[kind] += time.perf_counter() - t1
                emitted += len(record["events"]) if kind == "dead" else 0
            fps[kind].append(block / (time.perf_counter() - t0))
    ratios = [d / n for n, d in zip(fps["none"], fps["dead"])]
    print(f"   {len(fps['none'])} blocks of {block} frames each, in pairs")
    print(f"   {'sinks':<8}{'median FPS':>12}{'p10 FPS':>10}{'p90 FPS':>10}{'analytics ms/frame':>20}")
    for kind in ("none", "dead"):
        p10, p90 = np.percentile(fps[kind], [10, 90])
        print(f"   {kind:<8}{statistics.median(fps[kind]):>12.1f}{p10:>10.1f}{p90:>10.1f}"
              f"{1000 * spent[kind] / frame_index[kind]:>20.3f}")
    print(f"   median of the paired ratios dead/none: {statistics.median(ratios):.3f} (target >= 0.95); "
          f"ratio of the medians: {statistics.median(fps['dead']) / statistics.median(fps['none']):.3f}")
    print(f"   events made while the sinks were dead: {emitted}")
    for sink in sinks:
        if sink is not events:
            sink.close(0.5)
    events.close(2.0)
    stats = {s.name: s.stats() for s in sinks}
    print("   sink stats after close: " + "; ".join(f"{k}: sent {v['sent']} failed {v['failed']}"
                                                   for k, v in stats.items()))
    for item in keep:
        item.close()  # type: ignore[attr-defined]  # sockets
    shutil.rmtree(folder, ignore_errors=True)


def intervals(log=print) -> None:
    from analytics.tracker import ByteTracker
    from calibration.tracking_accuracy import detect_set, evaluate
    from export.demo_model import demo_onnx
    from runtimes.loader import load_detector

    detector = load_detector(demo_onnx(verbose=False), score_threshold=0.05)
    sequences = detect_set(detector)
    classes = len(detector.class_names)
    log(f"3. tracking with an interval: {sum(len(s.detections) for s in sequences)} frames of the tracking set, "
        "every frame scored (predicted ones too)")
    log(f"   {'interval':>8}{'MOTA':>8}{'IDF1':>8}{'switches':>10}{'FP':>6}{'misses':>8}{'detector calls':>16}")
    first = None
    for interval in (1, 2, 4):
        row = evaluate(sequences, interval, lambda: ByteTracker(num_classes=classes)).loc["OVERALL"]
        first = row if first is None else first
        calls = sum(-(-len(s.detections) // interval) for s in sequences)
        log(f"   {interval:>8}{row['mota']:>8.3f}{row['idf1']:>8.3f}{int(row['num_switches']):>10}"
            f"{int(row['num_false_positives']):>6}{int(row['num_misses']):>8}{calls:>16}")
    log("   target: interval 2 within 0.03 of interval 1 in MOTA and IDF1")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--frames", type=int, default=300, help="frames per cost round (default: %(default)s)")
    parser.add_argument("--rounds", type=int, default=5, help="rounds of each measurement (default: %(default)s)")
    parser.add_argument("--skip-sinks", action="store_true", help="no dead-sinks comparison (part 2)")
    parser.add_argument("--skip-intervals", action="store_true", help="no tracking with an interval (part 3)")
    args = parser.parse_args()
    cost(args.frames, args.rounds)
    if not args.skip_sinks:
        sinks_fps(args.rounds)
    if not args.skip_intervals:
        intervals()


if __name__ == "__main__":
    main()
