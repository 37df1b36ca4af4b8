"""The RTSP output (webview/rtsp.py): GStreamer's RTSP server under Debian's system Python (PyGObject, the
device's stand-in), a publisher process feeding frames to LiveViews made from --rtsp-out flags, a GStreamer
client process reading them back from rtsp://127.0.0.1:PORT/PATH. Skipped, with the reason, where the packages
are missing (the skip says which)."""

from __future__ import annotations

import json
import subprocess
import warnings
from pathlib import Path

import pytest

from runtimes.errors import UserError
from tests.system_python import SYSTEM_PYTHON, run_system_python
from webview.rtsp import NVENC, encoder_chain, launch_line, mount_paths

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("python3-gi gir1.2-gst-rtsp-server-1.0 gstreamer1.0-plugins-ugly gstreamer1.0-plugins-good "
            "gstreamer1.0-libav")

PROBE = """
import json
try:
    import gi
    gi.require_version("Gst", "1.0"); gi.require_version("GstRtspServer", "1.0")
    from gi.repository import Gst, GstRtspServer
except (ImportError, ValueError) as exc:
    print(json.dumps({"missing": "PyGObject with GstRtspServer (" + str(exc) + ")"})); raise SystemExit
import numpy
Gst.init(None)
need = ["appsrc", "videoconvert", "x264enc", "rtph264pay", "rtspsrc", "rtph264depay", "h264parse", "appsink"]
missing = [e for e in need if Gst.ElementFactory.find(e) is None]
if Gst.ElementFactory.find("avdec_h264") is None and Gst.ElementFactory.find("openh264dec") is None:
    missing.append("an H.264 decoder (avdec_h264 or openh264dec)")
print(json.dumps({"missing": ", ".join(missing)}))
"""

PUBLISHER = """
import argparse, json, socket, sys, threading, time
sys.path.insert(0, ROOT)
import numpy as np
from runtimes.errors import UserError
from webview.cli import add_arguments, from_args

def live_view(flag, names):  # as the camera app makes it: its flags, then from_args
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    return from_args(parser.parse_args(["--rtsp-out", flag]), names, log=lambda _: None)

busy = socket.socket(); busy.bind(("127.0.0.1", 0)); busy.listen()
try:
    live_view(f"{busy.getsockname()[1]}/live", ["x"])
    in_use = None
except UserError as exc:
    in_use = str(exc)
several = live_view("127.0.0.1:0/cams", ["door", "yard"])
single = live_view("0/live", ["gate"])
print(json.dumps({"urls": {**several.rtsp.urls(), **single.rtsp.urls()}, "in_use": in_use,
                  "encoder": several.rtsp.encoder_name}), flush=True)
SIZES = {"door": (320, 240), "yard": (256, 192), "gate": (352, 288)}
COLOURS = {"door": (40, 40, 220), "yard": (220, 60, 40), "gate": (40, 200, 40)}  # BGR: red, blue, green
stop = threading.Event()
threading.Thread(target=lambda: (sys.stdin.read(), stop.set()), daemon=True).start()
i = 0
started = time.monotonic()
while not stop.is_set() and time.monotonic() - started < 60:
    for name, (w, h) in SIZES.items():
        frame = np.empty((h, w, 3), np.uint8); frame[:] = COLOURS[name]
        x = (i * 6) % (w - 40)
        frame[h // 3:h // 3 + 40, x:x + 40] = 255  # a white square moving right
        (several if name != "gate" else single).on_frame(name, frame, {"frame": i})
    i += 1
    time.sleep(1 / 30)
stats = {**several.rtsp.stats(), **single.rtsp.stats()}
t0 = time.monotonic()
several.close(); single.close()
print(json.dumps({"close_s": time.monotonic() - t0, "stats": stats}), flush=True)
"""

CLIENT = """
import json, sys, time
import gi
gi.require_version("Gst", "1.0")
from gi.repository import Gst
import numpy as np
Gst.init(None)
decoder = "avdec_h264" if Gst.ElementFactory.find("avdec_h264") else "openh264dec"

def read(url):  # up to 15 frames; gives up after 10 s without one or on the pipeline's first error
    pipe = Gst.parse_launch(f"rtspsrc location={url} latency=0 protocols=tcp ! rtph264depay ! h264parse ! "
                            f"{decoder} ! videoconvert ! video/x-raw,format=BGR ! "
                            "appsink name=sink sync=false max-buffers=8 drop=true")
    sink, bus = pipe.get_by_name("sink"), pipe.get_bus()
    pipe.set_state(Gst.State.PLAYING)
    frames, sizes, errors, last = [], set(), [], time.monotonic()
    while len(frames) < 15 and time.monotonic() - last < 10 and not errors:
        message = bus.pop_filtered(Gst.MessageType.ERROR)
        if message is not None:
            error, debug = message.parse_error()
            errors.append(f"{error.message} ({(debug or '')[-200:]})")
        sample = sink.emit("try-pull-sample", Gst.SECOND // 4)
        if sample is None:
            continue
        last = time.monotonic()
        caps = sample.get_caps().get_structure(0)
        w, h = caps.get_value("width"), caps.get_value("height")
        buf = sample.get_buffer()
        ok, info = buf.map(Gst.MapFlags.READ)
        frame = np.frombuffer(info.data, np.uint8, count=h * w * 3).reshape(h, w, 3).copy()
        buf.unmap(info)
        frames.append(frame)
        sizes.add((w, h))
    pipe.set_state(Gst.State.NULL)
    if not errors and len(frames) < 15:
        errors.append(f"{len(frames)} frames, then none for 10 s")
    return frames, sizes, errors

out = {}
for url in sys.argv[1:]:
    failed = []  # a viewer reconnects once, as players do; the first attempt's failure is reported
    for attempt in range(2):
        frames, sizes, errors = read(url)
        if len(frames) == 15:
            break
        failed.extend(errors)
    last = frames[-1] if frames else np.zeros((1, 1, 3))
    out[url] = {"count": len(frames), "sizes": sorted(sizes), "mean_bgr": last.reshape(-1, 3).mean(0).tolist(),
                "distinct": len({f.tobytes() for f in frames}), "failed_attempts": failed}
print(json.dumps(out))
"""


def test_the_encoder_is_the_jetson_hardware_one_where_it_exists_else_x264():
    jetson = {"nvv4l2h264enc", "nvvidconv", "x264enc"}
    assert "nvv4l2h264enc" in encoder_chain(jetson.__contains__) and encoder_chain(jetson.__contains__).startswith(
        NVENC.split(" ! ")[0])
    chain = encoder_chain({"x264enc"}.__contains__, fps=15)
    assert "x264enc tune=zerolatency" in chain and "key-int-max=15" in chain and "nvv4l2h264enc" not in chain
    with pytest.raises(UserError, match="gstreamer1.0-plugins-ugly"):
        encoder_chain(set().__contains__)
    line = launch_line(640, 480, 30, chain)
    assert "appsrc name=src is-live=true" in line and "width=640,height=480" in line and "name=pay0" in line
    assert "queue leaky=downstream max-size-buffers=2" in line  # frames the encoder cannot take are dropped
    assert mount_paths(["cam"], "live") == {"cam": "/live"}
    assert mount_paths(["a", "b c"], "/cams/") == {"a": "/cams/a", "b c": "/cams/b%20c"}


def _system_gstreamer() -> None:
    probe = run_system_python(PROBE, PACKAGES, timeout=60)
    if probe.returncode != 0:
        pytest.skip(f"{SYSTEM_PYTHON} cannot probe GStreamer: {probe.stderr.strip()[-300:]}")
    missing = json.loads(probe.stdout.strip().splitlines()[-1])["missing"]
    if missing:
        pytest.skip(f"{SYSTEM_PYTHON} lacks {missing} (apt install {PACKAGES})")


def test_published_streams_are_read_back_over_rtsp_with_their_sizes_one_mount_each():
    _system_gstreamer()
    publisher = subprocess.Popen([SYSTEM_PYTHON, "-c", f"ROOT = {str(ROOT)!r}\n" + PUBLISHER], cwd=ROOT,
                                 stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert publisher.stdout is not None
        started = json.loads(publisher.stdout.readline())
        urls = started["urls"]
        client = subprocess.run([SYSTEM_PYTHON, "-c", CLIENT, *urls.values()], capture_output=True, text=True,
                                timeout=120)
        assert client.returncode == 0, client.stderr[-2000:]
        got = json.loads(client.stdout.strip().splitlines()[-1])
        out, err = publisher.communicate("", timeout=30)
    finally:
        if publisher.poll() is None:
            publisher.kill()
            publisher.communicate()
    assert publisher.returncode == 0, err[-2000:]
    port_several, port_single = (int(urls[n].rsplit(":", 1)[1].split("/")[0]) for n in ("door", "gate"))
    assert urls == {"door": f"rtsp://127.0.0.1:{port_several}/cams/door",
                    "yard": f"rtsp://127.0.0.1:{port_several}/cams/yard",
                    "gate": f"rtsp://127.0.0.1:{port_single}/live"}
    assert started["encoder"] == "x264enc"
    assert "already in use" in started["in_use"] and "\n" not in started["in_use"]
    expected = {"door": ((320, 240), 2), "yard": ((256, 192), 0), "gate": ((352, 288), 1)}  # size, dominant channel
    for name, ((w, h), channel) in expected.items():
        result = got[urls[name]]
        assert result["count"] == 15 and result["sizes"] == [[w, h]], (name, result, err[-1500:])
        if result["failed_attempts"]:
            warnings.warn(f"rtsp {name}: the first attempt failed, the reconnect read it: "
                          f"{result['failed_attempts']}", stacklevel=1)
        assert result["distinct"] >= 5  # the square moves: live frames, not one repeated
        assert max(range(3), key=lambda c: result["mean_bgr"][c]) == channel  # this stream's colour, BGR kept
    ended = json.loads(out.strip().splitlines()[-1])
    assert ended["close_s"] < 3.0
    assert all(s["pushed"] >= 15 for s in ended["stats"].values())
