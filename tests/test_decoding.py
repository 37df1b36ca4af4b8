"""Decoding plans (streams/decoding.py): the launch lines for every hardware family and for software, the
choice logged in one line; then the software lines run under the system Python (OpenCV 4.6 with GStreamer,
the device's stand-in) on generated 1920x1080 H.264 and H.265 files and through a local RTSP server, the
frames arriving at the scaled size. Skipped, with the reason, where the packages are missing."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from runtimes.errors import UserError
from streams.decoding import (
    FILE_APPSINK,
    LIVE_APPSINK,
    DecodeRequest,
    decode_attempts,
    decode_size,
    decoder_threads,
    plan_decoding,
)
from tests.system_python import SYSTEM_PYTHON, run_system_python

ROOT = Path(__file__).resolve().parents[1]
SOFTWARE = {"filesrc", "rtspsrc", "parsebin", "decodebin", "rtph264depay", "rtph265depay", "h264parse", "h265parse",
            "avdec_h264", "avdec_h265", "videoscale", "videoconvert", "appsink"}
JETSON = SOFTWARE | {"nvv4l2decoder", "nvvidconv"}
PACKAGES = ("python3-gi python3-opencv gir1.2-gst-plugins-base-1.0 gir1.2-gst-rtsp-server-1.0 "
            "gstreamer1.0-plugins-good gstreamer1.0-plugins-ugly gstreamer1.0-plugins-bad gstreamer1.0-libav")


def test_h265_over_rtsp_on_a_jetson_is_nvdec_scaled_by_nvvidconv_and_the_choice_is_one_line():
    request = DecodeRequest("rtsp://127.0.0.1:8554/cam", "h265", (320, 320))
    plan = plan_decoding(request, JETSON)
    assert plan.hardware and plan.decoder == "nvv4l2decoder" and plan.scaler == "nvvidconv"
    assert plan.launch == ('rtspsrc location="rtsp://127.0.0.1:8554/cam" latency=0 drop-on-latency=true ! '
                           "rtph265depay ! h265parse ! nvv4l2decoder ! "
                           "nvvidconv ! video/x-raw,format=BGRx,width=320,height=320 ! "
                           f"videoconvert ! video/x-raw,format=BGR ! {LIVE_APPSINK}")
    assert plan.reason == ("H.265 rtsp://127.0.0.1:8554/cam: nvv4l2decoder (Jetson NVDEC), scaled to 320x320 by "
                           "nvvidconv before Python")
    attempts = decode_attempts(request, JETSON)  # the element may exist while the device cannot take a stream
    assert [a.decoder for a in attempts] == ["nvv4l2decoder", "avdec_h265"] and not attempts[1].hardware


def test_an_h264_file_on_a_jetson_and_the_full_frame_when_an_output_asks_for_it():
    plan = plan_decoding(DecodeRequest("/data/cam 1.mp4", "h264", None), JETSON)
    assert plan.launch == ('filesrc location="/data/cam 1.mp4" ! parsebin ! h264parse ! nvv4l2decoder ! '
                           f"nvvidconv ! video/x-raw,format=BGRx ! videoconvert ! video/x-raw,format=BGR ! "
                           f"{FILE_APPSINK}")
    assert plan.reason.endswith("full size (an output asks for it)") and plan.scaler == "nvvidconv"
    quoted = plan_decoding(DecodeRequest('/data/a "b"\\c.mp4', "h264"), JETSON).launch
    assert 'location="/data/a \\"b\\"\\\\c.mp4"' in quoted


@pytest.mark.parametrize("extra, decoder, scaler", [
    ({"vah264dec", "vapostproc", "vaapih264dec", "vaapipostproc"}, "vah264dec", "vapostproc"),
    ({"vaapih264dec", "vaapipostproc"}, "vaapih264dec", "vaapipostproc"),
    ({"qsvh264dec", "qsvvpp"}, "qsvh264dec", "qsvvpp"),
    ({"msdkh264dec", "msdkvpp"}, "msdkh264dec", "msdkvpp"),
    ({"vah264dec"}, "avdec_h264", "videoscale"),  # a decoder without its scaler is not taken
])
def test_intel_hardware_decodes_and_scales_in_its_own_memory(extra, decoder, scaler):
    plan = plan_decoding(DecodeRequest("/v.mkv", "h264", (640, 360)), SOFTWARE | extra)
    assert (plan.decoder, plan.scaler, plan.hardware) == (decoder, scaler, decoder != "avdec_h264")
    assert f"h264parse ! {decoder} " in plan.launch and f"! {scaler} " in plan.launch
    assert "width=640,height=360" in plan.launch
    assert f"{decoder} (" in plan.reason and f"by {scaler} before Python" in plan.reason


def test_software_decoding_bounds_its_threads_and_says_why_no_hardware_was_used():
    plan = plan_decoding(DecodeRequest("rtsp://cam/1", "h264", (300, 300), threads=3), SOFTWARE)
    assert "avdec_h264 max-threads=3 ! videoscale add-borders=false ! video/x-raw,width=300,height=300 ! " \
           "videoconvert ! video/x-raw,format=BGR" in plan.launch
    assert plan.reason.startswith("H.264 rtsp://cam/1: avdec_h264 (software, 3 threads; no hardware H.264 "
                                  "decoder here (nvv4l2decoder, vah264dec, vaapih264dec, qsvh264dec, msdkh264dec))")
    both = plan_decoding(DecodeRequest("/v.mp4", "h265", (300, 300)), SOFTWARE | {"videoconvertscale"})
    assert "avdec_h265 max-threads=2 ! videoscale add-borders=false ! video/x-raw,width=300,height=300 ! " \
           "videoconvert ! video/x-raw,format=BGR ! appsink" in both.launch  # scaled in YUV, converted small
    one_pass = plan_decoding(DecodeRequest("/v.mp4", "h265", (300, 300)),
                             SOFTWARE - {"videoscale"} | {"videoconvertscale"})
    assert "avdec_h265 max-threads=2 ! videoconvertscale add-borders=false ! " \
           "video/x-raw,format=BGR,width=300,height=300 ! appsink" in one_pass.launch
    openh264 = plan_decoding(DecodeRequest("/v.mp4", "h264"), SOFTWARE - {"avdec_h264"} | {"openh264dec"})
    assert "openh264dec ! videoconvert" in openh264.launch and "its own threads" in openh264.reason
    unknown = plan_decoding(DecodeRequest("/v.avi", "", (300, 300)), JETSON)
    assert unknown.decoder == "decodebin" and 'filesrc location="/v.avi" ! decodebin ! videoscale' in unknown.launch
    assert unknown.reason.startswith("codec unknown /v.avi: decodebin")
    blind = plan_decoding(DecodeRequest("/v.mp4", "h265"), None)  # nothing to ask: software, and it says so
    assert blind.decoder == "avdec_h265" and "GStreamer's elements not known here" in blind.reason
    assert len(decode_attempts(DecodeRequest("/v.mp4", "h265"), SOFTWARE)) == 1


def test_a_software_decoder_gets_the_cores_its_stream_has_to_itself_one_or_two():
    # One stream on 2 cores decodes on both; from a stream a core on, each decoder has one thread (a second only
    # costs CPU then), and never more than two however many cores there are.
    assert [decoder_threads(streams, cores=2) for streams in (0, 1, 2, 3, 16)] == [2, 2, 1, 1, 1]
    assert [decoder_threads(streams, cores=8) for streams in (1, 4, 5, 8, 9)] == [2, 2, 1, 1, 1]
    plan = plan_decoding(DecodeRequest("/v.mp4", "h265", (300, 300), decoder_threads(4, cores=2)), SOFTWARE)
    assert "avdec_h265 max-threads=1 ! " in plan.launch and "avdec_h265 (software, 1 thread;" in plan.reason


def test_bad_requests_are_one_line_and_the_size_serves_the_model_and_the_outputs():
    for make, words in ((lambda: DecodeRequest("/v.mp4", "vp9"), "codec 'vp9'"),
                        (lambda: DecodeRequest("/v.mp4", "h264", (8, 8)), "too small"),
                        (lambda: DecodeRequest("/v.mp4", "h264", threads=0), "0 decoder threads")):
        with pytest.raises(UserError, match=words) as error:
            make()
        assert "\n" not in str(error.value) and "give" in str(error.value)
    assert decode_size((320, 320)) == (320, 320)
    assert decode_size((320, 320), [(640, 360)]) == (640, 360)
    assert decode_size((320, 320), [(640, 240), None]) is None  # an output wants the full frame


# -- the software lines under the system Python -------------------------------------------------------------------

MAKE_VIDEOS = """
import json, sys
import gi
gi.require_version("Gst", "1.0")
from gi.repository import Gst
Gst.init(None)
folder, frames = sys.argv[1], int(sys.argv[2])
encoders = {"h264": "x264enc speed-preset=ultrafast key-int-max=10 ! h264parse",
            "h265": "x265enc speed-preset=ultrafast key-int-max=10 ! h265parse"}
made = {}
for codec, chain in encoders.items():
    if Gst.ElementFactory.find(chain.split()[0]) is None:
        continue
    path = f"{folder}/ball-{codec}.mp4"
    pipe = Gst.parse_launch(f"videotestsrc num-buffers={frames} pattern=ball ! "
                            f"video/x-raw,width=1920,height=1080,framerate=30/1 ! {chain} ! mp4mux ! "
                            f"filesink location={path}")
    pipe.set_state(Gst.State.PLAYING)
    message = pipe.get_bus().timed_pop_filtered(120 * Gst.SECOND, Gst.MessageType.EOS | Gst.MessageType.ERROR)
    pipe.set_state(Gst.State.NULL)
    if message is not None and message.type == Gst.MessageType.EOS:
        made[codec] = path
print(json.dumps(made))
"""

READ_FILES = """
import json, sys
sys.path.insert(0, ROOT)
import cv2
from streams.decoding import DecodeRequest, available_elements, plan_decoding, probe_source
elements = available_elements()
out = {}
for path in sys.argv[1:]:
    probe = probe_source(path)
    for size in ((320, 240), (300, 300), None):
        plan = plan_decoding(DecodeRequest(path, probe.codec, size), elements)
        capture = cv2.VideoCapture(plan.launch, cv2.CAP_GSTREAMER)
        shapes, distinct = [], set()
        while capture.isOpened() and len(shapes) < (1000 if size else 3):
            ok, frame = capture.read()
            if not ok:
                break
            shapes.append(frame.shape)
            distinct.add(frame.tobytes())
        capture.release()
        out[f"{path} {size}"] = {"codec": probe.codec, "size": probe.size, "decoder": plan.decoder,
                                 "reason": plan.reason, "count": len(shapes),
                                 "shapes": sorted(map(list, set(shapes))), "distinct": len(distinct)}
print(json.dumps(out))
"""


def _videos(tmp_path: Path, frames: int) -> dict:
    probe = run_system_python("import gi, cv2; gi.require_version('Gst', '1.0'); "
                              "gi.require_version('GstPbutils', '1.0'); from gi.repository import Gst, GstPbutils; "
                              "print('GStreamer: YES' in cv2.getBuildInformation().replace('  ', ''))", PACKAGES)
    if probe.returncode != 0:
        pytest.skip(f"{SYSTEM_PYTHON} cannot use GStreamer: {probe.stderr.strip()[-300:]}")
    result = subprocess.run([SYSTEM_PYTHON, "-c", MAKE_VIDEOS, str(tmp_path), str(frames)], capture_output=True,
                            text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    made = json.loads(result.stdout.strip().splitlines()[-1])
    if "h264" not in made:
        pytest.skip(f"{SYSTEM_PYTHON}'s GStreamer has no x264enc to make the test video (apt install {PACKAGES})")
    return made


def test_h264_and_h265_files_decode_in_software_to_the_asked_size(tmp_path):
    made = _videos(tmp_path, 20)
    result = subprocess.run([SYSTEM_PYTHON, "-c", f"ROOT = {str(ROOT)!r}\n" + READ_FILES, *made.values()],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    got = json.loads(result.stdout.strip().splitlines()[-1])
    for codec, path in made.items():
        for size, shape in (((320, 240), [240, 320, 3]), ((300, 300), [300, 300, 3]), (None, [1080, 1920, 3])):
            seen = got[f"{path} {size}"]
            assert seen["codec"] == codec and seen["size"] == [1920, 1080], seen
            assert seen["decoder"] == f"avdec_{codec}" and f"avdec_{codec} (software, 2 threads" in seen["reason"]
            assert seen["shapes"] == [shape], seen  # every frame at the asked size, scaled before Python
            assert seen["count"] == (20 if size else 3), seen  # a file loses no frame
            assert seen["distinct"] >= (10 if size else 2), seen  # the ball moves: real frames
    if "h265" not in made:
        pytest.skip("H.264 checked; no x265enc here for the H.265 file (apt install gstreamer1.0-plugins-bad)")


RTSP = """
import json, os, sys, threading, time
sys.path.insert(0, ROOT)
# OpenCV 4.6 takes no timeout for GStreamer: a stalled read would hold this process; end it with what it has
out = {}
threading.Timer(120, lambda: (print(json.dumps(out), flush=True), os._exit(0))).start()
import cv2
import gi
gi.require_version("Gst", "1.0"); gi.require_version("GstRtspServer", "1.0")
from gi.repository import GLib, Gst, GstRtspServer
from streams.decoding import DecodeRequest, available_elements, plan_decoding, probe_source
Gst.init(None)
server = GstRtspServer.RTSPServer.new()
server.set_address("127.0.0.1"); server.set_service("0")
for codec, path in json.loads(sys.argv[1]).items():
    factory = GstRtspServer.RTSPMediaFactory.new()  # not shared: each client gets the file from its start
    factory.set_launch(f"( filesrc location={path} ! qtdemux ! {codec}parse ! rtp{codec}pay name=pay0 pt=96 )")
    server.get_mount_points().add_factory(f"/{codec}", factory)
server.attach(None)
threading.Thread(target=GLib.MainLoop().run, daemon=True).start()
port = server.get_bound_port()
elements = available_elements()
for codec in json.loads(sys.argv[1]):
    url = f"rtsp://127.0.0.1:{port}/{codec}"
    probe = probe_source(url, timeout_s=20)
    plan = plan_decoding(DecodeRequest(url, probe.codec, (320, 180)), elements)
    capture = cv2.VideoCapture(plan.launch, cv2.CAP_GSTREAMER)
    shapes, started = [], time.monotonic()
    while capture.isOpened() and len(shapes) < 15:  # of the file's 60
        ok, frame = capture.read()
        if not ok:
            break
        shapes.append(list(frame.shape))
    capture.release()
    out[codec] = {"probed": probe.codec, "note": probe.note, "reason": plan.reason, "launch": plan.launch,
                  "count": len(shapes), "shapes": sorted(map(list, set(map(tuple, shapes))))}
print(json.dumps(out), flush=True)
os._exit(0)
"""


def test_an_rtsp_stream_is_probed_and_decoded_to_the_asked_size(tmp_path):
    made = _videos(tmp_path, 60)
    result = subprocess.run([SYSTEM_PYTHON, "-c", f"ROOT = {str(ROOT)!r}\n" + RTSP, json.dumps(made)],
                            capture_output=True, text=True, timeout=300)
    if "No module named" in result.stderr or "Namespace GstRtspServer not available" in result.stderr:
        pytest.skip(f"{SYSTEM_PYTHON} has no GStreamer RTSP server (apt install {PACKAGES})")
    assert result.returncode == 0, result.stderr[-2000:]
    got = json.loads(result.stdout.strip().splitlines()[-1])
    assert set(got) == set(made), (got, result.stderr[-2000:])
    for codec in made:
        seen = got[codec]
        assert seen["probed"] == codec, seen
        assert f"rtp{codec}depay ! {codec}parse ! avdec_{codec} max-threads=2" in seen["launch"], seen
        assert seen["reason"].startswith(f"H.26{codec[-1]} rtsp://127.0.0.1:"), seen
        assert seen["shapes"] == [[180, 320, 3]] and seen["count"] == 15, seen
