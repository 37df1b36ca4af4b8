"""apps/camera.py with several streams: per-stream outputs equal the detector's own results, a live stream that
drops is reopened while the others run, scheduling is fair, bad stream lists are one clear line."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import cv2
import pytest

from runtimes.errors import UserError
from runtimes.loader import load_detector
from streams.capture import CaptureOptions, StreamCapture, StreamSource, parse_streams
from streams.config import StreamSpec, stream_specs
from streams.scheduler import BatchScheduler, plan_schedule
from streams.scores import CAMERA_SCORE_THRESHOLD, score_options
from streams.sources import CsiOptions, parse_source, rtsp_pipeline
from tests.matching import assert_record_matches
from tests.mjpeg_server import MjpegCamera
from tests.test_camera import write_video

ROOT = Path(__file__).resolve().parents[1]


def run_app(*args, timeout: float = 300):
    return subprocess.run([sys.executable, "apps/camera.py", *map(str, args)], cwd=ROOT, capture_output=True,
                          text=True, timeout=timeout)


@pytest.fixture(scope="module")
def images(demo_data):
    return sorted((demo_data / "VOCdevkit/VOC2007/JPEGImages").glob("*.jpg"))[-50:]


def test_three_streams_one_dropping_give_each_stream_the_detectors_results(tmp_path, demo_model, images):
    _, onnx_path, _ = demo_model
    left = write_video(tmp_path / "left.avi", images[:30], size=(480, 360))
    right = write_video(tmp_path / "right.avi", images[30:50], size=(320, 240))
    still = cv2.resize(cv2.imread(str(images[0])), (400, 300))
    with MjpegCamera(still, frames_per_connection=25) as camera:
        sources = tmp_path / "cameras.txt"
        sources.write_text(f"# two files and a camera that drops every 25 frames\nleft={left}\nright={right}\n\n"
                           f"door={camera.url}\n")
        result = run_app("--model", onnx_path, "--sources", sources, "--headless", "--max-frames", 60,
                         "--output", tmp_path / "out", "--json", tmp_path / "all.jsonl")
        connections = len(camera.connections)
    assert result.returncode == 0, result.stderr[-3000:]
    summary = json.loads(result.stdout.strip().splitlines()[-1][len("summary: "):])
    assert "stream door: " in result.stdout and f"stream door: lost {camera.url}" in result.stdout
    assert f"stream door: reopened {camera.url} after" in result.stdout and connections >= 3  # 25 a connection

    lines = [json.loads(line) for line in (tmp_path / "all.jsonl").read_text().splitlines()]
    by_stream = {name: [r for r in lines if r["stream"] == name] for name in ("left", "right", "door")}
    assert [r["frame"] for r in by_stream["left"]] == list(range(30))  # files: every frame, in order
    assert [r["frame"] for r in by_stream["right"]] == list(range(20))
    door = summary["streams"]["door"]
    # A live stream hands over its newest frame: of the 60 it read, those the model had no time for were
    # dropped as stale (and counted), the rest processed in order.
    assert len(by_stream["door"]) >= 10 and len(by_stream["door"]) + door["dropped_stale_frames"] >= 60
    frames = [r["frame"] for r in by_stream["door"]]
    assert frames == sorted(frames) and len(set(frames)) == len(frames)
    assert door["reopens"] >= 2 and summary["streams"]["left"]["reopens"] == 0
    assert {name: s["frames"] for name, s in summary["streams"].items()} == \
        {"left": 30, "right": 20, "door": len(by_stream["door"])}
    assert summary["frames"] == len(lines)

    # The camera keeps confident detections, not the model's mAP threshold, and says which it kept.
    assert summary["score_threshold"] == CAMERA_SCORE_THRESHOLD > load_detector(onnx_path).postprocessor.score_threshold
    detector = load_detector(onnx_path, score_threshold=summary["score_threshold"])
    for name, video in (("left", left), ("right", right)):
        capture = cv2.VideoCapture(str(video))
        for record in by_stream[name]:
            ok, frame = capture.read()
            assert ok
            assert_record_matches(record["detections"], detector(frame))
    # The camera's frames went through FFmpeg's JPEG decoder, not OpenCV's: the same objects, boxes within 2 px.
    ok, encoded = cv2.imencode(".jpg", still, [cv2.IMWRITE_JPEG_QUALITY, 95])
    want = detector(cv2.imdecode(encoded, cv2.IMREAD_COLOR)).filter(min_score=0.3)
    for record in by_stream["door"]:
        confident = [d for d in record["detections"] if d["score"] >= 0.3]
        assert sorted(d["label"] for d in confident) == sorted(want.labels.tolist())
    for name, count, size in (("left", 30, (480, 360)), ("right", 20, (320, 240)),
                              ("door", len(by_stream["door"]), (400, 300))):
        written = cv2.VideoCapture(str(tmp_path / "out" / f"{name}.mp4"))
        assert int(written.get(cv2.CAP_PROP_FRAME_COUNT)) == count, name
        assert (written.get(cv2.CAP_PROP_FRAME_WIDTH), written.get(cv2.CAP_PROP_FRAME_HEIGHT)) == size
    assert not list((tmp_path / "out").glob(".*")) and not list(tmp_path.glob(".*"))


def test_a_source_that_cannot_be_opened_is_reported_and_the_others_run(tmp_path, demo_model, images):
    _, onnx_path, _ = demo_model
    clip = write_video(tmp_path / "clip.avi", images[:8])
    result = run_app("--model", onnx_path, "--source", clip, "--source", tmp_path / "missing.avi", "--headless",
                     "--json", tmp_path / "out.jsonl")
    assert result.returncode == 2 and "no such file, folder or camera" in result.stderr  # a typo is an error
    # A camera that is not there (yet) is retried while the file runs, until the run is stopped.
    proc = subprocess.Popen([sys.executable, "apps/camera.py", "--model", str(onnx_path), "--source", str(clip),
                             "--source", "/dev/video63", "--headless", "--json", str(tmp_path / "out.jsonl")],
                            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    seen = []
    assert proc.stdout is not None
    for line in proc.stdout:
        seen.append(line)
        if "retrying in 4 s" in line:  # two retries: the file's 8 frames are long done
            break
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=60)
    output = "".join(seen) + out
    assert proc.returncode == 0, err
    assert "stream cam1: cannot open --source /dev/video63" in output and "(live: retrying" in output
    summary = json.loads(output.strip().splitlines()[-1][len("summary: "):])
    assert summary["streams"]["cam1"]["frames"] == 0 and summary["streams"]["cam0"]["frames"] == 8
    lines = [json.loads(line) for line in (tmp_path / "out.jsonl").read_text().splitlines()]
    assert [r["frame"] for r in lines if r["stream"] == "cam0"] == list(range(8))


def test_no_stream_that_opens_is_one_clear_error(demo_model):
    _, onnx_path, _ = demo_model
    result = run_app("--model", onnx_path, "--source", "/dev/video61", "--source", "/dev/video62", "--headless")
    assert result.returncode == 2
    assert result.stderr.startswith("error: none of the 2 streams could be opened: cam0: cannot open --source "
                                    "/dev/video61") and len(result.stderr.strip().splitlines()) == 1


@pytest.mark.parametrize("content, words", [
    ("a=x.avi\nb=\n", "line 2: 'b=' names a stream but gives no source"),
    ("a=x.avi\na=y.avi\n", "stream name 'a' is given twice"),
    ("# nothing\n\n", "lists no sources"),
    ("cam\x01=x.avi\n", "line 1: the line holds control characters"),
])
def test_bad_sources_files_are_one_clear_line(tmp_path, demo_model, content, words):
    _, onnx_path, _ = demo_model
    listing = tmp_path / "sources.txt"
    listing.write_text(content)
    result = run_app("--model", onnx_path, "--sources", listing, "--headless")
    assert result.returncode == 2 and words in result.stderr and len(result.stderr.strip().splitlines()) == 1
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize("value", ["0", "-5", "nan"])
def test_a_batch_timeout_that_is_not_positive_is_refused(demo_model, value):
    _, onnx_path, _ = demo_model
    result = run_app("--model", onnx_path, "--source", "0", "--batch-timeout", value, "--headless")
    assert result.returncode == 2 and "--batch-timeout must be more than 0 ms" in result.stderr


@pytest.mark.parametrize("value", ["-1", "20000", "nan"])
def test_a_frame_wait_out_of_range_is_one_line_before_the_model_loads(tmp_path, value):
    result = run_app("--model", tmp_path / "missing.onnx", "--source", "0", "--max-wait", value, "--headless")
    assert result.returncode == 2 and len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert f"--max-wait must be 0 to 10000 ms, got {value}" in result.stderr and "missing.onnx" not in result.stderr


def test_stream_names_default_by_position_and_sources_files_may_name_them(tmp_path):
    listing = tmp_path / "s.txt"
    listing.write_text("gate=rtsp://10.0.0.5/s?a=b\nvideotestsrc ! video/x-raw,width=64\n")
    specs = stream_specs(["0"], listing)
    assert specs == [StreamSpec("cam0", "0"), StreamSpec("gate", "rtsp://10.0.0.5/s?a=b"),
                     StreamSpec("cam2", "videotestsrc ! video/x-raw,width=64")]


def test_streams_take_turns_when_the_model_is_the_bottleneck(tmp_path, images):
    """Three image-folder streams (nothing dropped), two frames per call: over the run no stream gets ahead of
    another by more than one round."""
    from export.demo_model import demo_onnx

    detector = load_detector(demo_onnx(verbose=False, dynamic_batch=True), max_batch=2)
    folders = []
    for i in range(3):
        folder = tmp_path / f"f{i}"
        folder.mkdir()
        for j, image in enumerate(images[i * 8:(i + 1) * 8]):
            (folder / f"{j:03d}.jpg").write_bytes(image.read_bytes())
        folders.append(folder)
    captures = [StreamCapture(StreamSource(f"s{i}", parse_source(str(f))), CaptureOptions(), log=lambda _: None)
                for i, f in enumerate(folders)]
    served = []
    stop = threading.Event()
    scheduler = BatchScheduler(captures, detector.requests(1), 2, 0.05,
                               lambda results: served.append([r.frame.stream for r in results]), stop)
    for capture in captures:
        capture.notify = scheduler.notify
        capture.start()
    scheduler.run()
    for capture in captures:
        assert capture.close() and capture.state == "ended"
    assert sum(len(batch) for batch in served) == 24 and all(len(batch) == 2 for batch in served)
    counts = {"s0": 0, "s1": 0, "s2": 0}
    for batch in served:
        for name in batch:
            counts[name] += 1
        assert max(counts.values()) - min(counts.values()) <= 2, served


def test_the_schedule_says_what_it_does_when_streams_outnumber_the_batch(demo_model):
    _, onnx_path, _ = demo_model
    detector = load_detector(onnx_path)
    plan = plan_schedule(detector, 3)
    assert (plan.batch, plan.depth) == (1, 4)
    assert plan_schedule(detector, 3, batch=1, depth=2).depth == 2  # what is given is kept
    assert "3 streams, 1 frame per call (the model's batch is 1): streams are served round-robin" in plan.reason
    assert plan_schedule(detector, 3, batch=4).batch == 1  # the model's batch caps it, with a note
    assert "exceeds the model's batch of 1" in plan_schedule(detector, 3, batch=4).reason


def test_jetson_pipelines_decode_rtsp_in_hardware_and_open_several_csi_cameras():
    hardware = rtsp_pipeline("rtsp://cam/s", hardware=True)
    assert hardware.startswith("rtspsrc location=rtsp://cam/s latency=0 drop-on-latency=true ! rtph264depay ! "
                               "h264parse ! nvv4l2decoder ! nvvidconv ! video/x-raw,format=BGRx ! ")
    spec = parse_source("rtsp://cam/s", gstreamer=True, jetson=True)
    assert [a[0].split(" ")[1] for a in spec.attempts[:2]] == ["(NVDEC)", "rtspsrc"]
    assert "nvv4l2decoder" not in parse_source("rtsp://cam/s", gstreamer=True, jetson=False).attempts[0][0]
    two = [parse_source(f"csi://{i}", gstreamer=True).attempts[0][1][0] for i in (0, 1)]
    assert two[0].startswith("nvarguscamerasrc sensor-id=0 ") and two[1].startswith("nvarguscamerasrc sensor-id=1 ")


def test_realtime_files_keep_their_own_pace(tmp_path, images):
    from streams.sources import open_reader

    clip = write_video(tmp_path / "paced.avi", images[:12], fps=25.0)
    reader = open_reader(parse_source(str(clip)), realtime=True)
    stamps, numbers = [], []
    while True:
        item = reader.read()
        if item is None:
            break
        stamps.append(time.monotonic())
        numbers.append(item[0])
    reader.close()
    assert numbers == list(range(12)) and stamps[-1] - stamps[0] >= 11 / 25.0 - 0.01  # not faster than 25 FPS


def test_the_cameras_score_threshold_is_a_load_option_with_the_models_built_in_one_as_floor(demo_model):
    import dataclasses

    from runtimes.detector import Detector

    _, onnx_path, _ = demo_model
    assert score_options(None) == {"default_score_threshold": CAMERA_SCORE_THRESHOLD}
    assert score_options(None, track_low_score=0.1) == {"default_score_threshold": 0.1}  # ByteTrack's low pass
    assert score_options(0.6, track_low_score=0.1) == {"score_threshold": 0.6}  # given: as given
    with load_detector(onnx_path, default_score_threshold=0.3) as detector:
        assert detector.score_threshold == 0.3 > detector.meta.score_threshold
    with load_detector(onnx_path, score_threshold=0.05, default_score_threshold=0.3) as detector:
        assert detector.score_threshold == 0.05
    # NMS inside the model at 0.4: the caller's default cannot go below it, an explicit lower one is refused.
    built = dataclasses.replace(load_detector(onnx_path).meta, output_format="nms", score_threshold=0.4)
    assert Detector(built, "nms-inside", default_score_threshold=0.25).score_threshold == 0.4
    assert Detector(built, "nms-inside", default_score_threshold=0.5).score_threshold == 0.5
    with pytest.raises(UserError, match="runs NMS inside"):
        Detector(built, "nms-inside", score_threshold=0.25)


def test_bad_sources_are_refused_by_stream_before_anything_opens(tmp_path):
    specs = [StreamSpec("gate", str(tmp_path)), StreamSpec("door", "csi://front")]
    with pytest.raises(UserError, match=r"^stream door: --source csi://front: a CSI camera is csi://N"):
        parse_streams(specs, CsiOptions())
    assert parse_streams(specs[:1], CsiOptions())[0].source.folder == tmp_path


# -- decoding plans in the capture layer, under the system Python (OpenCV 4.6 with GStreamer) ----------------

SCALED_CAPTURE = """
import json, os, sys, time
sys.path.insert(0, ROOT)
import numpy as np
import gi
gi.require_version("Gst", "1.0")
from gi.repository import Gst
from streams.capture import CaptureOptions, StreamCapture, StreamSource
from streams.sources import has_gstreamer, parse_source
if not has_gstreamer():
    print(json.dumps({"gstreamer": False})); raise SystemExit
Gst.init(None)
if Gst.ElementFactory.find("x264enc") is None:
    print(json.dumps({"gstreamer": True, "x264enc": False})); raise SystemExit
video = os.path.join(out, "shapes.mp4")
pipe = Gst.parse_launch(f"multifilesrc location={frames_dir}/%06d.jpg index=1 caps=image/jpeg,framerate=15/1 ! "
                        f"jpegdec ! videoconvert ! x264enc speed-preset=ultrafast key-int-max=10 ! h264parse ! "
                        f"mp4mux ! filesink location={video}")
pipe.set_state(Gst.State.PLAYING)
pipe.get_bus().timed_pop_filtered(120 * Gst.SECOND, Gst.MessageType.EOS | Gst.MessageType.ERROR)
pipe.set_state(Gst.State.NULL)
capture = StreamCapture(StreamSource("cam", parse_source(video)), CaptureOptions(decode=True, decode_size=(320, 320)),
                        log=lambda line: None)
capture.start()
frames, deadline = [], time.monotonic() + 60
while capture.state != "ended" or capture.has_frame:
    frame = capture.take()
    if frame is None:
        if time.monotonic() > deadline:
            break
        time.sleep(0.005)
    else:
        frames.append(frame)
capture.close()
np.save(os.path.join(out, "scaled.npy"), np.stack([f.image for f in frames]))
print(json.dumps({"gstreamer": True, "x264enc": True, "video": video, "description": capture.description,
                  "indices": [f.index for f in frames], "shapes": sorted({f.image.shape for f in frames}),
                  "source_sizes": sorted({f.source_size for f in frames}, key=str)}))
"""


def test_a_file_is_decoded_scaled_by_its_plan_and_detections_come_back_in_the_sources_pixels(tmp_path, demo_model):
    import numpy as np

    from calibration.synthetic_tracks import ensure_tracking_set
    from streams.frame import Frame, in_source_pixels
    from tests.matching import box_iou
    from tests.system_python import run_system_python

    sequence = sorted(p for p in ensure_tracking_set().iterdir() if (p / "img1").is_dir())[0]
    code = f"ROOT, frames_dir, out = {str(ROOT)!r}, {str(sequence / 'img1')!r}, {str(tmp_path)!r}\n" + SCALED_CAPTURE
    result = run_system_python(code, "python3-gi python3-opencv gstreamer1.0-plugins-ugly gstreamer1.0-libav",
                               timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    info = json.loads(result.stdout.strip().splitlines()[-1])
    if not info["gstreamer"] or not info["x264enc"]:
        pytest.skip("the system Python's OpenCV has no GStreamer, or GStreamer no x264enc")
    count = len(list((sequence / "img1").glob("*.jpg")))
    assert info["indices"] == list(range(count))  # a file loses no frame through its plan
    assert info["shapes"] == [[320, 320, 3]] and info["source_sizes"] == [[480, 360]]  # scaled before Python
    assert "H.264" in info["description"] and "scaled to 320x320" in info["description"]  # the plan's line

    _, onnx_path, _ = demo_model
    detector = load_detector(onnx_path, score_threshold=0.5)
    scaled = np.load(tmp_path / "scaled.npy")
    full = cv2.VideoCapture(info["video"])
    strong = matched_back = matched_raw = 0
    for image in scaled[:30]:
        ok, original = full.read()
        assert ok and original.shape == (360, 480, 3)
        reference = detector(original)
        got = detector(image)
        back = in_source_pixels(got, Frame("cam", 0, 0.0, image, 0.0, 0.0, (480, 360)))
        strong += len(reference)
        if len(reference) and len(got):
            matched_back += int((box_iou(reference.boxes, back.boxes) >= 0.8).any(axis=1).sum())
            matched_raw += int((box_iou(reference.boxes, got.boxes) >= 0.8).any(axis=1).sum())
    assert strong >= 30  # the shapes are found
    # The scaled frame's boxes, in the source's pixels, are the full frame's; left in the scaled frame's
    # pixels (the control) they are not.
    assert matched_back >= 0.9 * strong, (strong, matched_back, matched_raw)
    assert matched_raw <= 0.2 * strong, (strong, matched_back, matched_raw)


def test_a_pipeline_gives_each_streams_decoder_the_cores_the_streams_leave_it(tmp_path, demo_model, images,
                                                                               monkeypatch):
    import streams.decoding
    from streams.pipeline import Pipeline, PipelineOptions

    monkeypatch.setattr(streams.decoding.os, "cpu_count", lambda: 2)  # the box: 2 cores
    video = write_video(tmp_path / "clip.avi", images[:2])
    with load_detector(demo_model[1]) as detector:
        for count, threads in ((1, 2), (2, 1), (5, 1)):
            specs = [StreamSpec(f"cam{k}", str(video)) for k in range(count)]
            pipeline = Pipeline(detector, parse_streams(specs, CsiOptions()), plan_schedule(detector, count),
                                PipelineOptions(), log=lambda _: None)
            assert {pipeline._capture_options(s.name).decode_threads for s in specs} == {threads}, count
