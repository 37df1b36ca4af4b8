"""The live page in a real browser: Debian's headless Chromium, driven over the DevTools protocol (on a pipe, so
no extra client library), loads the page from a LiveView fed with the demo detector's annotated frames. Skipped,
with the reason, where /usr/bin/chromium is missing (apt install chromium).

SSD_EDGE_WEBVIEW_SCREENSHOT=docs/webview/screenshot.png writes the screenshot there (palette PNG, small)."""

from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, Dict, List, Optional

import cv2
import numpy as np
import pytest

pytest.importorskip("prometheus_client")
from tests.test_webview import TOKEN, annotated_run, generated_video, start_view

CHROMIUM = "/usr/bin/chromium"
VIEWPORT = (1040, 720)
SIZES = {"door": (400, 300), "yard": (400, 300)}


class DevTools:
    """Chromium with --remote-debugging-pipe: JSON messages, NUL-terminated, on fds 3 (to it) and 4 (from it)."""

    def __init__(self, profile: Path) -> None:
        to_child_r, self._to_child = os.pipe()
        self._from_child, from_child_w = os.pipe()

        def wire() -> None:  # in the child, before exec: the pipe ends become fds 3 and 4
            os.dup2(to_child_r, 3)
            os.dup2(from_child_w, 4)

        self.log = open(profile / "chromium.log", "wb")
        self.proc = subprocess.Popen(
            [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
             "--disable-background-networking", "--disable-component-update", "--disable-sync",
             "--disable-extensions", "--mute-audio", f"--user-data-dir={profile}", "--remote-debugging-pipe",
             f"--window-size={VIEWPORT[0]},{VIEWPORT[1]}", "about:blank"],
            stdin=subprocess.DEVNULL, stdout=self.log, stderr=self.log, preexec_fn=wire, pass_fds=(3, 4))
        os.close(to_child_r)
        os.close(from_child_w)
        self._next_id = 0
        self._replies: Dict[int, dict] = {}
        self._cond = threading.Condition()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        self.session: Optional[str] = None

    def _read(self) -> None:
        buffer = b""
        while True:
            chunk = os.read(self._from_child, 1 << 16)
            if not chunk:
                break
            buffer += chunk
            while b"\0" in buffer:
                raw, buffer = buffer.split(b"\0", 1)
                message = json.loads(raw)
                if "id" in message:
                    with self._cond:
                        self._replies[message["id"]] = message
                        self._cond.notify_all()

    def call(self, method: str, timeout: float = 30.0, **params: Any) -> dict:
        self._next_id += 1
        key = self._next_id
        message: Dict[str, Any] = {"id": key, "method": method, "params": params}
        if self.session and not method.startswith("Target."):
            message["sessionId"] = self.session
        os.write(self._to_child, json.dumps(message).encode() + b"\0")
        deadline = time.monotonic() + timeout
        with self._cond:
            while key not in self._replies:
                left = deadline - time.monotonic()
                assert left > 0, f"Chromium did not answer {method} within {timeout} s"
                self._cond.wait(left)
            reply = self._replies.pop(key)
        assert "error" not in reply, f"{method}: {reply['error']}"
        return reply["result"]

    def open(self, url: str) -> None:
        target = self.call("Target.createTarget", url="about:blank")["targetId"]
        self.session = self.call("Target.attachToTarget", targetId=target, flatten=True)["sessionId"]
        self.call("Emulation.setDeviceMetricsOverride", width=VIEWPORT[0], height=VIEWPORT[1], deviceScaleFactor=1,
                  mobile=False)
        self.call("Page.enable")
        self.call("Page.navigate", url=url)

    def evaluate(self, expression: str) -> Any:
        result = self.call("Runtime.evaluate", expression=expression, returnByValue=True)
        assert "exceptionDetails" not in result, result["exceptionDetails"]
        return result["result"].get("value")

    def screenshot(self) -> bytes:
        return base64.b64decode(self.call("Page.captureScreenshot", format="png")["data"])

    def close(self) -> None:
        try:
            self.call("Browser.close", timeout=5)
        except AssertionError:
            pass
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        os.close(self._to_child)
        self.log.close()


TILES_JS = """[...document.querySelectorAll('.tile')].map(t => {
  const img = t.querySelector('img.video'); const r = img.getBoundingClientRect();
  return {name: t.dataset.stream, frame: Number(t.dataset.frame), text: t.innerText,
          decoded: img.complete && img.naturalWidth, natural: [img.naturalWidth, img.naturalHeight],
          rect: [r.left, r.top, r.width, r.height]};
})"""


@pytest.fixture(scope="module")
def clips(demo_model, demo_data, tmp_path_factory) -> Dict[str, List]:
    folder = tmp_path_factory.mktemp("browser")
    images = sorted((demo_data / "VOCdevkit/VOC2007/JPEGImages").glob("*.jpg"))[-60:]
    return {name: annotated_run(demo_model[1], generated_video(folder / f"{name}.avi", images[k * 30:], size, 12),
                                name)
            for k, (name, size) in enumerate(SIZES.items())}


def test_chromium_shows_live_tiles_with_stats_and_a_frame_counter_that_advances(clips, tmp_path):
    if not Path(CHROMIUM).exists():
        pytest.skip(f"{CHROMIUM} is missing (apt install chromium)")
    view = start_view(["--serve", "127.0.0.1:0", "--serve-token", TOKEN], names=list(SIZES))
    stop = threading.Event()
    pushed = {name: 0 for name in SIZES}

    def feed() -> None:  # the pipeline's output thread: annotated frames at ~10 FPS, a status every second
        last_status = 0.0
        while not stop.is_set():
            for name, clip in clips.items():
                frame, record = clip[pushed[name] % len(clip)]
                events = [{"type": "line_crossed", "line": "line", "direction": "in", "track": pushed[name] // 7,
                           "class": "star"}] if name == "door" and pushed[name] % 7 == 3 else []
                view.on_frame(name, frame, dict(record, frame=pushed[name], events=events))
                pushed[name] += 1
            if time.monotonic() - last_status > 1.0:
                view.on_status({name: {"name": name, "frames": pushed[name], "fps": 10.0, "latency_p50_ms": 21.5,
                                       "latency_p95_ms": 34.25, "dropped_stale_frames": 2, "reopens": 0,
                                       "alive": True, "error": None, "events_sent": pushed[name] // 7,
                                       "events_failed": 0,
                                       "counts": {"line": {"in": 3, "out": 1}} if name == "door" else None}
                                for name in SIZES})
                last_status = time.monotonic()
            time.sleep(0.1)

    feeder = threading.Thread(target=feed, daemon=True)
    feeder.start()
    profile = Path(tempfile.mkdtemp(prefix="chromium-profile-"))
    browser = DevTools(profile)
    try:
        browser.open(f"{view.url}?token={TOKEN}")
        deadline = time.monotonic() + 30
        tiles: List[dict] = []
        while time.monotonic() < deadline:
            tiles = browser.evaluate(TILES_JS) or []
            if len(tiles) == 2 and all(t["decoded"] and t["frame"] >= 0 for t in tiles):
                break
            time.sleep(0.2)
        assert [t["name"] for t in tiles] == list(SIZES), tiles
        assert all(t["decoded"] for t in tiles), "the MJPEG video never showed"
        first_png = browser.screenshot()
        first = {t["name"]: t["frame"] for t in browser.evaluate(TILES_JS)}
        time.sleep(1.5)
        second_png = browser.screenshot()
        tiles = browser.evaluate(TILES_JS)
        second = {t["name"]: t["frame"] for t in tiles}
        health = browser.evaluate("document.getElementById('health').textContent")
    finally:
        browser.close()
        stop.set()
        feeder.join()
        view.close()
        shutil.rmtree(profile, ignore_errors=True)

    assert all(second[name] > first[name] >= 0 for name in SIZES), (first, second)  # the counter advances
    assert health == "healthy"
    for tile in tiles:
        assert tile["natural"] == list(SIZES[tile["name"]])  # the browser decoded frames of the stream's size
        for text in ("FPS", "10.0", "p50", "21.5 ms", "34.3 ms", "stale dropped", f"frame {second[tile['name']]}"):
            assert text in tile["text"], (text, tile["text"])
    assert "line.in: 3" in tiles[0]["text"] and "line.in" not in tiles[1]["text"]  # counts where there are some
    assert "recent events" in tiles[0]["text"] and "line_crossed line=\"line\" direction=\"in\"" in tiles[0]["text"]

    shots = []
    for png in (first_png, second_png):
        shot = cv2.imdecode(np.frombuffer(png, np.uint8), cv2.IMREAD_COLOR)
        assert shot is not None
        shots.append(shot)
    assert shots[0].shape == (VIEWPORT[1], VIEWPORT[0], 3)
    for tile in tiles:
        x, y, w, h = (int(round(v)) for v in tile["rect"])
        assert w > 200 and h > 100 and y + h // 2 < VIEWPORT[1]  # on screen
        crops = [shot[y:min(y + h, VIEWPORT[1]), x:x + w] for shot in shots]
        assert crops[0].std() > 20 and 20 < crops[0].mean() < 235  # real video, not a blank or black box
        assert np.abs(crops[0].astype(np.int16) - crops[1].astype(np.int16)).mean() > 2  # and it moves
    (tmp_path / "webview.png").write_bytes(second_png)
    target = os.environ.get("SSD_EDGE_WEBVIEW_SCREENSHOT")
    if target:
        from PIL import Image

        Image.open(tmp_path / "webview.png").convert("RGB").quantize(colors=128).save(target, optimize=True)
