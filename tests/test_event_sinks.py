"""Event sinks against real servers on 127.0.0.1: Debian's mosquitto broker (read back with paho-mqtt's
subscriber) and a local http.server for the webhook; both stopped and restarted on the same port while
events flow, and a dead endpoint whose events end up counted and kept in the events file."""

from __future__ import annotations

import http.server
import json
import os
import pwd
import shutil
import socket
import subprocess
import threading
import time
from pathlib import Path
from typing import Any, Dict, List, Optional

import numpy as np
import pytest

from analytics.pipeline import Analytics
from analytics.sinks import JsonLinesSink, MqttSink, WebhookSink
from analytics.zone_file import parse_zones
from runtimes.errors import UserError
from tests.scripted_http import ScriptedPeer, wait_until
from tests.system_python import run_system_python
from tests.test_zones import CLASSES, FPS, LINE, crossing_scene

MOSQUITTO_PATHS = ("mosquitto", "/usr/sbin/mosquitto")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_port(port: int, up: bool, timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        with socket.socket() as s:
            is_up = s.connect_ex(("127.0.0.1", port)) == 0
        if is_up == up:
            return
        time.sleep(0.05)
    raise TimeoutError(f"port {port} did not go {'up' if up else 'down'}")


class Broker:
    """mosquitto on 127.0.0.1:port, with persistence so queued QoS 1 messages survive a restart."""

    def __init__(self, folder: Path, users: Optional[Dict[str, str]] = None) -> None:
        binary = next((b for b in (shutil.which(p) for p in MOSQUITTO_PATHS) if b), None)
        if binary is None:
            pytest.skip("the mosquitto broker is not installed (apt-get install -y mosquitto)")
        self.binary = binary
        self.port = _free_port()
        self.config = folder / "mosquitto.conf"
        (folder / "db").mkdir()
        access = "allow_anonymous true\n"
        if users:  # only these users may connect (mosquitto_passwd writes the hashed file)
            passwords = folder / "passwords"
            passwords.write_text("")
            for user, password in users.items():
                subprocess.run(["mosquitto_passwd", "-b", str(passwords), user, password], check=True)
            # as root, mosquitto drops to its own user, who cannot read pytest's private folder: stay this user
            access = (f"allow_anonymous false\npassword_file {passwords}\n"
                      f"user {pwd.getpwuid(os.geteuid()).pw_name}\n")
        self.config.write_text(f"listener {self.port} 127.0.0.1\n{access}persistence true\n"
                               f"persistence_location {folder / 'db'}/\nlog_dest stderr\n")
        self.process: Optional[subprocess.Popen] = None
        self.start()

    def start(self) -> None:
        self.process = subprocess.Popen([self.binary, "-c", str(self.config)], stdout=subprocess.DEVNULL,
                                        stderr=subprocess.DEVNULL)
        _wait_port(self.port, up=True)

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()  # SIGTERM: mosquitto saves its persistence file
            self.process.wait(10)
            self.process = None
        _wait_port(self.port, up=False)


@pytest.fixture
def broker(tmp_path):
    b = Broker(tmp_path)
    yield b
    if b.process is not None:
        b.process.kill()
        b.process.wait(10)


class Subscriber:
    """paho-mqtt subscriber with a persistent session (the broker queues for it while it reconnects)."""

    def __init__(self, port: int, topic: str) -> None:
        import paho.mqtt.client as mqtt

        self.messages: List[Dict] = []
        self.topics: List[str] = []
        self.ready = threading.Event()
        if hasattr(mqtt, "CallbackAPIVersion"):
            self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="ssd-edge-test-sub",
                                      clean_session=False)
        else:
            self.client = mqtt.Client(client_id="ssd-edge-test-sub", clean_session=False)

        def on_connect(client, userdata, flags, *rest):
            client.subscribe(topic, qos=1)

        def on_subscribe(client, userdata, mid, *rest):
            self.ready.set()

        def on_message(client, userdata, message):
            self.topics.append(message.topic)
            self.messages.append(json.loads(message.payload))

        self.client.on_connect, self.client.on_subscribe, self.client.on_message = on_connect, on_subscribe, on_message
        self.client.reconnect_delay_set(1, 1)
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()
        assert self.ready.wait(10)

    def wait_for(self, count: int, timeout_s: float = 20.0) -> None:
        deadline = time.monotonic() + timeout_s
        while len({m["seq"] for m in self.messages}) < count and time.monotonic() < deadline:
            time.sleep(0.05)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


class WebhookServer:
    """http.server on 127.0.0.1:port recording every JSON body POSTed to it."""

    def __init__(self, port: Optional[int] = None) -> None:
        self.port = port or _free_port()
        self.bodies: List[Dict] = []
        self.server: Optional[http.server.HTTPServer] = None
        self.start()

    def start(self) -> None:
        received = self.bodies

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self):
                length = int(self.headers["Content-Length"])
                received.append(json.loads(self.rfile.read(length)))
                self.send_response(204)
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = http.server.HTTPServer(("127.0.0.1", self.port), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()
            self.server = None

    def wait_for(self, count: int, timeout_s: float = 20.0) -> None:
        deadline = time.monotonic() + timeout_s
        while len({b["seq"] for b in self.bodies}) < count and time.monotonic() < deadline:
            time.sleep(0.05)


def _analytics(events_path: Path, *sinks) -> Analytics:
    events = JsonLinesSink(events_path)
    zones = parse_zones(LINE, ["door"], CLASSES)
    return Analytics(["door"], CLASSES, zones, [events, *sinks], events, {"min_hits": 2}, counts_every_s=1.0)


def _play(analytics: Analytics, first_frame: int = 0) -> List[Dict]:
    frames, _ = crossing_scene()
    emitted: List[Dict[str, Any]] = []
    for t, dets in enumerate(frames):
        record: Dict[str, Any] = {"frame": first_frame + t, "timestamp": (first_frame + t) / FPS}
        analytics.process("door", record, dets, None)
        emitted += record["events"]
    return emitted


def test_every_event_reaches_the_broker_and_the_webhook(broker, tmp_path):
    subscriber = Subscriber(broker.port, "cams/#")
    server = WebhookServer()
    try:
        mqtt = MqttSink("127.0.0.1", broker.port, "cams")
        hook = WebhookSink(f"http://127.0.0.1:{server.port}/events")
        analytics = _analytics(tmp_path / "events.jsonl", mqtt, hook)
        emitted = _play(analytics)
        summary = analytics.close(timeout_s=10)
        subscriber.wait_for(len(emitted))
        assert len(emitted) == 6 + 7  # 6 crossings, a counts event each second from 1 to 7 s
        by_seq = {m["seq"]: m for m in subscriber.messages}
        assert [by_seq[e["seq"]] for e in emitted] == emitted
        assert set(subscriber.topics) == {"cams/door"}
        assert sorted(server.bodies, key=lambda b: b["seq"]) == emitted
        written = [json.loads(x) for x in (tmp_path / "events.jsonl").read_text().splitlines()]
        assert written == emitted
        for name in (mqtt.name, hook.name):
            assert summary["sinks"][name] == {"sent": len(emitted), "failed": 0, "queued": 0}
    finally:
        subscriber.close()
        server.stop()


def test_a_sink_down_for_a_while_gets_the_events_after_it_returns(broker, tmp_path):
    subscriber = Subscriber(broker.port, "cams/#")
    server = WebhookServer()
    try:
        mqtt = MqttSink("127.0.0.1", broker.port, "cams")
        hook = WebhookSink(f"http://127.0.0.1:{server.port}/events", backoff_s=0.1, max_backoff_s=0.5, retries=60)
        analytics = _analytics(tmp_path / "events.jsonl", mqtt, hook)
        before = _play(analytics)
        subscriber.wait_for(len(before))
        server.wait_for(len(before))
        broker.stop()
        server.stop()
        t0 = time.perf_counter()
        during = _play(analytics, first_frame=100)  # both endpoints down
        play_s = time.perf_counter() - t0
        time.sleep(1.0)
        assert hook.stats()["sent"] == len(before) and len(server.bodies) == len(before)
        broker.start()
        server.start()
        emitted = before + during
        subscriber.wait_for(len(emitted), timeout_s=40)
        server.wait_for(len(emitted), timeout_s=40)
        summary = analytics.close(timeout_s=10)
        assert {m["seq"] for m in subscriber.messages} == {e["seq"] for e in emitted}
        assert {b["seq"] for b in server.bodies} == {e["seq"] for e in emitted}
        for name in (mqtt.name, hook.name):
            assert summary["sinks"][name] == {"sent": len(emitted), "failed": 0, "queued": 0}
        assert play_s < 1.0  # 80 frames while both were down: nothing waited on them
    finally:
        subscriber.close()
        server.stop()


def test_a_dead_webhook_counts_its_failures_and_the_events_file_keeps_them(tmp_path):
    hook = WebhookSink(f"http://127.0.0.1:{_free_port()}/events", queue_size=3, retries=2, backoff_s=0.05)
    analytics = _analytics(tmp_path / "events.jsonl", hook)
    emitted = _play(analytics)
    summary = analytics.close(timeout_s=2)
    lines = [json.loads(x) for x in (tmp_path / "events.jsonl").read_text().splitlines()]
    undelivered = [x for x in lines if x["type"] == "undelivered"]
    assert summary["sinks"][hook.name] == {"sent": 0, "failed": len(emitted), "queued": 0}
    assert sorted((x["event"] for x in undelivered), key=lambda e: e["seq"]) == emitted
    assert {x["sink"] for x in undelivered} == {hook.name}
    reasons = {x["reason"].split(":")[0] for x in undelivered}
    assert "queue full" in reasons and any("attempts" in x["reason"] for x in undelivered)
    assert [x for x in lines if x["type"] != "undelivered"] == emitted


def test_submit_never_blocks_on_a_server_that_never_answers(tmp_path):
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)  # accepts connections, never reads or replies
    try:
        hook = WebhookSink(f"http://127.0.0.1:{listener.getsockname()[1]}/", timeout_s=30, queue_size=10)
        times = []
        for i in range(200):
            t0 = time.perf_counter()
            hook.submit({"type": "counts", "stream": "s", "seq": i})
            times.append(time.perf_counter() - t0)
        assert max(times) < 0.05 and float(np.median(times)) < 1e-3
        t0 = time.perf_counter()
        hook.close(timeout_s=0.5)
        assert time.perf_counter() - t0 < 3.0  # close is bounded too
        assert hook.stats()["failed"] == 200 and hook.stats()["sent"] == 0
    finally:
        listener.close()


def test_mqtt_sink_under_the_device_python_with_paho_1(broker, tmp_path):
    """JetPack's Ubuntu 20.04 ships paho-mqtt 1.x: Debian's /usr/bin/python3 with python3-paho-mqtt 1.6 runs the
    same sink against the same broker."""
    root = Path(__file__).resolve().parents[1]
    subscriber = Subscriber(broker.port, "dev/#")
    code = f"""
import sys, json
sys.path.insert(0, {str(root)!r})
import paho.mqtt
from analytics.sinks import MqttSink
sink = MqttSink("127.0.0.1", {broker.port}, "dev")
for i in range(50):
    sink.submit({{"type": "counts", "stream": "door", "seq": i}})
sink.close(10)
print(json.dumps({{"paho": paho.mqtt.__version__, **sink.stats()}}))
"""
    try:
        result = run_system_python(code, "python3-paho-mqtt", timeout=60)
        assert result.returncode == 0, result.stderr[-2000:]
        info = json.loads(result.stdout.strip().splitlines()[-1])
        subscriber.wait_for(50)
        assert {m["seq"] for m in subscriber.messages} == set(range(50))
        assert set(subscriber.topics) == {"dev/door"}
        assert (info["sent"], info["failed"]) == (50, 0)
        print(f"paho-mqtt {info['paho']} under /usr/bin/python3")
    finally:
        subscriber.close()


@pytest.mark.parametrize("url, words", [
    ("http://[::1/events", "not a valid URL"),
    ("http://127.0.0.1:99999/events", "the port is not a number in 1..65535"),
    ("http://127.0.0.1:0/events", "the port is not a number in 1..65535"),
    ("ftp://127.0.0.1/events", "not an http:// or https:// URL"),
    ("http://127.0.0.1:8080/ev ents", "spaces or control characters"),
    ("http://127.0.0.1:8080/\u00e9v\u00e9nements", "cannot be sent"),  # http.client refuses it at every POST
])
def test_a_webhook_url_that_cannot_work_is_refused_in_one_line(url, words):
    with pytest.raises(UserError, match=words) as refused:
        WebhookSink(url)
    assert "\n" not in str(refused.value) and "--webhook" in str(refused.value)


@pytest.mark.parametrize("steps, delivered", [
    ([("trickle", b"HTTP/1.1 200 OK\r\n" * 50, 0.1)], False),  # the status line and headers never end
    ([("send", b"HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\n"), ("trickle", b"x" * 1000, 0.1)], True),
], ids=["headers trickled", "body trickled"])
def test_a_server_that_trickles_its_answer_cannot_hold_the_webhook(steps, delivered):
    """The socket's timeout bounds each read only; a byte every 0.1 s kept the sink on one event for ever. The
    timeout now bounds the whole exchange: an answer whose status never completes fails the attempt, one whose
    status is in but whose body trickles is delivered."""
    reasons: List[str] = []
    with ScriptedPeer(steps) as peer:
        hook = WebhookSink(peer.url, timeout_s=0.5, retries=1, backoff_s=0.01,
                           on_undelivered=lambda sink, reason, event: reasons.append(reason))
        for i in range(3):
            hook.submit({"type": "counts", "stream": "s", "seq": i})
        assert wait_until(lambda: sum(hook.stats()[k] for k in ("sent", "failed")) == 3, timeout_s=20)
        hook.close(timeout_s=1)
        attempts = peer.connections
    if delivered:
        assert hook.stats() == {"sent": 3, "failed": 0, "queued": 0} and attempts == 3
    else:
        assert hook.stats() == {"sent": 0, "failed": 3, "queued": 0} and attempts == 6  # 2 attempts each
        assert reasons == ["RuntimeError: TimeoutError: no complete answer within 0.5 s (after 2 attempts)"] * 3


def test_events_queued_or_in_flight_at_close_are_counted_and_kept_in_the_events_file(tmp_path):
    """An endpoint that holds the one event in flight while the queue is full: close used to wait for room in
    the queue for ever, so the 5 queued events and the one in flight were neither counted nor written."""
    with ScriptedPeer([("hold",)]) as peer:
        events_path = tmp_path / "events.jsonl"
        events = JsonLinesSink(events_path)
        hook = WebhookSink(peer.url, timeout_s=60, queue_size=5,
                           on_undelivered=events.record_undelivered)
        analytics = Analytics(["door"], CLASSES, None, [events, hook], events)
        sent = [{"type": "counts", "stream": "door", "seq": i} for i in range(7)]
        hook.submit(sent[0])
        assert peer.request_read.wait(10)  # the first event is in flight, held by the peer
        for event in sent[1:]:
            hook.submit(event)  # 5 queued, the 7th finds the queue full
        t0 = time.monotonic()
        summary = analytics.close(timeout_s=0.5)
        closing_s = time.monotonic() - t0
    assert summary["sinks"][hook.name] == {"sent": 0, "failed": 7, "queued": 0}
    lines = [json.loads(x) for x in events_path.read_text().splitlines()]
    assert sorted((x["event"] for x in lines), key=lambda e: e["seq"]) == sent
    reasons = [x["reason"] for x in lines]
    assert sorted(set(reasons)) == ["not delivered before close", "queue full", "still being delivered at close"]
    assert reasons.count("not delivered before close") == 5
    assert closing_s < 0.5 + 2.0  # close's time, the second it gives the thread, and slack


def test_mqtt_events_unacknowledged_at_close_are_counted_and_kept_in_the_events_file(broker, tmp_path):
    """The MQTT side of the same promise: events published while the broker is down wait in paho for a PUBACK;
    at close those still waiting are counted as failed and written to the events file."""
    events = JsonLinesSink(tmp_path / "events.jsonl")
    mqtt = MqttSink("127.0.0.1", broker.port, "cams", on_undelivered=events.record_undelivered)
    analytics = Analytics(["door"], CLASSES, None, [events, mqtt], events)
    broker.stop()
    sent = [{"type": "counts", "stream": "door", "seq": i} for i in range(5)]
    for event in sent:
        mqtt.submit(event)
    summary = analytics.close(timeout_s=1.0)
    assert summary["sinks"][mqtt.name] == {"sent": 0, "failed": 5, "queued": 0}
    lines = [json.loads(x) for x in (tmp_path / "events.jsonl").read_text().splitlines()]
    assert sorted((x["event"] for x in lines), key=lambda e: e["seq"]) == sent
    assert {x["reason"] for x in lines} == {"no PUBACK from the broker before close"}


def test_mqtt_sink_logs_in_with_the_configured_user(tmp_path):
    """A broker that admits only a user (the box's mqtt.username / mqtt.password): the sink's events arrive."""
    broker = Broker(tmp_path, users={"box": "s3cret"})
    try:
        import paho.mqtt.client as mqtt

        received: List[str] = []
        if hasattr(mqtt, "CallbackAPIVersion"):
            client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2)
        else:
            client = mqtt.Client()
        client.username_pw_set("box", "s3cret")
        subscribed = threading.Event()
        client.on_connect = lambda c, *_: c.subscribe("#", qos=1)
        client.on_subscribe = lambda *_: subscribed.set()
        client.on_message = lambda _c, _u, message: received.append(message.topic)
        client.connect("127.0.0.1", broker.port)
        client.loop_start()
        assert subscribed.wait(10)
        refused = MqttSink("127.0.0.1", broker.port, "denied", username="box", password="wrong")
        admitted = MqttSink("127.0.0.1", broker.port, "cams", username="box", password="s3cret")
        analytics = _analytics(tmp_path / "events.jsonl", admitted, refused)
        emitted = _play(analytics)
        summary = analytics.close(timeout_s=3)
        deadline = time.monotonic() + 10
        while len(received) < len(emitted) and time.monotonic() < deadline:
            time.sleep(0.05)
        client.loop_stop()
        assert len(received) == len(emitted) > 0 and {t.split("/")[0] for t in received} == {"cams"}  # none refused
        assert summary["sinks"][admitted.name]["sent"] == len(emitted)
        assert summary["sinks"][refused.name]["sent"] == 0
    finally:
        if broker.process is not None:
            broker.process.kill()
            broker.process.wait(10)
