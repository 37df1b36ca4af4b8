"""apps/camera.py on real video files, its sources, and its robustness."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from runtimes.loader import load_detector
from streams.sources import (
    CsiOptions,
    LiveSource,
    SourceSpec,
    csi_pipeline,
    has_gstreamer,
    parse_source,
    rtsp_pipeline,
    usb_pipeline,
)
from tests.matching import assert_record_matches

ROOT = Path(__file__).resolve().parents[1]


def write_video(path: Path, images, size=(480, 360), fps=10.0, repeat: int = 1) -> Path:
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter.fourcc(*"MJPG"), fps, size)
    for _ in range(repeat):
        for image_path in images:
            writer.write(cv2.resize(cv2.imread(str(image_path)), size))
    writer.release()
    return path


def app(*args: str, **kwargs):
    return subprocess.Popen([sys.executable, "apps/camera.py", *map(str, args)], cwd=ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, **kwargs)


@pytest.fixture(scope="module")
def test_images(demo_data):
    return sorted((demo_data / "VOCdevkit/VOC2007/JPEGImages").glob("*.jpg"))[-30:]


# ONNX Runtime's synchronous calls; OpenVINO's async pipeline, with a video (output on a worker thread of
# its own) and with only JSON lines (output on the scheduler's thread).
@pytest.mark.parametrize("kind,video_out", [("onnx", True), ("openvino-ir", True), ("openvino-ir", False)])
def test_headless_run_writes_video_and_json_that_match_the_detector(tmp_path, demo_model, demo_irs, test_images,
                                                                    kind, video_out):
    model = demo_model[1] if kind == "onnx" else demo_irs["fp32"]
    video = write_video(tmp_path / "in.avi", test_images)
    proc = app("--model", model, "--source", video, "--headless", "--json", tmp_path / "out.jsonl",
               "--score-threshold", "0.3", *(["--output", tmp_path / "out.mp4"] if video_out else []))
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err
    summary = json.loads(out.strip().splitlines()[-1][len("summary: "):])

    if video_out:
        written = cv2.VideoCapture(str(tmp_path / "out.mp4"))
        assert int(written.get(cv2.CAP_PROP_FRAME_COUNT)) == 30
        assert (written.get(cv2.CAP_PROP_FRAME_WIDTH), written.get(cv2.CAP_PROP_FRAME_HEIGHT)) == (480, 360)

    lines = [json.loads(line) for line in (tmp_path / "out.jsonl").read_text().splitlines()]
    assert [r["frame"] for r in lines] == list(range(30))
    detector = load_detector(model, score_threshold=0.3)
    source = cv2.VideoCapture(str(video))
    with_objects = 0
    for record in lines:
        ok, frame = source.read()
        assert ok
        got = record["detections"]
        assert_record_matches(got, detector(frame))
        assert set(record["timings_ms"]) == {"capture", "preprocess", "inference", "postprocess", "draw"}
        with_objects += bool(got)
    assert with_objects >= 25  # the demo model finds shapes in nearly every frame
    assert summary["frames"] == len(lines) == 30
    assert summary["mean_fps"] == pytest.approx(30 / summary["seconds"], rel=5e-3)  # seconds is rounded to ms
    assert summary["latency_p50_ms"] == pytest.approx(np.median([r["latency_ms"] for r in lines]), abs=1e-2)
    assert summary["latency_p95_ms"] == pytest.approx(np.percentile([r["latency_ms"] for r in lines], 95), abs=1e-2)


def test_sigterm_finishes_the_video_and_the_json(tmp_path, demo_model, test_images):
    _, onnx_path, _ = demo_model
    video = write_video(tmp_path / "long.avi", test_images, size=(320, 240), repeat=40)  # 1200 frames
    proc = app("--model", onnx_path, "--source", video, "--headless", "--output", tmp_path / "out.avi",
               "--json", tmp_path / "out.jsonl")
    time.sleep(8)
    assert proc.poll() is None, "the app should still be running"
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    assert "SIGTERM: finishing" in err
    summary = json.loads(out.strip().splitlines()[-1][len("summary: "):])
    lines = [json.loads(line) for line in (tmp_path / "out.jsonl").read_text().splitlines()]
    assert 0 < len(lines) == summary["frames"] < 1200
    written = cv2.VideoCapture(str(tmp_path / "out.avi"))
    assert int(written.get(cv2.CAP_PROP_FRAME_COUNT)) == len(lines)
    assert not list(tmp_path.glob(".*tmp*"))


class FlakyCapture:
    """A capture that delivers ``frames`` frames, then fails; the next one opened works again."""

    def __init__(self, frames: int) -> None:
        self.left = frames

    def isOpened(self) -> bool:
        return True

    def read(self):
        time.sleep(0.005)
        if self.left <= 0:
            return False, None
        self.left -= 1
        return True, np.full((48, 64, 3), self.left % 255, np.uint8)

    def release(self) -> None:
        pass


def test_live_source_reopens_after_a_drop_and_logs_the_gap():
    opened = []

    def opener(*_args):
        opened.append(time.monotonic())
        if len(opened) == 2:
            return None  # the first reopen attempt fails: back-off, then try again
        return FlakyCapture(20 if len(opened) == 1 else 10_000)

    logs = []
    spec = SourceSpec("fake-camera", True, [("fake camera", ())])
    source = LiveSource(spec, opener=opener, log=logs.append, backoff_s=0.05)
    got = []
    deadline = time.monotonic() + 10
    while len(got) < 40 and time.monotonic() < deadline:
        item = source.read()
        if item is not None:
            got.append(item)
    source.close()
    assert len(got) == 40 and source.reopens == 1 and len(opened) == 3
    assert [i for i, _, _ in got] == sorted(i for i, _, _ in got)
    assert any("lost" in line for line in logs) and any("reopened after" in line for line in logs)
    assert opened[2] - opened[1] >= 0.09  # the second attempt waited the doubled back-off


def test_live_source_hands_out_only_the_newest_frame():
    source = LiveSource(parse_source("/dev/video9", gstreamer=False), opener=lambda *_: FlakyCapture(10_000),
                        log=lambda _: None)
    first = source.read()
    time.sleep(0.3)  # ~60 frames arrive meanwhile
    second = source.read()
    source.close()
    assert first is not None and second is not None
    assert second[0] - first[0] > 20 and source.dropped > 20


def test_gstreamer_pipeline_strings():
    csi = csi_pipeline(1, CsiOptions(sensor_mode=3, width=1920, height=1080, fps=60, flip=2))
    assert csi.startswith("nvarguscamerasrc sensor-id=1 sensor-mode=3 ! ")
    assert "video/x-raw(memory:NVMM),width=1920,height=1080,framerate=60/1,format=NV12" in csi
    assert "nvvidconv flip-method=2" in csi and csi.endswith("appsink drop=true max-buffers=1 sync=false")
    assert "sensor-mode" not in csi_pipeline(0, CsiOptions())
    usb = usb_pipeline("/dev/video1", 640, 480, 30)
    assert usb.startswith("v4l2src device=/dev/video1 ! video/x-raw,width=640,height=480,framerate=30/1")
    assert "latency=0" in rtsp_pipeline("rtsp://cam/stream") and "drop=true max-buffers=1" in rtsp_pipeline("rtsp://x")
    assert parse_source("csi://1").attempts[0][1][1] == cv2.CAP_GSTREAMER
    assert parse_source("0", gstreamer=False).attempts[0][1] == (0, cv2.CAP_V4L2)
    assert parse_source("/dev/video2", gstreamer=True).attempts[0][1][0].startswith("v4l2src device=/dev/video2")
    raw = parse_source("videotestsrc num-buffers=5 ! video/x-raw,width=320,height=240").attempts[0][1][0]
    assert raw.endswith("appsink drop=true max-buffers=1 sync=false")
    assert parse_source("rtsp://cam/s", gstreamer=True).attempts[0][1][0].startswith("rtspsrc location=rtsp://cam/s")


@pytest.mark.skipif(not has_gstreamer(), reason="this OpenCV has no GStreamer (pip's wheels do not); "
                                                "tests/test_system_python.py runs the GStreamer source with "
                                                "Debian's python3-opencv instead")
def test_videotestsrc_through_gstreamer(tmp_path, demo_model):
    _, onnx_path, _ = demo_model
    proc = app("--model", onnx_path, "--source", "videotestsrc num-buffers=20 ! video/x-raw,width=320,height=240",
               "--headless", "--json", tmp_path / "g.jsonl", "--max-frames", "10")
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    assert len((tmp_path / "g.jsonl").read_text().splitlines()) >= 5


def test_source_that_cannot_be_opened_is_one_clear_error(tmp_path, demo_model):
    _, onnx_path, _ = demo_model
    proc = app("--model", onnx_path, "--source", "/dev/video63", "--headless")
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 2
    assert err.strip().startswith("error: cannot open --source /dev/video63; tried: ") and "V4L2" in err
    assert len(err.strip().splitlines()) == 1
    proc = app("--model", onnx_path, "--source", tmp_path / "nope.mp4", "--headless")
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 2 and "no such file, folder or camera" in err
