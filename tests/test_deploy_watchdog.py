"""sd_notify in pure Python and the watchdog fed by the health check (service/), against a real unix datagram
socket standing in for systemd's notify socket."""

from __future__ import annotations

import os
import socket
import threading
import time

import pytest

from service.sd_notify import Notifier
from service.watchdog import WatchdogFeeder, watchdog_interval_s


def receiver(address: str) -> socket.socket:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind("\0" + address[1:] if address.startswith("@") else address)
    sock.settimeout(5)
    return sock


def received(sock: socket.socket, timeout_s: float = 0.2) -> list:
    """Every datagram waiting now and arriving within ``timeout_s`` (a feeder keeps sending: a deadline, not
    silence, ends the read)."""
    messages, sock_timeout = [], sock.gettimeout()
    deadline = time.monotonic() + timeout_s
    try:
        while True:
            sock.settimeout(max(deadline - time.monotonic(), 0.001))
            messages.append(sock.recv(4096).decode())
    except socket.timeout:
        return messages
    finally:
        sock.settimeout(sock_timeout)


def test_ready_and_status_reach_a_path_socket(tmp_path):
    address = str(tmp_path / "notify")
    with receiver(address) as sock:
        notifier = Notifier.from_environment({"NOTIFY_SOCKET": address})
        assert notifier.ready("2 streams,\n 1 model")
        assert sock.recv(4096) == b"READY=1\nSTATUS=2 streams, 1 model"
        assert notifier.send("WATCHDOG=1") and sock.recv(4096) == b"WATCHDOG=1"
        notifier.close()


def test_an_abstract_socket():
    address = f"@ssd-edge-test-{os.getpid()}"
    with receiver(address) as sock:
        assert Notifier.from_environment({"NOTIFY_SOCKET": address}).stopping()
        assert sock.recv(4096) == b"STOPPING=1"


def test_without_systemd_nothing_is_sent_and_nothing_raised(tmp_path):
    assert not Notifier.from_environment({}).ready()
    assert not Notifier.from_environment({"NOTIFY_SOCKET": "vsock:2:1234"}).enabled
    gone = Notifier(str(tmp_path / "nobody-listens"))
    assert gone.enabled and not gone.send("WATCHDOG=1")


def test_the_watchdog_interval_is_half_of_systemds():
    assert watchdog_interval_s({"WATCHDOG_USEC": "20000000"}) == 10.0
    assert watchdog_interval_s({"WATCHDOG_USEC": "20000000", "WATCHDOG_PID": str(os.getpid())}) == 10.0
    assert watchdog_interval_s({"WATCHDOG_USEC": "20000000", "WATCHDOG_PID": "1"}) is None  # another process's
    assert watchdog_interval_s({}) is None and watchdog_interval_s({"WATCHDOG_USEC": "0"}) is None


def test_the_watchdog_is_fed_only_while_healthy(tmp_path):
    address = str(tmp_path / "notify")
    health = {"ok": True}
    with receiver(address) as sock:
        feeder = WatchdogFeeder(Notifier(address), lambda: (health["ok"], {"failing": {"cam1": "no frames"}}), 0.05)
        feeder.start()
        time.sleep(0.4)
        health["ok"] = False
        time.sleep(0.1)  # a check in flight may still have read "healthy"
        before = received(sock)
        time.sleep(0.4)
        during = received(sock, 0.05)
        health["ok"] = True
        time.sleep(0.3)
        after = received(sock)
        feeder.stop()
    assert before[0] == "STATUS=healthy" and before.count("WATCHDOG=1") >= 3
    assert "STATUS=unhealthy: {'cam1': 'no frames'}" in before + during
    assert "WATCHDOG=1" not in during and feeder.withheld >= 3  # systemd's watchdog fires: a restart
    assert after[0] == "STATUS=healthy" and "WATCHDOG=1" in after


def test_a_health_check_that_raises_withholds_the_ping(tmp_path):
    address = str(tmp_path / "notify")

    def broken() -> bool:
        raise RuntimeError("pipeline gone")

    with receiver(address) as sock:
        feeder = WatchdogFeeder(Notifier(address), broken, 1.0)
        assert feeder.feed_once() is False
        assert received(sock) == ["STATUS=unhealthy: health check failed: RuntimeError: pipeline gone"]


def test_stop_ends_the_thread_promptly(tmp_path):
    feeder = WatchdogFeeder(Notifier(None), lambda: True, 60.0).start()
    started = time.monotonic()
    feeder.stop()
    assert time.monotonic() - started < 1.0
    assert not any(t.name == "watchdog" and t.is_alive() for t in threading.enumerate())


@pytest.mark.parametrize("healthy", [True, False])
def test_a_plain_boolean_health(tmp_path, healthy):
    address = str(tmp_path / "notify")
    with receiver(address) as sock:
        WatchdogFeeder(Notifier(address), lambda: healthy, 1.0).feed_once()
        assert ("WATCHDOG=1" in received(sock)) is healthy
