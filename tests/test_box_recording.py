"""apps/camera.py --config with a ``recording`` section and a stream's ``interval`` (#27 x #26 x #28): the box
records what the flags record (events carry their clip and snapshot, MQTT gets each snapshot's JPEG) and gates
frames per stream as --interval does.

The app runs in the virtual environment (ONNX Runtime, the demo model) with Debian's GStreamer bindings (gi,
from the system's dist-packages, appended so they shadow nothing) for the recording's tap, as a JetPack box
has them."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.test_camera_recording import FPS, GOP, MAKE_VIDEO, RawSubscriber

ROOT = Path(__file__).resolve().parents[1]
FRAMES = 44  # of the sequence's 80 (even: one in two is half); an object crosses the middle at frame 24
MIDDLE = {"coordinates": "normalized", "lines": [{"name": "middle", "points": [[0.5, 0], [0.5, 1]]}]}
SYSTEM_PACKAGES = "/usr/lib/python3/dist-packages"  # python3-gi
# The app as `python apps/camera.py ARGS`, the system's packages after the environment's own.
RUN_APP = ("import runpy, sys; sys.path.append({gi!r}); sys.argv = ['camera.py'] + sys.argv[1:]; "
           "runpy.run_path({app!r}, run_name='__main__')").format(gi=SYSTEM_PACKAGES, app=str(ROOT / "apps/camera.py"))


@pytest.fixture(scope="module")
def h264_video(tmp_path_factory) -> Path:
    """A sequence of the tracking set (objects crossing the middle) as an H.264 MP4 at its rate."""
    from calibration.synthetic_tracks import ensure_tracking_set
    from tests.test_recording_device import system_json

    sequence = sorted(p for p in ensure_tracking_set().iterdir() if (p / "img1").is_dir())[0]
    video = tmp_path_factory.mktemp("video") / "source.mp4"
    system_json(MAKE_VIDEO, {"frames": str(sequence / "img1"), "count": len(list((sequence / "img1").glob("*.jpg"))),
                             "fps": FPS, "gop": GOP, "video": str(video)})
    return video


def test_a_recorded_stream_and_a_gated_one_from_the_configuration(tmp_path, demo_model, h264_video):
    from tests.test_event_sinks import Broker

    _, onnx_path, _ = demo_model
    broker = Broker(tmp_path)
    config = {
        "models": {"demo": {"path": str(onnx_path)}},
        # (every frame, not realtime: the tap decodes a file as fast as it is read, so --realtime's pacing
        # would drop most of its frames as stale)
        "streams": [{"name": "cam", "source": str(h264_video), "zones": MIDDLE, "max_frames": FRAMES},
                    {"name": "half", "source": str(h264_video), "interval": 2, "record": False,
                     "max_frames": FRAMES}],
        "recording": {"dir": "clips", "pre_seconds": 0.5, "post_seconds": 0.5},
        "sinks": {"events_file": "events.jsonl", "mqtt": {"broker": f"127.0.0.1:{broker.port}/box"}},
        "outputs": {"headless": True, "json": "frames.jsonl"},
    }
    (tmp_path / "box.json").write_text(json.dumps(config))
    subscriber = RawSubscriber(broker.port, "box")
    try:
        result = subprocess.run([sys.executable, "-c", RUN_APP, "--config", str(tmp_path / "box.json")],
                                cwd=tmp_path, capture_output=True, text=True, timeout=120)
        assert result.returncode == 0, result.stderr[-3000:]
        if "streams are not recorded" in result.stdout:
            pytest.skip(f"no GStreamer for Python in {SYSTEM_PACKAGES} (apt install python3-gi gir1.2-gstreamer-1.0)")
        events = [e for e in map(json.loads, (tmp_path / "events.jsonl").read_text().splitlines())
                  if e["type"] != "counts"]
        deadline = time.monotonic() + 10  # (the sink publishes from its own thread)
        while len([t for t, _ in subscriber.messages if t == "box/cam/snapshot"]) < len(events) \
                and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        subscriber.close()
        broker.process.kill()
    assert "recording: clips of cam to" in result.stdout, result.stdout[-2000:]
    assert events and {e["stream"] for e in events} == {"cam"}, events
    pictures = [payload for topic, payload in subscriber.messages if topic == "box/cam/snapshot"]
    for event in events:
        clip, snapshot = tmp_path / "clips" / event["clip"], tmp_path / "clips" / event["snapshot"]
        assert clip.is_file() and clip.stat().st_size > 0 and snapshot.is_file(), event
        assert snapshot.read_bytes() in pictures  # the same JPEG, published
    assert not (tmp_path / "clips" / "half").exists()  # record: false

    lines = [json.loads(line) for line in (tmp_path / "frames.jsonl").read_text().splitlines()]
    half = [r["detected"] for r in lines if r["stream"] == "half"]
    cam = [r["detected"] for r in lines if r["stream"] == "cam"]
    assert len(half) == len(cam) == FRAMES  # every frame of both
    assert all(a != b for a, b in zip(half, half[1:])) and half.count(False) == len(half) // 2, half  # one in two
    assert all(cam)


# The box in one process (the venv's, with the system's GStreamer bindings after its own packages): streams
# added through its control while it runs.
ADD_WHILE_RUNNING = """
import json, sys, threading
sys.path.append(GI)
sys.path.insert(0, ROOT)
from apps.camera import build_parser
from box.control import ControlError
from box.control_impl import BoxController
from box.runner import BoxRunner
from boxconfig.defaults import flag_defaults
from boxconfig.loading import load_config
cfg = json.loads(sys.argv[1])
defaults = flag_defaults(build_parser())
runner = BoxRunner(load_config(cfg["config"], defaults), print)
stop = threading.Event()
runner.open(stop)
control, out = BoxController(runner, defaults), {}
worker = threading.Thread(target=lambda: out.update(summary=runner.run(stop)))
worker.start()
try:
    control.add_stream({"name": "gated", "source": cfg["video"], "interval": 2})
except ControlError as exc:
    out["refused"] = [exc.status, exc.message]
out["added"] = control.add_stream({"name": "late", "source": cfg["video"], "zones": cfg["zones"],
                                   "max_frames": cfg["frames"]})["name"]
worker.join(120)
print(json.dumps(out))
"""


def test_a_stream_added_while_the_box_runs_is_recorded(tmp_path, demo_model, h264_video):
    _, onnx_path, _ = demo_model
    config = {"models": {"demo": {"path": str(onnx_path)}},
              # (paced by the file's rate, unrecorded: the box runs on while streams are added)
              "streams": [{"name": "first", "source": str(h264_video), "realtime": True, "record": False,
                           "max_frames": 40}],
              "recording": {"dir": "clips", "pre_seconds": 0.5, "post_seconds": 0.5},
              "sinks": {"events_file": "events.jsonl"}, "outputs": {"headless": True}}
    (tmp_path / "box.json").write_text(json.dumps(config))
    script = ADD_WHILE_RUNNING.replace("GI", repr(SYSTEM_PACKAGES)).replace("ROOT", repr(str(ROOT)))
    result = subprocess.run([sys.executable, "-c", script, json.dumps({
        "config": str(tmp_path / "box.json"), "video": str(h264_video), "zones": MIDDLE, "frames": FRAMES})],
        cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-3000:]
    if "streams are not recorded" in result.stdout:
        pytest.skip(f"no GStreamer for Python in {SYSTEM_PACKAGES} (apt install python3-gi gir1.2-gstreamer-1.0)")
    out = json.loads(result.stdout.strip().splitlines()[-1])
    status, message = out["refused"]  # its model's scheduler was started without gating: one line, no change
    assert status == 400 and message.startswith("stream gated: interval or motion needs a restart of the box")
    assert out["added"] == "late" and "gated" not in out["summary"]["models"]["demo"]["streams"]
    events = [e for e in map(json.loads, (tmp_path / "events.jsonl").read_text().splitlines())
              if e["type"] != "counts"]
    assert events and {e["stream"] for e in events} == {"late"}, events
    for event in events:
        assert (tmp_path / "clips" / event["clip"]).is_file() and (tmp_path / "clips" / event["snapshot"]).is_file()
