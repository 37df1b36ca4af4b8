"""The live view (webview/) with real parts: frames of a generated video through the demo detector and the overlay,
the real HTTP server on a free 127.0.0.1 port, a real HTTP client, prometheus-client's own parser."""

from __future__ import annotations

import argparse
import http.client
import json
import socket
import struct
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Dict, List, Tuple

import cv2
import numpy as np
import pytest

from runtimes.errors import UserError
from tests.test_camera import write_video

pytest.importorskip("prometheus_client")
from prometheus_client.parser import text_string_to_metric_families

from webview.cli import add_arguments, from_args, parse_host_port, parse_rtsp_out
from webview.live import LiveView

ROOT = Path(__file__).resolve().parents[1]
TOKEN = "s3cret-token"
STREAMS = {"cam0": (480, 360), "cam1": (320, 240)}  # name -> (width, height)
FRAMES = 16


def generated_video(path: Path, images: List[Path], size: Tuple[int, int], count: int) -> Path:
    """A 10 FPS video of ``count`` frames cycling through ``images``."""
    return write_video(path, [images[i % len(images)] for i in range(count)], size)


def annotated_run(onnx: Path, video: Path, stream: str, limit: int = 0):
    """(annotated frame, record) per frame of ``video``: the real detector, the app's overlay, the brief's record."""
    from runtimes.loader import load_detector
    from streams.overlay import draw

    detector = load_detector(onnx, score_threshold=0.4)  # the model's own 0.001 would draw hundreds of boxes
    capture = cv2.VideoCapture(str(video))
    out = []
    index = 0
    started = time.monotonic()
    while not limit or index < limit:
        t0 = time.monotonic()
        ok, frame = capture.read()
        if not ok:
            break
        dets = detector(frame)
        timings = dict(capture=time.monotonic() - t0, **detector.last_timings)
        t1 = time.perf_counter()
        draw(frame, dets, 10.0, {k: 1000 * v for k, v in timings.items()})
        timings["draw"] = time.perf_counter() - t1
        out.append((frame, {"stream": stream, "frame": index, "timestamp": round(t0 - started, 6),
                            "detections": dets.to_list(),
                            "timings_ms": {k: round(1000 * v, 3) for k, v in timings.items()},
                            "latency_ms": round(1000 * (time.monotonic() - t0), 3)}))
        index += 1
    capture.release()
    return out


@pytest.fixture(scope="module")
def runs(demo_model, demo_data, tmp_path_factory) -> Dict[str, list]:
    """stream -> [(annotated frame, record)], from a generated video per stream (different sizes)."""
    folder = tmp_path_factory.mktemp("webview")
    images = sorted((demo_data / "VOCdevkit/VOC2007/JPEGImages").glob("*.jpg"))[-40:]
    out = {}
    for k, (name, size) in enumerate(STREAMS.items()):
        video = generated_video(folder / f"{name}.avi", images[k * 20:], size, FRAMES)
        out[name] = annotated_run(demo_model[1], video, name)
    return out


def status(name: str, frames: int, alive: bool = True, error=None, **extra) -> dict:
    return {"name": name, "frames": frames, "fps": 12.5, "latency_p50_ms": 20.0, "latency_p95_ms": 31.0,
            "dropped_stale_frames": 3, "reopens": 1, "alive": alive, "error": error, **extra}


def start_view(argv: List[str], names=tuple(STREAMS)) -> LiveView:
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    view = from_args(parser.parse_args(argv), list(names), log=lambda _line: None)
    assert view is not None
    return view


def get(view: LiveView, path: str, headers=None, method: str = "GET") -> Tuple[int, Dict[str, str], bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", view.server.port, timeout=10)
    try:
        conn.request(method, path, headers=headers or {})
        response = conn.getresponse()
        return response.status, {k.lower(): v for k, v in response.getheaders()}, response.read()
    finally:
        conn.close()


def metrics(view: LiveView) -> Dict[str, Dict[Tuple, float]]:
    """sample name -> {sorted label items: value}, parsed by prometheus-client's own parser."""
    status_code, headers, body = get(view, f"/metrics?token={TOKEN}")
    assert status_code == 200 and headers["content-type"].startswith("text/plain")
    out: Dict[str, Dict[Tuple, float]] = {}
    for family in text_string_to_metric_families(body.decode()):
        for sample in family.samples:
            out.setdefault(sample.name, {})[tuple(sorted(sample.labels.items()))] = sample.value
    return out


@pytest.fixture()
def view():
    v = start_view(["--serve", "127.0.0.1:0", "--serve-token", TOKEN])
    yield v
    v.close()


def test_frames_through_the_detector_reach_the_page_metrics_snapshots_and_health(view, runs, capfd):
    for name, frames in runs.items():
        for frame, record in frames:
            view.on_frame(name, frame, record)
    view.on_status({name: status(name, FRAMES, events_sent=7, events_failed=2, counts={"door": {"in": 4, "out": 1}})
                    for name in STREAMS})

    code, headers, page = get(view, f"/?token={TOKEN}")
    assert code == 200 and headers["content-type"].startswith("text/html")
    assert f'src="/static/app.js?token={TOKEN}"'.encode() in page and b'href="/static/app.css?token=' in page
    assert "script-src 'self'" in headers["content-security-policy"]
    code, headers, script = get(view, f"/static/app.js?token={TOKEN}")
    assert code == 200 and "javascript" in headers["content-type"] and b"/api/state" in script

    m = metrics(view)
    for name, frames in runs.items():
        label = (("stream", name),)
        assert m["ssd_edge_frames_total"][label] == FRAMES == len(frames)
        assert m["ssd_edge_detections_total"][label] == sum(len(r["detections"]) for _, r in frames) > 0
        for stage in ("capture", "preprocess", "inference", "postprocess", "draw"):
            assert m["ssd_edge_stage_seconds_count"][(("stage", stage), ("stream", name))] == FRAMES
        assert m["ssd_edge_inference_seconds_count"][label] == FRAMES
        assert m["ssd_edge_inference_seconds_sum"][label] == pytest.approx(
            sum(r["timings_ms"]["inference"] for _, r in frames) / 1000, rel=1e-6)
        assert m["ssd_edge_frame_latency_seconds_count"][label] == FRAMES
        assert m["ssd_edge_dropped_stale_frames_total"][label] == 3
        assert m["ssd_edge_reopens_total"][label] == 1
        assert m["ssd_edge_events_sent_total"][label] == 7 and m["ssd_edge_events_failed_total"][label] == 2
        assert m["ssd_edge_stream_alive"][label] == 1
        assert m["ssd_edge_count"][(("name", "door.in"), ("stream", name))] == 4

    code, _, body = get(view, f"/healthz?token={TOKEN}")
    assert code == 200 and json.loads(body)["status"] == "ok"
    view.on_status({"cam0": status("cam0", FRAMES, counts={"door": {"in": 4, "out": 1}}),
                    "cam1": status("cam1", FRAMES, alive=False, error="source lost: end of stream")})
    code, _, body = get(view, f"/healthz?token={TOKEN}")
    health = json.loads(body)
    assert code == 503 and health["status"] == "failing"
    assert list(health["failing"]) == ["cam1"] and "source lost" in health["failing"]["cam1"]
    assert metrics(view)["ssd_edge_stream_alive"][(("stream", "cam1"),)] == 0

    for name, (width, height) in STREAMS.items():
        code, headers, jpeg = get(view, f"/snapshot/{name}.jpg", {"Authorization": f"Bearer {TOKEN}"})
        assert code == 200 and headers["content-type"] == "image/jpeg"
        image = cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR)
        assert image is not None and image.shape == (height, width, 3)
        error = [np.abs(image.astype(np.int16) - f.astype(np.int16)).mean() for f, _ in runs[name][-2:]]
        assert error[1] < 8.0 and error[0] > 3 * error[1]  # JPEG's loss only, and not the frame before

    code, _, body = get(view, f"/api/state?token={TOKEN}")
    state = {s["name"]: s for s in json.loads(body)["streams"]}
    assert state["cam0"]["frame"] == FRAMES - 1 and (state["cam0"]["width"], state["cam0"]["height"]) == (480, 360)
    assert state["cam1"]["failing"].startswith("not delivering frames") and state["cam0"]["failing"] is None
    assert state["cam0"]["counts"] == {"door": {"in": 4, "out": 1}} and state["cam0"]["fps"] == 12.5
    assert capfd.readouterr().err == ""  # no per-request log lines


def test_a_wrong_or_missing_token_gets_401_and_the_right_one_passes(view, capfd):
    for path, headers in [("/", {}), ("/metrics", {}), ("/healthz?token=nope", {}),
                          ("/snapshot/cam0.jpg", {"Authorization": "Bearer nope"}),
                          ("/stream/cam0.mjpg?token=" + TOKEN[:-1], {}), ("/api/state", {"Authorization": TOKEN})]:
        code, response_headers, body = get(view, path, headers)
        assert code == 401, path
        assert response_headers["www-authenticate"] == "Bearer" and b"?token=TOKEN" in body
    assert get(view, "/metrics", {"Authorization": f"Bearer {TOKEN}"})[0] == 200
    assert get(view, f"/healthz?token={TOKEN}")[0] == 503  # no status yet: authorised, and honest
    assert capfd.readouterr().err == ""


def test_unknown_paths_and_escapes_are_404_and_nothing_else_is_served(view, capfd):
    view.on_frame("cam0", np.zeros((24, 32, 3), np.uint8), {"frame": 0})
    for path in ["/nope", "/index.html", "/static/", "/static/app.py", "/static/../../etc/passwd",
                 "/static/%2e%2e/%2e%2e/etc/passwd", "/static/..%2f..%2fetc%2fpasswd", "//etc/passwd",
                 "/static/app.js/../../server.py", "/stream/nope.mjpg", "/stream/../cam0.mjpg",
                 "/snapshot/cam0.png", "/snapshot/cam2.jpg", "/snapshot/%2e%2e%2fcam0.jpg", "/metrics/x"]:
        code, _, body = get(view, path + ("&" if "?" in path else "?") + f"token={TOKEN}")
        assert code == 404, path
        assert b"root:" not in body and b"import" not in body
    assert get(view, f"/?token={TOKEN}", method="PUT")[0] == 501  # (POST is served: /api takes it)
    assert get(view, f"/snapshot/cam0.jpg?token={TOKEN}")[0] == 200  # the real one still works
    assert capfd.readouterr().err == ""


def read_part(response) -> bytes:
    """One JPEG from a multipart/x-mixed-replace body."""
    assert response.readline() == b"--frame\r\n"
    headers = {}
    while True:
        line = response.readline().decode().strip()
        if not line:
            break
        key, _, value = line.partition(":")
        headers[key.lower()] = value.strip()
    assert headers["content-type"] == "image/jpeg"
    body = response.read(int(headers["content-length"]))
    assert response.readline() == b"\r\n"
    return body


def test_mjpeg_viewers_get_the_newest_frames_and_one_that_breaks_off_leaves_no_trace(view, runs, capfd):
    stop = threading.Event()

    def feed() -> None:
        i = 0
        while not stop.is_set():
            frame, record = runs["cam0"][i % FRAMES]
            view.on_frame("cam0", frame, dict(record, frame=i))
            i += 1
            time.sleep(0.02)

    feeder = threading.Thread(target=feed, daemon=True)
    feeder.start()
    try:
        conn = http.client.HTTPConnection("127.0.0.1", view.server.port, timeout=10)
        conn.request("GET", f"/stream/cam0.mjpg?token={TOKEN}")
        response = conn.getresponse()
        assert response.status == 200
        assert response.getheader("Content-Type") == "multipart/x-mixed-replace; boundary=frame"
        frames = [cv2.imdecode(np.frombuffer(read_part(response), np.uint8), cv2.IMREAD_COLOR) for _ in range(5)]
        assert all(f is not None and f.shape == (360, 480, 3) for f in frames)
        assert len({f.tobytes() for f in frames if f is not None}) >= 2  # live: the frames change
        assert metrics(view)["ssd_edge_viewers"][(("stream", "cam0"),)] == 1
        # break off hard (RST): the server's write fails; no traceback, the viewer count returns to 0
        sock = response.fp.raw._sock  # type: ignore[attr-defined]  # http.client hands the socket to the response of a non-keep-alive reply
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        response.close()
        conn.close()
        deadline = time.monotonic() + 5
        while metrics(view)["ssd_edge_viewers"][(("stream", "cam0"),)] != 0 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert metrics(view)["ssd_edge_viewers"][(("stream", "cam0"),)] == 0
    finally:
        stop.set()
        feeder.join()
    assert capfd.readouterr().err == ""


def test_no_viewer_no_encoding_and_each_frame_encoded_at_most_once(view):
    frame = np.random.default_rng(0).integers(0, 255, (120, 160, 3), dtype=np.uint8)
    for i in range(50):
        view.on_frame("cam0", frame.copy(), {"frame": i})
    encodes = (("stream", "cam0"),)
    assert metrics(view)["ssd_edge_jpeg_encodes_total"][encodes] == 0
    first = get(view, f"/snapshot/cam0.jpg?token={TOKEN}")
    second = get(view, f"/snapshot/cam0.jpg?token={TOKEN}")
    assert first[2] == second[2] and first[1]["x-frame-sequence"] == "50"
    assert metrics(view)["ssd_edge_jpeg_encodes_total"][encodes] == 1
    view.on_frame("cam0", frame[::-1].copy(), {"frame": 50})
    assert get(view, f"/snapshot/cam0.jpg?token={TOKEN}")[1]["x-frame-sequence"] == "51"
    assert metrics(view)["ssd_edge_jpeg_encodes_total"][encodes] == 2
    assert get(view, f"/snapshot/cam1.jpg?token={TOKEN}")[0] == 503  # nothing published there yet


def test_a_viewer_that_never_reads_gets_frames_dropped_not_queued_and_never_blocks(view, capfd):
    rng = np.random.default_rng(1)
    frames = [rng.integers(0, 255, (360, 480, 3), dtype=np.uint8) for _ in range(4)]  # noise: ~150 KB JPEGs
    stalled = socket.socket()
    stalled.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    stalled.connect(("127.0.0.1", view.server.port))
    stalled.sendall(f"GET /stream/cam0.mjpg?token={TOKEN} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
    durations = []
    published = 300
    for i in range(published):
        t0 = time.perf_counter()
        view.on_frame("cam0", frames[i % 4], {"frame": i, "latency_ms": 5.0, "timings_ms": {"inference": 3.0}})
        durations.append(time.perf_counter() - t0)
        time.sleep(0.003)  # give the viewer thread the chance to encode and write (and block)
    m = metrics(view)
    label = (("stream", "cam0"),)
    assert m["ssd_edge_viewers"][label] == 1  # still connected, stuck in a write
    assert m["ssd_edge_frames_total"][label] == published
    sent, encodes = m["ssd_edge_viewer_frames_sent_total"][label], m["ssd_edge_jpeg_encodes_total"][label]
    assert sent < published / 4  # the send buffer filled: the rest were skipped, not queued
    assert encodes <= sent + 1  # and never encoded for nobody
    assert max(durations) < 0.02  # bound for "never blocks" (typically ~10 µs; a scheduler hiccup stays below)
    t0 = time.monotonic()
    view.close()  # with the stalled viewer still connected
    assert time.monotonic() - t0 < 3.0
    stalled.close()
    assert capfd.readouterr().err == ""


def test_a_pipeline_that_stops_reporting_fails_health(runs):
    view = LiveView(["cam0"], serve=("127.0.0.1", 0), status_timeout_s=0.3, log=lambda _: None)
    try:
        view.on_status({"cam0": status("cam0", 1)})
        assert get(view, "/healthz")[0] == 200  # no token configured: none needed
        time.sleep(0.5)
        code, _, body = get(view, "/healthz")
        assert code == 503 and "stalled" in json.loads(body)["failing"]["cam0"]
        view.on_status({"cam0": status("cam0", 2), "cam9": status("cam9", 0)})
        assert get(view, "/healthz")[0] == 200
        view.on_status({"cam9": status("cam9", 0)})  # cam0 no longer reported
        assert json.loads(get(view, "/healthz")[2])["failing"] == {"cam0": "no status for this stream"}
    finally:
        view.close()


def test_events_and_counts_in_the_records_reach_the_page_and_metrics(view):
    events = [{"type": "line_crossed", "line": "door", "direction": "in", "track": k, "frame": k} for k in range(20)]
    for k in range(20):
        view.on_frame("cam1", np.zeros((24, 32, 3), np.uint8),
                      {"frame": k, "events": events[k:k + 1], "counts": {"door": {"in": k + 1, "out": 0}}})
    state = {s["name"]: s for s in json.loads(get(view, f"/api/state?token={TOKEN}")[2])["streams"]}
    assert [e["track"] for e in state["cam1"]["events"]] == list(range(19, 7, -1))  # the 12 newest, newest first
    assert state["cam1"]["counts"] == {"door": {"in": 20, "out": 0}} and state["cam0"]["events"] == []
    assert metrics(view)["ssd_edge_events_total"][(("stream", "cam1"),)] == 20


def test_state_before_the_first_frame_and_numpy_values_are_valid_json_for_the_page(view):
    view.on_status({"cam0": status("cam0", 0, latency_p50_ms=float("nan"), latency_p95_ms=float("nan"),
                                   counts={"door": {"in": np.int64(2)}})})
    view.on_frame("cam1", np.zeros((24, 32, 3), np.uint8),
                  {"frame": 0, "events": [{"type": "zone_enter", "score": np.float32(0.5), "box": np.arange(4)}]})
    code, _, body = get(view, f"/api/state?token={TOKEN}")
    assert code == 200 and b"NaN" not in body
    state = {s["name"]: s for s in json.loads(body)["streams"]}
    assert state["cam0"]["latency_p50_ms"] is None and state["cam0"]["counts"] == {"door": {"in": 2}}
    assert state["cam1"]["events"] == [{"type": "zone_enter", "score": 0.5, "box": [0, 1, 2, 3]}]
    assert metrics(view)["ssd_edge_count"][(("name", "door.in"), ("stream", "cam0"))] == 2


def test_flags_parse_with_their_defaults_shown():
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    text = parser.format_help()
    assert text.count("(default: off)") == 2 and "(default: none)" in text
    assert parse_host_port("8080") == ("127.0.0.1", 8080)
    assert parse_host_port("0.0.0.0:9000") == ("0.0.0.0", 9000) and parse_host_port("[::1]:80") == ("::1", 80)
    assert parse_rtsp_out("8554/live") == ("127.0.0.1", 8554, "live")
    assert parse_rtsp_out("0.0.0.0:8554/cams/") == ("0.0.0.0", 8554, "cams")
    assert parse_rtsp_out("8554") == ("127.0.0.1", 8554, "live")
    assert from_args(parser.parse_args([]), ["cam0"]) is None


@pytest.mark.parametrize("argv, message", [
    (["--serve", "localhost"], "give HOST:PORT or a bare PORT"),
    (["--serve", "70000"], "out of range"),
    (["--serve", "[zz::1]:80"], "not an IPv6 address"),
    (["--serve-token", "x"], "--serve-token needs --serve"),
    (["--serve", "0", "--serve-token", " "], "the token is empty"),
    (["--rtsp-out", "8554/a b"], "the path may hold"),
    (["--serve", "192.0.2.1:8080"], "192.0.2.1 is not an address of this machine"),  # TEST-NET: never local
])
def test_bad_flags_and_unbindable_addresses_are_one_clear_line(argv, message):
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    with pytest.raises(UserError) as caught:
        from_args(parser.parse_args(argv), ["cam0"], log=lambda _: None)
    assert message in str(caught.value) and "\n" not in str(caught.value)


def test_a_port_in_use_is_one_line_on_the_console_and_exit_2():
    busy = socket.socket()
    busy.bind(("127.0.0.1", 0))
    busy.listen()
    port = busy.getsockname()[1]
    try:
        code = f"""
import argparse, sys
sys.path.insert(0, {str(ROOT)!r})
from runtimes.cli import run_cli
from webview.cli import add_arguments, from_args
def main(argv):
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    from_args(parser.parse_args(argv), ["cam0"])
    return 0
sys.exit(run_cli(main, ["--serve", "{port}"]))
"""
        result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    finally:
        busy.close()
    assert result.returncode == 2 and result.stdout == ""
    assert result.stderr == (f"error: --serve 127.0.0.1:{port}: port {port} is already in use; stop what listens "
                             f"there or choose another port\n")


def test_rtsp_out_without_pygobject_says_what_to_install():
    try:
        import gi  # noqa: F401

        pytest.skip("this interpreter has PyGObject: tests/test_rtsp_out.py covers the RTSP output")
    except ImportError:
        pass
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    with pytest.raises(UserError) as caught:
        from_args(parser.parse_args(["--rtsp-out", "8554/live"]), ["cam0"], log=lambda _: None)
    assert "apt install python3-gi gir1.2-gst-rtsp-server-1.0" in str(caught.value)


class _PausedPart:
    """A component of the box in the state a full disk leaves recording in."""

    def __init__(self) -> None:
        self.reason: "str | None" = None
        self.clips = 0

    def health(self):
        return self.reason

    def metrics(self):
        return {"clips_written": self.clips, "recording_pauses": 1 if self.reason else 0}


def test_a_paused_component_is_named_by_healthz_without_failing_it_and_counted_in_metrics(view):
    part = _PausedPart()
    view.add_component("recording", part)
    view.on_status({"cam0": status("cam0", 1), "cam1": status("cam1", 1)})
    code, _, body = get(view, f"/healthz?token={TOKEN}")
    assert code == 200 and json.loads(body)["components"] == {"recording": "ok"}
    part.reason, part.clips = "recording paused: 12 MB free on /clips, below the 64 MB it keeps free", 3
    code, _, body = get(view, f"/healthz?token={TOKEN}")
    assert code == 200 and json.loads(body)["components"]["recording"] == part.reason  # detection still healthy
    samples = metrics(view)
    assert samples["ssd_edge_recording_clips_written_total"] == {(): 3.0}
    assert samples["ssd_edge_recording_recording_pauses_total"] == {(): 1.0}
