"""apps/camera.py with ``--model http://...``: a video file through the camera app, the network on a real
Triton server (apps/serve.py on free 127.0.0.1 ports), the records equal to the local detector's."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import cv2
import pytest

from runtimes.loader import load_detector
from tests.matching import assert_record_matches

pytest.importorskip("tritonclient.http", reason="tritonclient is not installed: pip install 'tritonclient[http,grpc]'")

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def server(demo_model):
    from serving.process import SERVER_PYTHON, ServerProcess

    unavailable = ROOT / ".cache" / "triton-venv.unavailable"
    if unavailable.is_file() or not SERVER_PYTHON.is_file():
        reason = unavailable.read_text().strip() if unavailable.is_file() else "run bash .ci/triton_env.sh"
        pytest.skip(f"no Triton server environment: {reason}")
    srv = ServerProcess(demo_model[1], name="demo")
    yield srv
    srv.stop()


@pytest.mark.parametrize("scheme", ["http", "grpc"])
def test_camera_app_on_a_video_file_with_a_served_model(server, demo_model, demo_data, tmp_path, scheme):
    images = sorted((demo_data / "VOCdevkit/VOC2007/JPEGImages").glob("*.jpg"))[-20:]
    video = tmp_path / "in.avi"
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter.fourcc(*"MJPG"), 10.0, (480, 360))
    for path in images:
        writer.write(cv2.resize(cv2.imread(str(path)), (480, 360)))
    writer.release()

    proc = subprocess.run([sys.executable, "apps/camera.py", "--model", server.url(scheme), "--source", str(video),
                           "--headless", "--json", str(tmp_path / "out.jsonl"), "--score-threshold", "0.3"],
                          cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    records = [json.loads(line) for line in (tmp_path / "out.jsonl").read_text().splitlines()]
    assert [r["frame"] for r in records] == list(range(20))

    local = load_detector(demo_model[1], score_threshold=0.3)
    source = cv2.VideoCapture(str(video))
    with_objects = 0
    for record in records:
        ok, frame = source.read()
        assert ok
        got = record["detections"]
        assert_record_matches(got, local(frame), box_atol=1e-3, score_atol=None)
        with_objects += bool(got)
    assert with_objects >= 15
