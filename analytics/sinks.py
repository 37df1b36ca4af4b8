"""Where events go: a JSON-lines file, a webhook (HTTP POST), an MQTT broker.

Every sink has its own thread and a bounded queue: :meth:`Sink.submit` never blocks (the pipeline's output
thread calls it), so a slow or dead endpoint costs the caller one ``put_nowait``. An event a sink could
not deliver (queue full, retries exhausted, still pending at close) is counted in ``failed`` and handed to
``on_undelivered``, which :class:`analytics.pipeline.Analytics` points at the events file: nothing is lost
without a trace there. Delivery is at least once (a retry after a lost reply may repeat an event; events
carry a per-stream ``seq`` to drop repeats).
"""

from __future__ import annotations

import json
import queue
import threading
import time
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Tuple

from analytics.webhook import check_webhook_url, post_bounded, short_reason
from runtimes.errors import UserError

Undelivered = Callable[[str, str, Dict[str, Any]], None]  # (sink name, reason, event)
_STOP = object()
_GRACE_S = 1.0  # after close's time is up: for the thread to fail what is queued and stop


class Sink:
    """Base: a thread that takes events from a bounded queue and calls :meth:`_deliver` on each."""

    def __init__(self, name: str, queue_size: int = 1000, on_undelivered: Optional[Undelivered] = None) -> None:
        self.name = name
        self.on_undelivered = on_undelivered
        self.sent = 0
        self.failed = 0
        self._queue: "queue.Queue[Any]" = queue.Queue(maxsize=max(1, queue_size))
        self._lock = threading.Lock()
        self._give_up = threading.Event()  # set when close's time is up: stop retrying
        self._current: Optional[Dict[str, Any]] = None  # the event being delivered
        self._abandoned = False  # close gave up on the thread: what it does later is not counted
        self._thread = threading.Thread(target=self._run, name=f"sink {name}", daemon=True)
        self._thread.start()

    def submit(self, event: Dict[str, Any]) -> None:
        """Queue one event (a JSON-ready dict) without blocking; a full queue fails it at once."""
        try:
            self._queue.put_nowait(event)
        except queue.Full:
            self._fail(event, "queue full")

    def stats(self) -> Dict[str, int]:
        with self._lock:
            return {"sent": self.sent, "failed": self.failed, "queued": self._queue.qsize()}

    def close(self, timeout_s: float = 5.0) -> None:
        """Deliver what is queued for up to ``timeout_s``, then fail the rest (queued, or in flight in a call
        that does not return); stop the thread. Returns within about ``timeout_s`` + 1 s, even when the queue
        is full and the endpoint holds the thread."""
        deadline = time.monotonic() + timeout_s
        stop_queued = self._put_stop(deadline)
        self._thread.join(max(0.0, deadline - time.monotonic()))
        if self._thread.is_alive():  # time is up: stop retrying, fail what is left
            self._give_up.set()
            grace_end = time.monotonic() + _GRACE_S
            if not stop_queued:  # the queue stayed full: the thread, no longer retrying, makes room
                self._put_stop(grace_end)
            self._thread.join(max(0.0, grace_end - time.monotonic()))
        if self._thread.is_alive():  # stuck in a call to the endpoint: count its event now, ignore it later
            with self._lock:
                self._abandoned = True
                stuck, self._current = self._current, None
            if stuck is not None:
                self._fail(stuck, "still being delivered at close")
        while True:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                break
            if item is not _STOP:
                self._fail(item, "not delivered before close")
        self._finish(max(0.0, deadline - time.monotonic()))

    def _put_stop(self, until: float) -> bool:
        """Queue the end marker behind the events, waiting for room until ``until``; False when there was none."""
        while True:
            try:
                self._queue.put(_STOP, timeout=max(0.0, min(0.05, until - time.monotonic())))
                return True
            except queue.Full:
                if time.monotonic() >= until:
                    return False

    def _run(self) -> None:
        while True:
            item = self._queue.get()
            if item is _STOP:
                return
            if self._give_up.is_set():
                self._fail(item, "not delivered before close")
                continue
            with self._lock:
                self._current = item
            try:
                self._deliver(item)
            except Exception as exc:  # an endpoint's failure is counted, never raised into the pipeline
                if not self._abandoned:
                    self._fail(item, f"{type(exc).__name__}: {exc}")
            with self._lock:
                self._current = None
                if self._abandoned:  # close has counted this event and emptied the queue
                    return

    def _delivered(self, count: int = 1) -> None:
        with self._lock:
            if not self._abandoned:
                self.sent += count

    def _fail(self, event: Dict[str, Any], reason: str) -> None:
        with self._lock:
            self.failed += 1
        if self.on_undelivered is not None:
            self.on_undelivered(self.name, reason, event)

    def _deliver(self, event: Dict[str, Any]) -> None:
        raise NotImplementedError

    def _finish(self, timeout_s: float) -> None:
        """After the queue is drained: release what the sink holds."""

    def _wait(self, seconds: float) -> bool:
        """Sleep for a back-off; False when close gave up meanwhile."""
        return not self._give_up.wait(seconds)


class JsonLinesSink(Sink):
    """Every event as one JSON line, written to a temporary beside ``path`` and renamed into place at close
    (:class:`runtimes.atomic.JsonLines`).

    Events other sinks could not deliver are written too, as ``{"type": "undelivered", "sink", "reason",
    "event"}`` lines (see :meth:`record_undelivered`).
    """

    def __init__(self, path: "str | Path", queue_size: int = 10000) -> None:
        from runtimes.atomic import JsonLines

        self.path = Path(path)
        self._lines = JsonLines(self.path)
        super().__init__(f"file {self.path}", queue_size)

    def record_undelivered(self, sink: str, reason: str, event: Dict[str, Any]) -> None:
        self.submit({"type": "undelivered", "sink": sink, "reason": reason, "event": event})

    def _deliver(self, event: Dict[str, Any]) -> None:
        self._lines.write(event)
        if self._queue.empty():
            self._lines.flush()  # readers tailing the temporary file see whole lines, without a flush per event
        self._delivered()

    def _finish(self, timeout_s: float) -> None:
        self._lines.close()


class WebhookSink(Sink):
    """One HTTP POST per event (``Content-Type: application/json``) to an http(s) URL; a 2xx answer delivers it.

    A refused connection, a timeout, an answer that is not HTTP, a 5xx, 408 or 429 is retried up to ``retries``
    times, waiting ``backoff_s`` and then twice as long each time up to ``max_backoff_s``; any other answer
    fails the event at once (retrying cannot fix it). With the defaults an outage of about 40 s loses nothing.
    ``timeout_s`` bounds each whole exchange, from connecting to the answer's last byte read.
    """

    def __init__(self, url: str, *, timeout_s: float = 5.0, retries: int = 8, backoff_s: float = 0.5,
                 max_backoff_s: float = 8.0, queue_size: int = 1000,
                 on_undelivered: Optional[Undelivered] = None) -> None:
        self._target = check_webhook_url(url)
        self.url, self.timeout_s, self.retries = url, timeout_s, retries
        self.backoff_s, self.max_backoff_s = backoff_s, max_backoff_s
        super().__init__(f"webhook {url}", queue_size, on_undelivered)

    def _deliver(self, event: Dict[str, Any]) -> None:
        import http.client

        body = json.dumps(event).encode("utf-8")
        delay = self.backoff_s
        for attempt in range(self.retries + 1):
            try:
                status, reason = post_bounded(self._target, body, self.timeout_s)
            except (OSError, http.client.HTTPException) as exc:  # refused, reset, timed out, DNS, not HTTP
                error = short_reason(f"{type(exc).__name__}: {exc}")
            else:
                if 200 <= status < 300:
                    self._delivered()
                    return
                error = short_reason(f"HTTP {status} {reason}")
                if not (status >= 500 or status in (408, 429)):
                    raise RuntimeError(f"{error} (not retried)")
            if attempt == self.retries or not self._wait(delay):
                raise RuntimeError(f"{error} (after {attempt + 1} attempts)")
            delay = min(delay * 2, self.max_backoff_s)


def parse_mqtt_address(text: str) -> Tuple[str, int, str]:
    """``HOST[:PORT][/TOPIC]`` -> (host, port, topic); port 1883 and topic "ssd-edge" unless given."""
    where = f"--mqtt {text}"
    address, _, topic = text.partition("/")
    topic = topic.strip("/") or "ssd-edge"
    host, _, port_text = address.rpartition(":") if ":" in address else (address, "", "1883")
    if not host:
        raise UserError(f"{where}: no broker host; give HOST:PORT/TOPIC, e.g. 127.0.0.1:1883/cameras")
    try:
        port = int(port_text)
    except ValueError:
        port = -1
    if not 0 < port < 65536:
        raise UserError(f"{where}: port {port_text!r} is not a number in 1..65535; give HOST:PORT/TOPIC")
    if "+" in topic or "#" in topic:
        raise UserError(f"{where}: a topic to publish to cannot contain the wildcards + or #")
    return host, port, topic


class MqttSink(Sink):
    """Each event published with QoS 1 to ``<topic>/<stream>`` (paho-mqtt; connected when made); with --record,
    each event's snapshot JPEG to ``<topic>/<stream>/snapshot`` (:meth:`publish_snapshot`).

    paho keeps unacknowledged messages and sends them again after it reconnects (1 s to 30 s back-off), so
    a broker that restarts gets what was published meanwhile; an event counts as sent on the broker's
    PUBACK. At most ``queue_size`` events wait in paho's queue beyond this sink's own.
    """

    def __init__(self, host: str, port: int, topic: str, *, connect_timeout_s: float = 5.0, keepalive_s: int = 30,
                 queue_size: int = 1000, client_id: str = "", on_undelivered: Optional[Undelivered] = None,
                 username: Optional[str] = None, password: Optional[str] = None) -> None:
        import socket

        try:
            import paho.mqtt.client as mqtt
        except ImportError:
            raise UserError("--mqtt needs paho-mqtt: pip install paho-mqtt, or apt install python3-paho-mqtt"
                            ) from None
        self.topic = topic
        self._pending: Dict[int, Dict[str, Any]] = {}
        self._acked_early: set = set()
        self._pending_lock = threading.Lock()
        self._no_pending = threading.Event()
        self._no_pending.set()
        if hasattr(mqtt, "CallbackAPIVersion"):  # paho-mqtt 2.x
            client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id)
        else:  # paho-mqtt 1.x (Debian 12 / Ubuntu 20.04's python3-paho-mqtt)
            client = mqtt.Client(client_id=client_id)
        if username is not None:  # the box's configuration file gives them (mqtt.username, mqtt.password)
            client.username_pw_set(username, password)
        client.max_queued_messages_set(queue_size)
        client.max_inflight_messages_set(100)
        client.reconnect_delay_set(min_delay=1, max_delay=30)
        client.on_publish = self._on_publish
        previous = socket.getdefaulttimeout()
        try:
            socket.setdefaulttimeout(connect_timeout_s)
            client.connect(host, port, keepalive=keepalive_s)
        except (OSError, ValueError) as exc:
            raise UserError(f"--mqtt {host}:{port}: cannot connect to the MQTT broker ({exc}); start the broker "
                            "or fix HOST:PORT") from None
        finally:
            socket.setdefaulttimeout(previous)
        self._client = client
        client.loop_start()
        super().__init__(f"mqtt {host}:{port}/{topic}", queue_size, on_undelivered)

    def _on_publish(self, client: Any, userdata: Any, mid: int, *rest: Any) -> None:
        # Called on paho's network thread; never call into paho from here (it holds its own locks).
        with self._pending_lock:
            if self._pending.pop(mid, None) is None:
                self._acked_early.add(mid)
                return
            if not self._pending:
                self._no_pending.set()
        self._delivered()

    def _deliver(self, event: Dict[str, Any]) -> None:
        info = self._client.publish(f"{self.topic}/{event.get('stream', 'default')}", json.dumps(event), qos=1)
        if info.rc not in (0, 4):  # 0 sent, 4 (MQTT_ERR_NO_CONN) kept by paho for after the reconnect
            raise RuntimeError(f"paho-mqtt refused the message (rc {info.rc})")
        with self._pending_lock:
            if info.mid in self._acked_early:
                self._acked_early.discard(info.mid)
                acked = True
            else:
                self._pending[info.mid] = event
                self._no_pending.clear()
                acked = False
        if acked:
            self._delivered()

    def publish_snapshot(self, stream: str, jpeg: bytes) -> None:
        """An event's snapshot (JPEG bytes) to ``<topic>/<stream>/snapshot``, retained, as Frigate does: a
        subscriber gets the newest at once. QoS 0, not counted in ``sent``/``failed``: the event (with its
        ``snapshot`` path) is what is delivered at least once. Never blocks (paho queues it)."""
        self._client.publish(f"{self.topic}/{stream}/snapshot", jpeg, qos=0, retain=True)

    def _finish(self, timeout_s: float) -> None:
        self._no_pending.wait(timeout_s)
        self._client.disconnect()
        self._client.loop_stop()
        with self._pending_lock:
            left: List[Dict[str, Any]] = list(self._pending.values())
            self._pending.clear()
        for event in left:
            self._fail(event, "no PUBACK from the broker before close")


def open_sinks(events: Optional[Path], mqtt: Optional[Tuple[str, int, str]], webhook: Optional[str], queue_size: int,
               on_snapshot: Optional[Callable[[Callable[..., Any]], None]] = None, username: Optional[str] = None,
               password: Optional[str] = None) -> Tuple[List[Sink], Optional[JsonLinesSink]]:
    """(every sink, the events file among them): the events file at ``events``, MQTT at ``mqtt`` (host, port,
    topic; ``on_snapshot`` is handed its snapshot publisher: each snapshot's JPEG to TOPIC/STREAM/snapshot),
    the webhook, in that order; None: not made. All or none: when one cannot be made (a broker that does not
    answer: UserError), those made are closed before the error goes on."""
    sinks: List[Sink] = []
    events_file: Optional[JsonLinesSink] = None
    try:
        if events is not None:
            events_file = JsonLinesSink(events)
            sinks.append(events_file)
        if mqtt is not None:
            mqtt_sink = MqttSink(*mqtt, queue_size=queue_size, username=username, password=password)
            sinks.append(mqtt_sink)
            if on_snapshot is not None:
                on_snapshot(mqtt_sink.publish_snapshot)
        if webhook:
            sinks.append(WebhookSink(webhook, queue_size=queue_size))
    except BaseException:
        for sink in sinks:
            sink.close(0.5)
        raise
    return sinks, events_file
