"""recording/ on real codecs under Debian's system Python (the device stand-in: GStreamer through PyGObject,
OpenCV with GStreamer): generated H.264 and H.265 videos as files and through GStreamer's RTSP server on
127.0.0.1, events fired from the decoded frames, and every clip checked against its source: it exists,
OpenCV decodes it, its frames are the source's frames bit for bit (so nothing was re-encoded) over a span
covering [event - pre, event + post] and starting within one GOP of it, its codec is the source's (GStreamer's
discoverer) and its bytes per frame are the source's (qtdemux's samples). Also: a small full file system
(tmpfs, mounted here as root) pauses recording and it resumes when space is freed; kill -9 mid-clip leaves
no file under a final name and the next run removes the temporary. Skipped, with the reason, where the
system Python, a GStreamer element or mounting is missing."""

from __future__ import annotations

import json
import os
import signal
import subprocess
from pathlib import Path
from typing import List

import pytest

from tests.system_python import SYSTEM_PYTHON

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("python3-gi python3-opencv gir1.2-gst-rtsp-server-1.0 gstreamer1.0-plugins-good "
            "gstreamer1.0-plugins-bad gstreamer1.0-plugins-ugly gstreamer1.0-libav")
FPS, GOP = 30, 30  # one keyframe a second

COMMON = """
import json, sys, threading, time
sys.path.insert(0, ROOT)
import gi
gi.require_version("Gst", "1.0"); gi.require_version("GstPbutils", "1.0")
from gi.repository import Gst, GstPbutils
Gst.init(None)
ENCODERS = {"h264": "x264enc speed-preset=ultrafast key-int-max={gop} bitrate={kbps} ! h264parse",
            "h265": ("x265enc speed-preset=ultrafast key-int-max={gop} bitrate={kbps} option-string=open-gop=0 ! "
                     "h265parse")}
# closed GOPs (IDR keyframes), as cameras send: x265's default open GOPs start with pictures that need the GOP
# before, which a clip cut at the keyframe cannot show (docs/recording.md: what a clip of an open-GOP source lacks)

def need(*elements):
    missing = [e for e in elements if Gst.ElementFactory.find(e) is None]
    if missing:
        print(json.dumps({"skip": "GStreamer elements missing: " + ", ".join(missing)})); raise SystemExit

def run(description):
    pipeline = Gst.parse_launch(description)
    pipeline.set_state(Gst.State.PLAYING)
    message = pipeline.get_bus().timed_pop_filtered(120 * Gst.SECOND, Gst.MessageType.EOS | Gst.MessageType.ERROR)
    pipeline.set_state(Gst.State.NULL)
    assert message is not None and message.type == Gst.MessageType.EOS, message and message.parse_error()

def make_video(path, codec, frames, kbps=400):
    run(f"videotestsrc pattern=ball num-buffers={frames} ! video/x-raw,format=I420,width=320,height=240,"
        f"framerate=FPS/1 ! " + ENCODERS[codec].format(gop=GOP, kbps=kbps) + f" ! mp4mux ! filesink location={path}")

def rtsp_url(video, codec):  # GStreamer's RTSP server on 127.0.0.1: the file's own bitstream, not re-encoded,
    # paced in real time, from its start for each client
    try:
        gi.require_version("GstRtspServer", "1.0")
        from gi.repository import GLib, GstRtspServer
    except (ImportError, ValueError) as exc:
        print(json.dumps({"skip": "GstRtspServer: " + str(exc)})); raise SystemExit
    server = GstRtspServer.RTSPServer.new(); server.set_address("127.0.0.1"); server.set_service("0")
    factory = GstRtspServer.RTSPMediaFactory.new()
    factory.set_launch(f"( filesrc location={video} ! qtdemux ! {codec}parse ! rtp{codec}pay name=pay0 pt=96 )")
    server.get_mount_points().add_factory("/cam", factory)
    context = GLib.MainContext.new(); server.attach(context)
    threading.Thread(target=GLib.MainLoop.new(context, False).run, daemon=True).start()
    rtsp_url.server = server  # kept alive
    return f"rtsp://127.0.0.1:{server.get_bound_port()}/cam"
""".replace("FPS", str(FPS)).replace("GOP", str(GOP))

RECORD = COMMON + """
cfg = json.loads(sys.argv[1])
need("x264enc" if cfg["codec"] == "h264" else "x265enc", cfg["codec"] + "parse", "mp4mux", "qtdemux", "appsrc",
     "avdec_" + cfg["codec"], "rtspsrc", "rtp" + cfg["codec"] + "pay")
make_video(cfg["video"], cfg["codec"], cfg["frames"])
source = rtsp_url(cfg["video"], cfg["codec"]) if cfg["rtsp"] else cfg["video"]

from recording.options import parse_record_options
from recording.recorder import Recording
from recording.snapshots import TrackBox
from recording.tap import EncodedTap
options = parse_record_options(cfg["folder"], ["all"], cfg["pre"], cfg["post"], None, None, ["ball"])
recording = Recording(options, ["cam"], log=lambda m: print(m, file=sys.stderr))
stream = recording.stream("cam")
tap = EncodedTap(source, on_unit=stream.on_unit)
pending, events = sorted(cfg["events"]), []
while True:
    frame = tap.read(10.0)
    if frame is None:
        break
    score = 1.0 - abs(frame.index - cfg["best_frame"]) / 1000  # the track scores best at best_frame
    stream.on_tracks(frame.time_s, frame.image, [TrackBox(1, "ball", (100.0, 80.0, 180.0, 160.0), score)])
    while pending and frame.time_s >= pending[0]:
        pending.pop(0)
        event = {"type": "line_crossed", "stream": "cam", "seq": len(events), "frame": frame.index,
                 "timestamp": frame.time_s, "track_id": 1}
        event.update(stream.on_event(dict(event)))
        events.append(event)
tap.close(); recording.close()
recent = recording.recent_events(10)  # the web view's list: each event's files by the recorder's id
files = {item["id"]: {kind: str(recording.evidence_file(item["id"], kind)) for kind in ("clip", "snapshot", "thumb")}
         for item in recent}
print(json.dumps({"error": tap.error, "events": events, "metrics": recording.metrics(), "recent": recent,
                  "files": files}))
"""

CHECK = COMMON + """
import cv2, numpy as np
cfg = json.loads(sys.argv[1])

def frames(path):
    capture, out = cv2.VideoCapture(path), []
    while True:
        ok, image = capture.read()
        if not ok:
            return out
        out.append(image)

def samples(path):  # the sizes of the video track's samples, as qtdemux gives them
    pipeline = Gst.parse_launch(f"filesrc location={path} ! qtdemux ! appsink name=s sync=false")
    sink = pipeline.get_by_name("s"); pipeline.set_state(Gst.State.PLAYING); sizes = []
    while True:
        sample = sink.emit("try-pull-sample", 10 * Gst.SECOND)
        if sample is None:
            break
        sizes.append(sample.get_buffer().get_size())
    pipeline.set_state(Gst.State.NULL)
    return sizes

def codec(path):
    info = GstPbutils.Discoverer.new(10 * Gst.SECOND).discover_uri(Gst.filename_to_uri(path))
    return info.get_video_streams()[0].get_caps().to_string().split(",")[0]

source, source_sizes = frames(cfg["video"]), samples(cfg["video"])
report = {"source_codec": codec(cfg["video"]), "clips": {}}
for sidecar in cfg["sidecars"]:
    meta = json.load(open(sidecar))
    clip = sidecar[:-5] + ".mp4"
    images = frames(clip)
    first, last = meta["frames"]
    same = len(images) == last - first + 1 and all(np.array_equal(a, b) for a, b in zip(images, source[first:last + 1]))
    moving = any(not np.array_equal(images[0], image) for image in images[1:])
    report["clips"][clip] = {"meta": meta, "decoded": len(images), "same_as_source": same, "moving": moving,
                             "codec": codec(clip), "bytes": sum(samples(clip)),
                             "source_bytes": sum(source_sizes[first:last + 1])}
print(json.dumps(report))
"""


def system_json(code: str, config: dict, timeout: float = 180) -> dict:
    """``code`` run by the system Python with ``config`` as its argument; its last line of output, parsed."""
    script = code.replace("sys.path.insert(0, ROOT)", f"sys.path.insert(0, {str(ROOT)!r})")
    if not Path(SYSTEM_PYTHON).exists():
        pytest.skip(f"{SYSTEM_PYTHON} does not exist")
    result = subprocess.run([SYSTEM_PYTHON, "-c", script, json.dumps(config)], capture_output=True, text=True,
                            timeout=timeout)
    if "No module named" in result.stderr:
        missing = result.stderr.strip().splitlines()[-1]
        pytest.skip(f"{SYSTEM_PYTHON} lacks a module: {missing} (apt install {PACKAGES})")
    assert result.returncode == 0, result.stderr[-3000:]
    answer = json.loads(result.stdout.strip().splitlines()[-1])
    if "skip" in answer:
        pytest.skip(answer["skip"])
    return answer


@pytest.mark.slow
@pytest.mark.parametrize("codec, rtsp", [("h264", False), ("h265", False), ("h264", True)])
def test_every_event_has_a_clip_of_the_source_bitstream(tmp_path, codec, rtsp):
    pre, post, events = 1.5, 1.5, [2.0, 2.6, 6.0]  # the first two overlap: one clip; the third its own
    config = {"video": str(tmp_path / f"source-{codec}.mp4"), "codec": codec, "frames": 9 * FPS, "rtsp": rtsp,
              "folder": str(tmp_path / "clips"), "pre": pre, "post": post, "events": events, "best_frame": 75}
    run = system_json(RECORD, config)
    assert run["error"] is None and len(run["events"]) == 3
    assert run["metrics"]["clips_written"] == 2 and run["metrics"]["clips_failed"] == 0
    clips = [tmp_path / "clips" / e["clip"] for e in run["events"]]
    assert clips[0] == clips[1] != clips[2] and all(c.is_file() for c in clips)
    assert not list((tmp_path / "clips").rglob(".*.tmp*"))  # no temporary left behind
    check = system_json(CHECK, {"video": config["video"],
                                "sidecars": sorted({str(c.with_suffix(".json")) for c in clips})})
    media = f"video/x-{codec}"
    assert check["source_codec"] == media
    for event in run["events"]:
        clip = check["clips"][str(tmp_path / "clips" / event["clip"])]
        meta, t = clip["meta"], event["timestamp"]
        assert clip["decoded"] > 0 and clip["moving"] and clip["same_as_source"], clip
        assert clip["codec"] == media and meta["codec"] == media
        # the source's bytes per frame: the clip's samples are the source's (SPS/PPS repeated at keyframes)
        assert 1.0 <= clip["bytes"] / clip["source_bytes"] < 1.05
        start, end = meta["frames"][0] / FPS, meta["frames"][1] / FPS
        assert start <= t - pre + 1e-6 and end >= t + post - 1 / FPS - 1e-6  # covers the event's window
        # starts on the keyframe at or before its first event's pre-roll: within one GOP of it
        assert start >= min(e["timestamp"] for e in meta["events"]) - pre - GOP / FPS - 1e-6
        assert meta["stream"] == "cam" and event["seq"] in [e["seq"] for e in meta["events"]]
        assert meta["tracks"][0]["track_id"] == 1 and meta["tracks"][0]["class"] == "ball"
    first, third = (check["clips"][str(c)]["meta"] for c in (clips[0], clips[2]))
    assert first["end_time_s"] < events[1] + post + 2 / FPS  # extended to the second event, not beyond
    for event in run["events"]:
        snapshot = tmp_path / "clips" / event["snapshot"]
        assert snapshot.is_file() and snapshot.with_name(snapshot.stem + "-crop.jpg").is_file()
    # the web view's index (recording/evidence.py): newest first, each id mapped to its event's own files
    assert [item["event"]["seq"] for item in run["recent"]] == [2, 1, 0]
    for item in run["recent"]:
        event, files = run["events"][item["event"]["seq"]], run["files"][item["id"]]
        assert item["clip"] and item["snapshot"] and item["thumb"] and item["event"] == event
        assert files["clip"] == str(tmp_path / "clips" / event["clip"])
        assert files["snapshot"] == str(tmp_path / "clips" / event["snapshot"])
        assert files["thumb"] == files["snapshot"].replace(".jpg", "-crop.jpg")

# An RTSP source read, lost and read again, as the camera's capture layer does (recording.cli.tap_readers'
# reader_for called once per open): the second session starts at pts 0 and unit 0 on the wire.
REOPENED = COMMON + """
import cv2
cfg = json.loads(sys.argv[1])
need("x264enc", "h264parse", "mp4mux", "qtdemux", "appsrc", "avdec_h264", "rtspsrc", "rtph264pay")
make_video(cfg["video"], "h264", cfg["frames"])
url = rtsp_url(cfg["video"], "h264")
from recording.cli import tap_readers
from recording.options import parse_record_options
from recording.recorder import Recording
from recording.snapshots import TrackBox
from streams.sources import parse_source
options = parse_record_options(cfg["folder"], ["all"], cfg["pre"], cfg["post"], None, None, ["ball"])
recording = Recording(options, ["cam"], log=lambda m: print(m, file=sys.stderr))
stream = recording.stream("cam")
units, frames, events, gaps = [], [], [], []
record_unit = stream.on_unit
stream.on_unit = lambda unit: (units.append([unit.index, unit.pts_ns, unit.keyframe]), record_unit(unit))
reader_for = tap_readers(recording, 10.0)
for session, (count, event_at) in enumerate(cfg["sessions"]):
    reader = reader_for("cam", parse_source(url))
    for n in range(count):
        got = reader.read()
        assert got is not None, reader.tap.error
        frames.append([session, reader.time_s])
        stream.on_tracks(reader.time_s, got[1], [TrackBox(1, "ball", (100.0, 80.0, 180.0, 160.0), 0.9)])
        if n == event_at:
            event = {"type": "zone_enter", "stream": "cam", "seq": len(events), "frame": n,
                     "timestamp": reader.time_s, "track_id": 1}
            event.update(stream.on_event(dict(event)))
            events.append(event)
    reader.close()
    left = time.monotonic()
    time.sleep(cfg["away_s"])  # the source away
    gaps.append(time.monotonic() - left)
recording.close()
clips = {}
for event in events:
    path = cfg["folder"] + "/" + event["clip"]
    capture, decoded = cv2.VideoCapture(path), 0
    while capture.read()[0]:
        decoded += 1
    clips[event["clip"]] = {"decoded": decoded, "meta": json.load(open(path[:-4] + ".json"))}
print(json.dumps({"units": units, "frames": frames, "events": events, "gaps": gaps, "clips": clips,
                  "metrics": recording.metrics()}))
"""


@pytest.mark.slow
def test_a_reopened_rtsp_source_keeps_the_recorders_clock_going(tmp_path):
    sessions, away = [(45, 36), (45, 12)], 0.5  # (frames read, the frame of its event) per session
    run = system_json(REOPENED, {"video": str(tmp_path / "source.mp4"), "frames": 3 * FPS, "sessions": sessions,
                                 "folder": str(tmp_path / "clips"), "pre": 1.0, "post": 0.3, "away_s": away})
    units, frames = run["units"], run["frames"]
    assert [u[0] for u in units] == list(range(len(units)))  # unit numbers go on after the reopen
    assert all(a[1] < b[1] for a, b in zip(units, units[1:]))  # pts too (no B-frames in the source)
    times = [t for _, t in frames]
    assert all(a < b for a, b in zip(times, times[1:])), times  # the events' clock never goes back
    last_first = next(i for i, (session, _) in enumerate(frames) if session == 1) - 1
    jump = times[last_first + 1] - times[last_first]
    assert away <= jump < run["gaps"][0] + 3.0  # the time the source was away (and reconnecting) is counted
    assert run["metrics"]["clips_failed"] == 0 and run["metrics"]["clips_written"] >= 1
    for event in run["events"]:
        clip = run["clips"][event["clip"]]
        meta = clip["meta"]
        assert clip["decoded"] == meta["units"] > 0  # plays: every unit decodes, across the reopen too
        assert meta["start_time_s"] <= event["timestamp"] <= meta["end_time_s"]
        assert (tmp_path / "clips" / event["snapshot"]).is_file()


# A source that comes back with other parameters (here another resolution): the open clip ends with what it
# has, and the next event gets a clip of its own in the new size.
CAPS_CHANGE = COMMON + """
import cv2
cfg = json.loads(sys.argv[1])
need("x264enc", "h264parse", "mp4mux", "qtdemux", "appsrc", "avdec_h264")
make_video(cfg["videos"][0], "h264", 2 * FPS)
run(f"videotestsrc pattern=ball num-buffers={2 * FPS} ! video/x-raw,format=I420,width=160,height=120,"
    f"framerate={FPS}/1 ! x264enc speed-preset=ultrafast key-int-max={GOP} ! h264parse ! mp4mux ! "
    f"filesink location={cfg['videos'][1]}")
from recording.options import parse_record_options
from recording.recorder import Recording
from recording.tap import EncodedTap, StreamClock
options = parse_record_options(cfg["folder"], ["all"], 0.5, 5.0, None, None, [])
recording = Recording(options, ["cam"], log=lambda m: print(m, file=sys.stderr))
stream, clock, events = recording.stream("cam"), StreamClock(), []
for video in cfg["videos"]:
    tap = EncodedTap(video, on_unit=stream.on_unit, clock=clock)  # as tap_readers gives a reopened stream
    while True:
        frame = tap.read(10.0)
        if frame is None:
            break
        stream.on_frame(frame.time_s)
        if frame.index == FPS:
            event = {"type": "zone_enter", "stream": "cam", "seq": len(events), "timestamp": frame.time_s}
            event.update(stream.on_event(dict(event)))
            events.append(event)
    tap.close()
recording.close()
clips = {}
for event in events:
    path = cfg["folder"] + "/" + event["clip"]
    capture, sizes = cv2.VideoCapture(path), []
    while True:
        ok, image = capture.read()
        if not ok:
            break
        sizes.append(list(image.shape[:2]))
    clips[event["clip"]] = {"sizes": sizes, "meta": json.load(open(path[:-4] + ".json"))}
print(json.dumps({"events": events, "clips": clips, "metrics": recording.metrics()}))
""".replace("FPS", str(FPS)).replace("GOP", str(GOP))


@pytest.mark.slow
def test_a_source_back_in_another_size_ends_the_open_clip_and_starts_afresh(tmp_path):
    run = system_json(CAPS_CHANGE, {"videos": [str(tmp_path / "big.mp4"), str(tmp_path / "small.mp4")],
                                    "folder": str(tmp_path / "clips")})
    first, second = (run["clips"][event["clip"]] for event in run["events"])
    assert run["events"][0]["clip"] != run["events"][1]["clip"]  # the second event did not extend the first clip
    assert run["metrics"]["clips_written"] == 2 and run["metrics"]["clips_failed"] == 0
    assert first["sizes"] == [[240, 320]] * first["meta"]["units"] and first["meta"]["cut_short"]
    assert second["sizes"] == [[120, 160]] * second["meta"]["units"] and second["meta"]["units"] > 0


SETUP = COMMON + """
cfg = json.loads(sys.argv[1])
need("x264enc", "h264parse", "mp4mux", "qtdemux", "appsrc", "avdec_h264")
make_video(cfg["video"], "h264", cfg["frames"])
from recording.options import parse_record_options
from recording.recorder import Recording
from recording.tap import EncodedTap
options = parse_record_options(cfg["folder"], ["all"], 1.0, cfg["post"], None, None, [], min_free_mb=0.5)
recording = Recording(options, ["cam"], log=lambda m: print(m, file=sys.stderr))
stream = recording.stream("cam")
tap = EncodedTap(cfg["video"], on_unit=stream.on_unit)

def event(frame, seq):
    return stream.on_event({"type": "zone_enter", "stream": "cam", "seq": seq, "frame": frame.index,
                            "timestamp": frame.time_s, "track_id": 1})
"""

FULL_DISK = SETUP + """
import os
filler = os.path.join(cfg["folder"], "filler")
with open(filler, "wb") as f:  # the file system full but for 200 kB: under the 0.5 MB recording keeps free
    st = os.statvfs(cfg["folder"]); f.write(b"f" * (st.f_bavail * st.f_frsize - 200 * 1024))
seen = {}
while True:
    frame = tap.read(10.0)
    if frame is None:
        break
    stream.on_frame(frame.time_s)
    if frame.index == 60:
        seen["full"] = {"fields": event(frame, 0), "health": recording.health(), "metrics": recording.metrics()}
    if frame.index == 90:
        os.remove(filler); recording.maintain()
        seen["freed"] = {"health": recording.health()}
    if frame.index == 150:
        seen["resumed"] = {"fields": event(frame, 1)}
tap.close(); recording.close()
seen["after"] = {"health": recording.health(), "metrics": recording.metrics()}
print(json.dumps(seen))
"""

KILLED = SETUP + """
import glob, os
while True:
    frame = tap.read(10.0)
    stream.on_frame(frame.time_s)
    if frame.index == 45:
        event(frame, 0)  # a clip open until 100 s after: still being written when the process is killed
    temps = glob.glob(os.path.join(cfg["folder"], "cam", "*", ".*.tmp.mp4"))
    if frame.index > 90 and temps and os.path.getsize(temps[0]) > 0:
        print(json.dumps({"temporary": temps[0]}), flush=True)
        time.sleep(600)
"""

RESTART = """
import json, sys
sys.path.insert(0, ROOT)
from recording.options import parse_record_options
from recording.recorder import Recording
options = parse_record_options(sys.argv[1], ["all"], 1.0, 1.0, None, None, [])
logged = []
Recording(options, ["cam"], log=logged.append).close()
print(json.dumps({"log": logged}))
"""


def mount_tmpfs(where: Path, *options: str) -> None:
    """A tmpfs at ``where`` (the test skips, with the reason, where mounting is not allowed)."""
    where.mkdir()
    result = subprocess.run(["mount", "-t", "tmpfs", "-o", ",".join(options), "tmpfs", str(where)],
                            capture_output=True, text=True)
    if result.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({result.stderr.strip() or 'not root'}): needs root in a "
                    "container that allows mount")


@pytest.fixture
def mounts():
    made: List[Path] = []
    yield made
    for where in made:
        subprocess.run(["umount", str(where)], capture_output=True)


def test_read_only_record_folder_is_refused_in_one_line(tmp_path, mounts):
    from recording.options import parse_record_options
    from runtimes.errors import UserError

    mount_tmpfs(tmp_path / "ro", "ro", "size=1m")
    mounts.append(tmp_path / "ro")
    with pytest.raises(UserError, match=r"^--record .*ro: cannot write there \(permission denied\); choose another"):
        parse_record_options(tmp_path / "ro", ["all"], 5, 5, None, None, [])


@pytest.mark.slow
def test_a_full_file_system_pauses_recording_until_space_returns(tmp_path, mounts):
    mount_tmpfs(tmp_path / "small", "size=3m")
    mounts.append(tmp_path / "small")
    run = system_json(FULL_DISK, {"video": str(tmp_path / "source.mp4"), "frames": 8 * FPS,
                                  "folder": str(tmp_path / "small"), "post": 1.0})
    full = run["full"]
    assert full["fields"] == {} and "recording paused" in full["health"] and "MB free under" in full["health"]
    assert full["metrics"]["events_not_recorded"] == 1 and full["metrics"]["recording_pauses"] == 1
    assert run["freed"]["health"] is None
    clip = tmp_path / "small" / run["resumed"]["fields"]["clip"]
    assert clip.is_file() and clip.with_suffix(".json").is_file()
    assert run["after"]["health"] is None and run["after"]["metrics"]["clips_written"] == 1


@pytest.mark.slow
def test_kill_9_while_writing_leaves_no_final_file_and_the_next_run_removes_the_temporary(tmp_path):
    if not Path(SYSTEM_PYTHON).exists():
        pytest.skip(f"{SYSTEM_PYTHON} does not exist")
    folder = tmp_path / "clips"
    config = {"video": str(tmp_path / "source.mp4"), "frames": 6 * FPS, "folder": str(folder), "post": 100.0}
    script = KILLED.replace("sys.path.insert(0, ROOT)", f"sys.path.insert(0, {str(ROOT)!r})")
    writer = subprocess.Popen([SYSTEM_PYTHON, "-c", script, json.dumps(config)], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True)
    assert writer.stdout is not None and writer.stderr is not None
    try:
        line = writer.stdout.readline()
        assert line, f"the writer ended before writing: {writer.stderr.read()[-2000:]}"
        if "skip" in line:
            pytest.skip(json.loads(line)["skip"])
        temporary = Path(json.loads(line)["temporary"])
    finally:
        os.kill(writer.pid, signal.SIGKILL)
        writer.wait()
    assert temporary.is_file() and temporary.stat().st_size > 0
    assert not [p for p in folder.rglob("*.mp4") if not p.name.startswith(".")]  # nothing under a final name
    restart = system_json(RESTART.replace("sys.argv[1]", repr(str(folder))), {})
    assert not temporary.exists()
    assert restart["log"] == [f"recording: removed {temporary}, left by a run that was killed while writing it"]
