"""The control API of apps/camera.py --config (issue #27), against the real app and its server: hostile input
refused with the right status and nothing reaching the file system; a stream added, a zone patched, FP32
swapped for INT8, a swap to other class names refused, the first stream deleted, each answered right and
written back; a restart from the written file comes back with the same streams and zones; SIGHUP reloads.
The runtime behind the API (stalls, detections) is tests/test_box_runner.py's."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

import cv2
import pytest

from tests.mjpeg_server import MjpegCamera

ROOT = Path(__file__).resolve().parents[1]
TOKEN = "s3cret-token"
ZONE = {"coordinates": "normalized", "zones": [{"name": "left", "polygon": [[0, 0], [0.5, 0], [0.5, 1], [0, 1]]}]}


class BoxApp:
    """apps/camera.py --config running, its output lines collected; ``call`` speaks to its server."""

    def __init__(self, config: Path, *flags: str, env: Optional[Dict[str, str]] = None) -> None:
        self.proc = subprocess.Popen([sys.executable, "apps/camera.py", "--config", str(config), *flags],
                                     cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                     env=None if env is None else dict(os.environ, **env))
        self.lines: List[str] = []
        self.running = threading.Event()
        self.url = ""
        threading.Thread(target=self._read, daemon=True).start()
        if not self.running.wait(120):
            self.stop()
            raise AssertionError("the box did not start: " + "".join(self.lines[-20:]))

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line)
            found = re.search(r"web view: (http://[^/]+)/", line)
            if found:
                self.url = found.group(1)
            if line.startswith("box: running"):
                self.running.set()
        self.running.set()  # (ended: the waiter finds no URL)

    def call(self, method: str, path: str, body: Any = None, token: Optional[str] = TOKEN,
             raw: Optional[bytes] = None) -> Tuple[int, Any]:
        data = raw if raw is not None else None if body is None else json.dumps(body).encode()
        headers = {"Authorization": f"Bearer {token}"} if token is not None else {}
        request = urllib.request.Request(self.url + path, data=data, method=method, headers=headers)
        try:
            with urllib.request.urlopen(request, timeout=60) as answer:
                status, text = answer.status, answer.read()
        except urllib.error.HTTPError as exc:
            status, text = exc.code, exc.read()
        try:
            return status, json.loads(text)
        except ValueError:
            return status, text.decode("utf-8", "replace")

    def streams(self) -> Dict[str, Dict[str, Any]]:
        status, answer = self.call("GET", "/api/streams")
        assert status == 200, answer
        return {entry["name"]: entry for entry in answer["streams"]}

    def wait_frames(self, name: str, count: int, within_s: float = 30.0) -> None:
        deadline = time.monotonic() + within_s
        while self.streams().get(name, {}).get("frames", 0) < count:
            assert time.monotonic() < deadline, f"stream {name}: fewer than {count} frames in {within_s} s"
            time.sleep(0.1)  # (polling the API is what a client does; there is no event to wait on)

    def stop(self) -> str:
        self.proc.send_signal(signal.SIGTERM)
        self.proc.wait(60)
        return "".join(self.lines)


@pytest.fixture(scope="module")
def camera(demo_data):
    """An MJPEG camera on 127.0.0.1 showing a demo image (shapes the model finds), for as long as asked."""
    image = cv2.imread(str(sorted((demo_data / "VOCdevkit/VOC2007/JPEGImages").glob("*.jpg"))[0]))
    with MjpegCamera(image, frames_per_connection=10 ** 6, fps=15.0) as server:
        yield server.url


@pytest.fixture(scope="module")
def box(tmp_path_factory, demo_irs, camera):
    """The app from a configuration of one model (FP32 IR) and one stream, writing API changes back."""
    folder = tmp_path_factory.mktemp("box")
    config = folder / "box.yaml"
    config.write_text(f"models:\n  shapes: {{path: {demo_irs['fp32']}}}\n"
                      f"streams:\n  - {{name: door, source: '{camera}'}}\n"
                      f"webview: {{port: 0, token: {TOKEN}}}\n")
    app = BoxApp(config, "--config-writeback", "--headless")
    try:
        assert app.url, "".join(app.lines)
        yield app, config
    finally:
        app.stop()


def renamed_ir(xml: Path, folder: Path) -> Path:
    """The IR ``xml`` with other class names in its metadata (the same network and input: only the names
    differ, so the swap is refused for them)."""
    import dataclasses

    import openvino as ov

    from export.openvino_build import save_ir
    from runtimes.metadata import METADATA_KEY
    from runtimes.metadata_io import ir_metadata

    model = ov.Core().read_model(str(xml))
    meta = ir_metadata(model, str(xml))
    names = ["background"] + [f"k{i}" for i in range(1, len(meta.class_names))]
    model.set_rt_info(dataclasses.replace(meta, class_names=names).to_json(), [METADATA_KEY])
    save_ir(model, folder / "renamed.xml", compress_to_fp16=False)
    return folder / "renamed.xml"


def files_under(folder: Path) -> Dict[str, Tuple[int, int]]:
    return {str(p.relative_to(folder)): (p.stat().st_size, p.stat().st_mtime_ns) for p in folder.rglob("*")}


def test_hostile_requests_are_refused_and_reach_no_file(box, camera, demo_irs, tmp_path_factory):
    app, config = box
    before = files_under(config.parent)
    probe = tmp_path_factory.mktemp("probe")  # where a request tries to make the box write
    assert app.call("GET", "/api/config", token=None)[0] == 401
    assert app.call("GET", "/api/streams", token="wrong")[0] == 401
    assert app.call("POST", "/api/streams", {"name": "x", "source": camera}, token="wrong")[0] == 401

    status, answer = app.call("POST", "/api/streams", raw=b'{"name": "x", "source": ')
    assert status == 400 and answer["error"].startswith("the body is not JSON: Expecting value at line 1")
    for raw, words in ((b"[1, 2]", "must be a JSON object, got an array"), (b"", "the body is empty"),
                       (b'{"name": "x", "name": "y"}', "'name' is given twice"),
                       (b'{"score_threshold": NaN}', "NaN is not a JSON number"),
                       (b"\xff\xfe{}", "not UTF-8")):
        status, answer = app.call("POST", "/api/streams", raw=raw)
        assert status == 400 and words in answer["error"], (raw, answer)

    for source in (str(probe / "x.mp4"), f"videotestsrc ! x264enc ! filesink location={probe}/x.h264",
                   f"file://{probe}/x.mp4", "ftp://127.0.0.1/x", 7):
        status, answer = app.call("POST", "/api/streams", {"name": "x", "source": source})
        assert status == 400 and "the API opens cameras and streams only" in answer["error"], (source, answer)
    status, answer = app.call("POST", "/api/streams", {"name": "x", "source": camera, "zones": "/etc/hostname"})
    assert status == 400 and answer["error"].startswith("zones: give the zones and lines inline")
    status, answer = app.call("POST", "/api/models/shapes", {"path": f"{probe}/../m.xml"})
    assert status == 400 and "without '..'" in answer["error"]
    status, answer = app.call("POST", "/api/models/shapes", {"path": str(demo_irs["int8"]),
                                                             "options": {"CACHE_DIR": str(probe)}})
    assert status == 400 and answer["error"].startswith("options.CACHE_DIR: an option naming a file"), answer

    for name in ("..%2F..%2Fetc", "a%2Fb", "..", "%2E%2E", "a%01b", "a%5Cb"):
        status, answer = app.call("DELETE", f"/api/streams/{name}")
        assert status == 400 and "is refused" in answer["error"], (name, answer)
    for name in ("../../x", "a\nb"):
        status, answer = app.call("POST", "/api/streams", {"name": name, "source": camera})
        assert status == 400 and answer["error"].startswith("name: a stream name with"), answer
    status, answer = app.call("PATCH", "/api/streams/door", {"source": camera})
    assert status == 400 and "changes only zones, score_threshold, keep_classes" in answer["error"]
    status, answer = app.call("POST", "/api/streams", raw=b" " * (256 * 1024 + 1))
    assert status == 413 and "at most 262144" in answer
    status, answer = app.call("PATCH", "/api/streams/nothere", {"score_threshold": 0.5})
    assert status == 404 and "nothere" in answer["error"]

    assert list(app.streams()) == ["door"]
    assert files_under(config.parent) == before and not any(probe.iterdir())


def test_the_api_drives_the_box_and_the_file_follows(box, camera, demo_irs, tmp_path):
    app, config = box
    status, shown = app.call("GET", "/api/config")
    assert status == 200 and shown["webview"]["token"] == "<redacted>" and TOKEN not in json.dumps(shown)
    printed = [line for line in app.lines if line.startswith("configuration: ")]
    assert len(printed) == 1 and json.loads(printed[0][len("configuration: "):]) == shown  # at start, redacted
    assert not any(TOKEN in line for line in app.lines)

    status, added = app.call("POST", "/api/streams", {"name": "yard", "source": camera})
    assert status == 201 and added["name"] == "yard" and added["source"] == camera
    app.wait_frames("yard", 3)
    status, _ = app.call("GET", "/snapshot/yard.jpg")
    assert status == 200  # the web view serves a stream added at run time

    status, patched = app.call("PATCH", "/api/streams/yard", {"zones": ZONE})
    assert status == 200 and patched["zones"] == ZONE

    status, swapped = app.call("POST", "/api/models/shapes", {"path": str(demo_irs["int8"])})
    assert status == 200, swapped
    status, refused = app.call("POST", "/api/models/shapes", {"path": str(renamed_ir(demo_irs["int8"], tmp_path))})
    assert status == 422 and "class_map" in refused["error"], refused
    assert app.call("GET", "/api/config")[1]["models"]["shapes"]["path"] == str(demo_irs["int8"])  # kept

    viewer = urllib.request.urlopen(f"{app.url}/stream/door.mjpg?token={TOKEN}", timeout=30)
    watching = threading.Thread(target=viewer.read)  # until the stream ends
    watching.start()
    status, summary = app.call("DELETE", "/api/streams/door")
    assert status == 200 and summary["frames"] > 0
    watching.join(10)
    assert not watching.is_alive(), "a viewer of the removed stream is still being served"
    assert [s["name"] for s in app.call("GET", "/api/state")[1]["streams"]] == ["yard"]
    assert app.call("DELETE", "/api/streams/door")[0] == 404
    streams = app.streams()
    assert list(streams) == ["yard"] and streams["yard"]["zones"] == ZONE
    before = streams["yard"]["frames"]
    app.wait_frames("yard", before + 3)  # still running after the swap, the refusal and the removal

    import yaml

    written = yaml.safe_load(config.read_text())
    assert written["models"]["shapes"]["path"] == str(demo_irs["int8"])
    assert [(s["name"], s.get("zones")) for s in written["streams"]] == [("yard", ZONE)]
    assert written["webview"]["token"] == TOKEN  # the file keeps its secret; only what is shown is redacted
    assert oct(config.stat().st_mode & 0o777) == oct(0o644 & ~_umask())  # the file's mode kept


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def test_a_restart_from_the_written_file_comes_back_the_same_and_reloads(box, tmp_path):
    """Restarted as systemd starts it (READY=1, the watchdog fed), from the file the first run wrote; then the
    file edited and SIGHUP sent; then a bad file, which a reload refuses and the box outlives."""
    app, config = box
    shown = app.call("GET", "/api/config")[1]
    streams = {name: entry["zones"] for name, entry in app.streams().items()}
    app.stop()
    notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    notify.bind(str(tmp_path / "notify"))
    notify.settimeout(30)
    again = BoxApp(config, "--config-writeback", "--headless",
                   env={"NOTIFY_SOCKET": str(tmp_path / "notify"), "WATCHDOG_USEC": "400000"})
    try:
        assert {name: entry["zones"] for name, entry in again.streams().items()} == streams
        assert again.call("GET", "/api/config")[1] == shown
        messages = [notify.recv(4096).decode() for _ in range(4)]  # READY, then STATUS and WATCHDOG each 0.2 s
        assert messages[0].startswith("READY=1") and "WATCHDOG=1" in messages

        config.write_text(config.read_text().replace("  model: shapes\n", "  model: shapes\n  score_threshold: 0.5\n"))
        again.proc.send_signal(signal.SIGHUP)
        deadline = time.monotonic() + 30  # the line is logged once the reload has returned, so wait for it first
        while not any(line.startswith("SIGHUP: reloaded") for line in again.lines):
            assert time.monotonic() < deadline, "".join(again.lines[-10:])
            time.sleep(0.1)
        assert again.streams()["yard"]["score_threshold"] == 0.5
        assert again.call("POST", "/api/reload") == (200, {"changes": "no change", "restart_needed": []})

        config.write_text(config.read_text().replace("score_threshold: 0.5", "score_threshold: lots"))
        status, answer = again.call("POST", "/api/reload")
        assert status == 400 and "streams[0].score_threshold" in answer["error"], answer
        assert again.streams()["yard"]["score_threshold"] == 0.5  # the running configuration kept
    finally:
        again.stop()
        notify.close()


def test_without_a_configuration_503_and_one_change_at_a_time():
    """The API layer alone: 503 until a control is set; then, while one change is under way, another is
    refused at once (503, Retry-After) and reads and /healthz are still answered. The control here blocks
    until released, which the real box cannot be made to do on cue (its side is test_box_runner's)."""
    from webview.live import LiveView

    release, entered = threading.Event(), threading.Event()

    class SlowBox:
        def list_streams(self) -> list:
            return [{"name": "cam0"}]

        def reload(self) -> dict:
            entered.set()
            release.wait(30)
            return {"changes": "no change", "restart_needed": []}

    def call(method: str, path: str) -> Tuple[int, Dict[str, str], Any]:
        request = urllib.request.Request(view.url + path.lstrip("/"), method=method, data=b"" if method == "POST"
                                         else None)
        try:
            with urllib.request.urlopen(request, timeout=30) as answer:
                return answer.status, dict(answer.headers), json.loads(answer.read())
        except urllib.error.HTTPError as exc:
            return exc.code, dict(exc.headers), json.loads(exc.read())

    view = LiveView(["cam0"], serve=("127.0.0.1", 0), log=lambda _: None)
    try:
        status, _, answer = call("GET", "/api/streams")
        assert status == 503 and answer["error"].endswith("start the camera with --config FILE")
        view.set_control(SlowBox())
        first: List[Any] = []
        worker = threading.Thread(target=lambda: first.append(call("POST", "/api/reload")))
        worker.start()
        assert entered.wait(30)
        status, headers, answer = call("POST", "/api/reload")
        assert status == 503 and headers["Retry-After"] == "2" and "another change is under way" in answer["error"]
        assert call("GET", "/api/streams")[:3:2] == (200, {"streams": [{"name": "cam0"}]})
        assert call("GET", "/healthz")[0] == 503  # answered (no status reported: failing, honestly)
        release.set()
        worker.join(30)
        assert first[0][0] == 200 and call("POST", "/api/reload")[0] == 200  # free again
    finally:
        release.set()
        view.close()


def test_two_models_pipelines_report_apart_and_the_health_sees_the_whole_box():
    """Each model's pipeline reports only its streams; merged, neither half fails /healthz, and a pipeline
    that stops reporting has its streams failed once its last report is older than the time-out."""
    from box.observers import MergedStatuses
    from webview.live import LiveView

    view = LiveView(["a", "b"], status_timeout_s=5.0)
    observer = MergedStatuses(view, stale_s=0.3)
    alive = {"alive": True, "frames": 1}
    observer.on_status({"a": alive})
    observer.on_status({"b": alive})
    observer.on_status({"a": alive})
    assert view.health()[0], view.health()
    time.sleep(0.4)  # (the time-out itself is what is tested)
    observer.on_status({"a": alive})
    assert view.health()[1]["failing"] == {"b": "no status for this stream"}
    observer.on_stream_removed("b")
    assert view.health()[0] and view.health()[1]["streams"] == ["a"]
