"""apps/camera.py with --record (issue #26, docs/recording.md): bad recording flags stop the app in one line,
exit 2, before anything is written (the class triggers after the model is loaded, before a stream opens)."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Dict, List, Tuple

import cv2
import numpy as np
import pytest

from tests.test_camera_analytics import refused_by_the_app
from tests.test_recording_device import COMMON

ROOT = Path(__file__).resolve().parents[1]

# (id, flags, what the one line must contain); relative paths are in the test's folder
BAD_RECORDING_FLAGS = [
    ("folder-is-a-file", ["--record", "taken.txt"], "--record taken.txt: "),
    ("folder-under-a-file", ["--record", "taken.txt/clips"], "is not a folder"),
    ("unmakeable-folder", ["--record", "/proc/clips"], "--record /proc/clips: "),  # root too: not at probe, at mkdir
    ("negative-pre", ["--record", "clips", "--pre-seconds", "-1"], "--pre-seconds -1.0: seconds must be"),
    ("negative-post", ["--record", "clips", "--post-seconds", "-0.5"], "--post-seconds -0.5: seconds must be"),
    ("zero-days", ["--record", "clips", "--retain-days", "0"], "--retain-days 0.0: a retention limit"),
    ("zero-gb", ["--record", "clips", "--retain-gb", "0"], "--retain-gb 0.0: a retention limit"),
    ("unknown-trigger", ["--record", "clips", "--record-on", "explosion"], "--record-on 'explosion': not a trigger"),
    ("unknown-class", ["--record", "clips", "--record-on", "zone_enter,class:zebra"],
     "--record-on class:zebra: the model has no class 'zebra'"),
    ("flag-without-record", ["--pre-seconds", "3"], "--pre-seconds needs --record"),
]


@pytest.fixture
def image_folder(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("frames")
    cv2.imwrite(str(folder / "000.jpg"), np.zeros((48, 64, 3), np.uint8))
    return folder


@pytest.mark.parametrize("row", BAD_RECORDING_FLAGS, ids=[row[0] for row in BAD_RECORDING_FLAGS])
def test_a_bad_recording_flag_stops_the_app_in_one_line_before_writing(tmp_path, image_folder, row):
    _, flags, expected = row
    (tmp_path / "taken.txt").write_text("not a folder")
    line = refused_by_the_app(tmp_path, "--source", str(image_folder), *flags)
    assert line.startswith("error: ") and expected in line, line
    if row[0].endswith("folder"):
        assert line.endswith("choose another folder") or line.endswith("give a folder for the clips"), line


def test_an_unwritable_record_folder_is_refused_before_the_model_is_looked_for(tmp_path, image_folder):
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        probe = locked / "probe"
        try:
            probe.mkdir()  # root writes anywhere: nothing to refuse
            probe.rmdir()
            pytest.skip("running as root: permissions do not stop writing")
        except PermissionError:
            pass
        line = refused_by_the_app(tmp_path, "--source", str(image_folder), "--record", "locked/clips",
                                  model="missing.onnx")
        assert line.startswith("error: --record locked/clips: cannot write in") and "permission denied" in line, line
    finally:
        locked.chmod(0o700)


def test_good_recording_flags_make_the_folder_and_run(tmp_path, image_folder):
    from export.demo_model import demo_onnx

    result = subprocess.run([sys.executable, str(ROOT / "apps/camera.py"), "--model", str(demo_onnx(verbose=False)),
                             "--headless", "--source", str(image_folder), "--record", "clips", "--record-on",
                             "line_crossed,class:ellipse", "--pre-seconds", "0", "--retain-gb", "0.5"],
                            cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    assert (tmp_path / "clips").is_dir()
    assert "recording: clips to clips (0 s before, 5 s after)" in result.stdout + result.stderr
    assert json.loads(result.stdout.strip().splitlines()[-1][len("summary: "):])["frames"] == 1


FPS, GOP = 15, 15  # the tracking set's rate; a keyframe a second
MAKE_VIDEO = """
import json, sys
import gi
gi.require_version("Gst", "1.0")
from gi.repository import Gst
Gst.init(None)
cfg = json.loads(sys.argv[1])
codec = cfg.get("codec", "h264")
encoder = {"h264": "x264enc speed-preset=ultrafast key-int-max={gop} bitrate=800 ! h264parse",
           "h265": "x265enc speed-preset=ultrafast key-int-max={gop} bitrate=800 option-string=open-gop=0 ! "
                   "h265parse"}[codec].format(gop=cfg["gop"])  # closed GOPs, as cameras send
missing = [e for e in (encoder.split()[0], codec + "parse", "mp4mux", "jpegdec", "avdec_" + codec)
           if Gst.ElementFactory.find(e) is None]
if missing:
    print(json.dumps({"skip": "GStreamer elements missing: " + ", ".join(missing)})); raise SystemExit
pipeline = Gst.parse_launch(
    f'multifilesrc location="{cfg["frames"]}/%06d.jpg" index=1 stop-index={cfg["count"]} '
    f'caps="image/jpeg,framerate={cfg["fps"]}/1" ! jpegdec ! videoconvert ! video/x-raw,format=I420 ! '
    f'{encoder} ! mp4mux ! filesink location={cfg["video"]}')
pipeline.set_state(Gst.State.PLAYING)
message = pipeline.get_bus().timed_pop_filtered(120 * Gst.SECOND, Gst.MessageType.EOS | Gst.MessageType.ERROR)
pipeline.set_state(Gst.State.NULL)
assert message is not None and message.type == Gst.MessageType.EOS, message and message.parse_error()
print(json.dumps({"video": cfg["video"]}))
"""

# The camera's own wiring (its flags, recording.cli, analytics.cli, the capture layer's tap) under the system
# Python, with the detections the demo model gave each frame in the virtual environment (no ONNX runtime here).
RUN_WIRED = """
import json, sys, time
sys.path.insert(0, ROOT)
import numpy as np
from apps.camera import build_parser, pipeline_options
from analytics.cli import from_args as analytics_for
from recording.cli import check_at_start, from_args as recording_for
from runtimes.detections import Detections
from streams.capture import StreamCapture, StreamSource
from streams.sources import parse_source
cfg = json.loads(sys.argv[1])
args = build_parser().parse_args(cfg["argv"])
check_at_start(args)
names, class_names = ["cam"], cfg["class_names"]
recording = recording_for(args, names, class_names)
analytics = analytics_for(args, names, class_names, print, recording)
options = pipeline_options(args, class_names, print, recording).capture
assert options.reader_for is not None, "no tap: recording would see nothing"
capture = StreamCapture(StreamSource("cam", parse_source(SOURCE)), options, print)
capture.start()
frames = {int(k): v for k, v in cfg["detections"].items()}
seen = []
while True:
    frame = capture.take()
    if frame is None:
        if capture.finished:
            break
        time.sleep(0.005)
        continue
    found = frames[frame.index]
    detections = Detections(np.array([d["box"] for d in found], np.float32).reshape(-1, 4),
                            np.array([d["score"] for d in found], np.float32),
                            np.array([d["label"] for d in found], np.int64), class_names)
    record = {"stream": "cam", "frame": frame.index, "timestamp": round(frame.timestamp, 6)}
    analytics.process("cam", record, detections, frame.image)
    seen.append([frame.index, frame.timestamp])
capture.close()
analytics.close()
recording.close()
print(json.dumps({"frames": seen, "description": capture.description, "metrics": recording.metrics()}))
"""
RUN_WIRED_FILE = RUN_WIRED.replace("SOURCE", 'cfg["video"]')


def test_every_event_has_a_clip_around_it_from_the_camera_wiring(tmp_path, demo_model):
    from calibration.synthetic_tracks import ensure_tracking_set
    from runtimes.loader import load_detector
    from tests.test_recording_device import system_json

    pre, post = 1.0, 1.0
    sequence = sorted(p for p in ensure_tracking_set().iterdir() if (p / "img1").is_dir())[0]
    count = len(list((sequence / "img1").glob("*.jpg")))
    video = tmp_path / "source.mp4"
    system_json(MAKE_VIDEO.replace("sys.path.insert(0, ROOT)", ""), {
        "frames": str(sequence / "img1"), "count": count, "fps": FPS, "gop": GOP, "video": str(video)})
    zones = tmp_path / "zones.json"
    zones.write_text(json.dumps({"coordinates": "normalized",
                                 "lines": [{"name": "middle", "points": [[0.5, 0], [0.5, 1]]}]}))
    # the demo model's detections of every frame, in the virtual environment (ONNX Runtime)
    _, onnx_path, _ = demo_model
    result = subprocess.run([sys.executable, str(ROOT / "apps/camera.py"), "--model", str(onnx_path), "--headless",
                             "--source", str(video), "--zones", str(zones), "--events", str(tmp_path / "e0.jsonl"),
                             "--json", str(tmp_path / "frames.jsonl")], cwd=tmp_path, capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    lines = [json.loads(line) for line in (tmp_path / "frames.jsonl").read_text().splitlines()]
    assert [r["frame"] for r in lines] == list(range(count))
    class_names = list(load_detector(str(onnx_path)).class_names)
    events_file, clips = tmp_path / "events.jsonl", tmp_path / "clips"
    argv = ["--model", str(onnx_path), "--source", str(video), "--headless", "--zones", str(zones), "--events",
            str(events_file), "--record", str(clips), "--pre-seconds", str(pre), "--post-seconds", str(post)]
    report = system_json(RUN_WIRED_FILE, {"argv": argv, "video": str(video), "class_names": class_names,
                                     "detections": {r["frame"]: r["detections"] for r in lines}}, timeout=300)
    assert [f[0] for f in report["frames"]] == list(range(count))  # every frame, numbered by the tap
    times = [f[1] for f in report["frames"]]
    assert times == pytest.approx([i / FPS for i in range(count)], abs=1e-3)  # the stream's own clock (pts)
    assert "recorded" in report["description"]
    events = [json.loads(line) for line in events_file.read_text().splitlines()]
    crossed = [e for e in events if e["type"] == "line_crossed"]
    assert crossed, "no event to record"
    source = decoded(video)
    end_s = (count - 1) / FPS
    for event in crossed:
        assert event["clip"].startswith("cam/") and event["snapshot"].endswith(".jpg"), event
        clip = clips / event["clip"]
        assert clip.is_file() and (clips / event["snapshot"]).is_file(), event
        assert (clips / event["snapshot"].replace(".jpg", "-crop.jpg")).is_file()
        meta = json.loads(clip.with_suffix(".json").read_text())
        assert event["seq"] in [e["seq"] for e in meta["events"]]
        first, last = meta["frames"]
        images = decoded(clip)
        assert len(images) == last - first + 1 and all(np.array_equal(a, b)
                                                       for a, b in zip(images, source[first:last + 1]))
        t, earliest = event["timestamp"], min(e["timestamp"] for e in meta["events"])
        start, end = first / FPS, last / FPS
        assert start <= max(0.0, t - pre) + 1e-6 and end >= min(t + post, end_s) - 1e-6, (t, first, last)
        assert start > earliest - pre - GOP / FPS, (earliest, first)  # the clip's first event: within one GOP
    assert report["metrics"]["clips_written"] == len({e["clip"] for e in crossed})


def decoded(path: Path) -> list:
    capture, images = cv2.VideoCapture(str(path)), []
    while True:
        ok, image = capture.read()
        if not ok:
            return images
        images.append(image)


RTSP_SERVER = COMMON[COMMON.index("def rtsp_url"):]
# The same wiring on an H.265 stream from GStreamer's RTSP server (the file's bitstream, paced in real time).
RUN_WIRED_RTSP = ('import json, threading, gi\ngi.require_version("Gst", "1.0")\nfrom gi.repository import Gst\n'
                  'Gst.init(None)\n' + RTSP_SERVER + RUN_WIRED.replace("SOURCE", 'rtsp_url(cfg["video"], "h265")'))


class RawSubscriber:
    """paho-mqtt on TOPIC/#, keeping (topic, payload bytes) of every message."""

    def __init__(self, port: int, topic: str) -> None:
        import paho.mqtt.client as mqtt

        self.messages: List[Tuple[str, bytes]] = []
        subscribed = threading.Event()
        self.client = (mqtt.Client(mqtt.CallbackAPIVersion.VERSION2) if hasattr(mqtt, "CallbackAPIVersion")
                       else mqtt.Client())
        self.client.on_connect = lambda client, *_: client.subscribe(topic + "/#", qos=1)
        self.client.on_subscribe = lambda *_: subscribed.set()
        self.client.on_message = lambda _c, _u, message: self.messages.append((message.topic, message.payload))
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()
        assert subscribed.wait(10)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def drawn_box(jpeg: Path, source: list, frames: range) -> Tuple[Tuple[int, int, int, int], int]:
    """The box recording/snapshots.py drew on a snapshot (2 px lines, its label above) and the source frame it
    was drawn on (of ``frames``, the one the JPEG differs least from): the columns where the drawing is longest
    are the box's sides, the longest run down the longest one its top and bottom (the label is shorter)."""
    image = cv2.imread(str(jpeg)).astype(np.int16)
    frame = min((f for f in frames if 0 <= f < len(source)), key=lambda f: np.abs(image - source[f]).mean())
    drawn = np.abs(image - source[frame]).max(axis=2) > 80
    columns = drawn.sum(axis=0)
    xs = np.flatnonzero(columns >= 0.6 * columns.max())
    rows = np.flatnonzero(drawn[:, columns.argmax()])
    runs = np.split(rows, np.flatnonzero(np.diff(rows) > 1) + 1)
    run = max(runs, key=len)
    return (int(xs.min()), int(run[0]), int(xs.max()), int(run[-1])), frame


def iou(a, b) -> float:
    w = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    h = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - w * h
    return w * h / union if union > 0 else 0.0


def test_h265_over_rtsp_with_zones_and_lines_every_event_has_its_clip_snapshot_and_mqtt_picture(tmp_path,
                                                                                                 demo_model):
    """The camera's wiring on an H.265 RTSP stream with a zone and a line and --mqtt: every event in the
    events file has a clip of the source's own bitstream (decoded frames equal the source's, bytes per second
    the source's) around it within one GOP, a snapshot whose box lies on a ground-truth object of the
    event's window, and that snapshot's JPEG on TOPIC/cam/snapshot."""
    from calibration.synthetic_tracks import ensure_tracking_set
    from runtimes.loader import load_detector
    from tests.test_event_sinks import Broker
    from tests.test_recording_device import system_json

    pre, post = 0.6, 0.6
    sequence = sorted(p for p in ensure_tracking_set().iterdir() if (p / "img1").is_dir())[0]
    count = len(list((sequence / "img1").glob("*.jpg")))
    video = tmp_path / "source.mp4"
    system_json(MAKE_VIDEO, {"frames": str(sequence / "img1"), "count": count, "fps": FPS, "gop": GOP,
                             "video": str(video), "codec": "h265"})
    zones = tmp_path / "zones.json"
    zones.write_text(json.dumps({"coordinates": "normalized",
                                 "zones": [{"name": "left", "polygon": [[0, 0], [0.45, 0], [0.45, 1], [0, 1]]}],
                                 "lines": [{"name": "middle", "points": [[0.5, 0], [0.5, 1]]}]}))
    _, onnx_path, _ = demo_model
    result = subprocess.run([sys.executable, str(ROOT / "apps/camera.py"), "--model", str(onnx_path), "--headless",
                             "--source", str(video), "--json", str(tmp_path / "frames.jsonl")], cwd=tmp_path,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    lines = [json.loads(line) for line in (tmp_path / "frames.jsonl").read_text().splitlines()]
    assert [r["frame"] for r in lines] == list(range(count))
    broker = Broker(tmp_path)
    subscriber = RawSubscriber(broker.port, "ssd")
    events_file, clips = tmp_path / "events.jsonl", tmp_path / "clips"
    argv = ["--model", str(onnx_path), "--source", "rtsp://127.0.0.1/cam", "--headless", "--zones", str(zones),
            "--events", str(events_file), "--mqtt", f"127.0.0.1:{broker.port}/ssd", "--max-frames", str(count - 2),
            "--record", str(clips), "--pre-seconds", str(pre), "--post-seconds", str(post)]
    try:
        report = system_json(RUN_WIRED_RTSP, {"argv": argv, "video": str(video), "class_names":
                                              list(load_detector(str(onnx_path)).class_names),
                                              "detections": {r["frame"]: r["detections"] for r in lines}},
                             timeout=300)
        deadline = time.monotonic() + 10
        while (len([t for t, _ in subscriber.messages if t == "ssd/cam/snapshot"])
               < report["metrics"]["snapshots_written"] and time.monotonic() < deadline):
            time.sleep(0.05)
    finally:
        subscriber.close()
        broker.process.kill()
    events = [e for e in map(json.loads, events_file.read_text().splitlines()) if e["type"] != "counts"]
    assert {"zone_enter", "line_crossed"} <= {e["type"] for e in events}, events
    source = decoded(video)
    ground_truth: Dict[int, list] = {}
    for row in (sequence / "gt/gt.txt").read_text().splitlines():
        frame, _, x, y, w, h = (float(v) for v in row.split(",")[:6])
        ground_truth.setdefault(int(frame) - 1, []).append((x, y, x + w, y + h))
    pictures = [payload for topic, payload in subscriber.messages if topic == "ssd/cam/snapshot"]
    for event in events:
        clip, snapshot = clips / event["clip"], clips / event["snapshot"]
        meta = json.loads(clip.with_suffix(".json").read_text())
        first, last = meta["frames"]
        images = decoded(clip)
        assert meta["codec"] == "video/x-h265" and len(images) == last - first + 1 == meta["units"]
        assert all(np.array_equal(a, b) for a, b in zip(images, source[first:last + 1]))  # not re-encoded
        seconds = (last - first + 1) / FPS
        assert 0.5 < (meta["bytes"] / seconds) / (video.stat().st_size / (count / FPS)) < 2.0  # its bitrate
        t, earliest = event["timestamp"], min(e["timestamp"] for e in meta["events"])
        assert meta["start_time_s"] <= max(0.0, t - pre) + 1e-3, (t, meta)  # covers its pre-roll
        assert meta["start_time_s"] >= earliest - pre - GOP / FPS - 0.1  # within one GOP of its pre-roll
        assert meta["end_time_s"] >= t + post - 1.5 / FPS or meta["cut_short"], (t, meta)
        box, frame = drawn_box(snapshot, source, range(int((t - pre) * FPS) - 1, int((t + post) * FPS) + 2))
        assert max(iou(box, g) for g in ground_truth[frame]) > 0.5, (event, box, frame)  # on an object
        assert snapshot.read_bytes() in pictures  # the same JPEG, published
    assert len(pictures) == report["metrics"]["snapshots_written"] >= len(events)
