"""apps/camera.py --serve as a user runs it: two generated videos (one short, one long, paced with --realtime),
the demo model, a real HTTP client against the app's own server; the metrics against the app's summary."""

from __future__ import annotations

import http.client
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Dict, Tuple

import cv2
import numpy as np
import pytest

pytest.importorskip("prometheus_client")
from prometheus_client.parser import text_string_to_metric_families

from tests.test_webview import generated_video

ROOT = Path(__file__).resolve().parents[1]
TOKEN = "app-token"
SHORT, LONG = 20, 400  # frames; at 10 FPS the long stream outlives every check below


def _get(port: int, path: str) -> Tuple[int, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request("GET", path, headers={"Authorization": f"Bearer {TOKEN}"})
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


def _frames(port: int) -> Dict[str, float]:
    code, body = _get(port, "/metrics")
    assert code == 200
    return {s.labels["stream"]: s.value for family in text_string_to_metric_families(body.decode())
            for s in family.samples if s.name == "ssd_edge_frames_total"}


def _app(*args: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "apps/camera.py", *map(str, args)], cwd=ROOT, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            env=dict(os.environ, PYTHONUNBUFFERED="1"))


def test_the_app_serves_metrics_that_match_its_summary_and_health_that_names_an_ended_stream(
        demo_model, demo_data, tmp_path):
    images = sorted((demo_data / "VOCdevkit/VOC2007/JPEGImages").glob("*.jpg"))[-40:]
    sources = tmp_path / "cameras.txt"
    short = generated_video(tmp_path / "short.avi", images, (320, 240), SHORT)
    long = generated_video(tmp_path / "long.avi", images[20:], (480, 360), LONG)
    sources.write_text(f"gate={short}\nyard={long}\n")
    proc = _app("--model", demo_model[1], "--sources", sources, "--headless", "--realtime",
                "--score-threshold", "0.4", "--serve", "127.0.0.1:0", "--serve-token", TOKEN)
    try:
        port = 0
        seen = []
        deadline = time.monotonic() + 120
        while not port and time.monotonic() < deadline:
            line = proc.stdout.readline()  # type: ignore[union-attr]  # a pipe
            if not line:
                break
            seen.append(line)
            found = re.search(r"web view: http://127\.0\.0\.1:(\d+)/", line)
            port = int(found.group(1)) if found else 0
        assert port, "".join(seen) + proc.stderr.read()  # type: ignore[union-attr]
        assert _get(port, "/")[0] == 200 and b"/static/app.js" in _get(port, "/")[1]
        # the short stream ends after 2 s; the long one keeps going: /healthz names the ended one
        health: dict = {}
        while time.monotonic() < deadline:
            code, body = _get(port, "/healthz")
            health = json.loads(body)
            if code == 503 and list(health["failing"]) == ["gate"]:
                break
            time.sleep(0.3)
        assert list(health["failing"]) == ["gate"] and "yard" in health["streams"], health
        gate_frames = _frames(port)["gate"]
        code, jpeg = _get(port, "/snapshot/yard.jpg")
        image = cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR)
        assert code == 200 and image is not None and image.shape == (360, 480, 3)
        time.sleep(1.0)
        yard_before_stop = _frames(port)["yard"]
        assert yard_before_stop > 0
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0, err
    assert "Traceback" not in err
    summary = json.loads(out.strip().splitlines()[-1][len("summary: "):])
    assert gate_frames == summary["streams"]["gate"]["frames"] > 0  # the ended stream: exact
    assert yard_before_stop <= summary["streams"]["yard"]["frames"] < LONG  # stopped while it still ran


def test_a_busy_port_stops_the_app_with_one_line(demo_model, demo_data, tmp_path):
    images = sorted((demo_data / "VOCdevkit/VOC2007/JPEGImages").glob("*.jpg"))[-5:]
    video = generated_video(tmp_path / "in.avi", images, (160, 120), 5)
    busy = socket.socket()
    busy.bind(("127.0.0.1", 0))
    busy.listen()
    port = busy.getsockname()[1]
    try:
        proc = _app("--model", demo_model[1], "--source", video, "--headless", "--serve", str(port))
        out, err = proc.communicate(timeout=120)
    finally:
        busy.close()
    assert proc.returncode == 2 and "Traceback" not in err
    assert err.strip().splitlines() == [f"error: --serve 127.0.0.1:{port}: port {port} is already in use; "
                                        f"stop what listens there or choose another port"]
