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

from tests.hostile_clients import Attack
from tests.test_webview import generated_video
from webview.gate import POLL_S, Limits

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


def _settled_frames(port: int, stream: str, deadline: float) -> float:
    """The stream's ssd_edge_frames_total once it no longer changes: the pipeline can report an ended stream
    (and /healthz name it) while its last frames are still on their way to the view."""
    last = -1.0
    while time.monotonic() < deadline:
        now = _frames(port)[stream]
        if now == last:
            return now
        last = now
        time.sleep(1.0)
    return last


def _app(*args: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "apps/camera.py", *map(str, args)], cwd=ROOT, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            env=dict(os.environ, PYTHONUNBUFFERED="1"))


def _serving_port(proc: subprocess.Popen, deadline: float) -> int:
    """The port of the app's web view, from its "web view: URL" line."""
    seen = []
    while time.monotonic() < deadline:
        line = proc.stdout.readline()  # type: ignore[union-attr]  # a pipe
        if not line:
            break
        seen.append(line)
        found = re.search(r"web view: http://127\.0\.0\.1:(\d+)/", line)
        if found:
            return int(found.group(1))
    raise AssertionError("".join(seen) + proc.stderr.read())  # type: ignore[union-attr]


def _stop(proc: subprocess.Popen) -> Tuple[str, str]:
    """SIGTERM, then the app's output; killed if it does not end."""
    try:
        proc.send_signal(signal.SIGTERM)
        return proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()


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
        deadline = time.monotonic() + 120
        port = _serving_port(proc, deadline)
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
        gate_frames = _settled_frames(port, "gate", deadline)
        code, jpeg = _get(port, "/snapshot/yard.jpg")
        image = cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR)
        assert code == 200 and image is not None and image.shape == (360, 480, 3)
        time.sleep(1.0)
        yard_before_stop = _frames(port)["yard"]
        assert yard_before_stop > 0
    finally:
        out, err = _stop(proc)
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


HEADER_TIMEOUT_S = 3.0  # the app's --serve-header-timeout in the test below: short, so is the test
IDLE, SLOW = 300, 70  # the probe


def test_the_app_under_idle_and_slow_header_sockets_answers_health_with_bounded_threads_and_closes_them(
        demo_model, demo_data, tmp_path):
    images = sorted((demo_data / "VOCdevkit/VOC2007/JPEGImages").glob("*.jpg"))[-20:]
    video = generated_video(tmp_path / "yard.avi", images, (320, 240), LONG)
    proc = _app("--model", demo_model[1], "--source", video, "--headless", "--realtime", "--score-threshold", "0.4",
                "--serve", "127.0.0.1:0", "--serve-token", TOKEN, "--serve-header-timeout", HEADER_TIMEOUT_S)
    try:
        deadline = time.monotonic() + 120
        port = _serving_port(proc, deadline)
        while _get(port, "/healthz")[0] != 200 and time.monotonic() < deadline:
            time.sleep(0.2)  # the stream's first status
        threads_before = len(os.listdir(f"/proc/{proc.pid}/task"))
        attack = Attack(port, idle=IDLE, slow=SLOW, interval_s=1.0)
        try:
            started = time.monotonic()
            code, body = _get(port, "/healthz")
            assert code == 200 and json.loads(body)["status"] == "ok"
            assert attack.open == IDLE + SLOW  # answered while every one of them was still open
            assert time.monotonic() - started < HEADER_TIMEOUT_S
            threads = len(os.listdir(f"/proc/{proc.pid}/task"))
            assert threads <= threads_before + Limits().quick_threads, (threads_before, threads)  # none per socket
            assert attack.wait_closed(HEADER_TIMEOUT_S + POLL_S + 5.0)  # room for a busy machine
            assert min(attack.lifetimes) >= HEADER_TIMEOUT_S - 0.1  # by the deadline, none earlier
            assert _get(port, "/healthz")[0] == 200
        finally:
            attack.stop()
    finally:
        out, err = _stop(proc)
    assert proc.returncode == 0 and "Traceback" not in err, err
