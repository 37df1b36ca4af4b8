"""HTTP clients for the web view's tests, fuzz surface and attack benchmark, on 127.0.0.1 only: a raw request
and its answer parsed strictly, and an attack of idle and slow-header sockets run from one thread."""

from __future__ import annotations

import selectors
import socket
import threading
import time
from dataclasses import dataclass
from typing import Dict, List, Optional

HOST = "127.0.0.1"
SLOW_HEAD = b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Padding: " + b"a" * 4096  # never ends in a blank line


@dataclass
class Answer:
    status: int
    reason: str
    headers: Dict[str, str]  # lower-case names
    body: bytes


class MalformedAnswer(Exception):
    pass


def parse_answer(data: bytes, partial: bool = False) -> Answer:
    """An HTTP/1.x answer as read to the end of the connection; :class:`MalformedAnswer` for anything that is
    not one. With ``partial``, only the head and perhaps the start of the body were read (a stream, a HEAD):
    the body's length is not checked."""
    head, blank, body = data.partition(b"\r\n\r\n")
    if not blank:
        raise MalformedAnswer(f"no blank line after the head: {data[:80]!r}")
    lines = head.decode("latin-1").split("\r\n")
    version, _, rest = lines[0].partition(" ")
    code, _, reason = rest.partition(" ")
    if version not in ("HTTP/1.0", "HTTP/1.1") or not (code.isdigit() and len(code) == 3):
        raise MalformedAnswer(f"status line {lines[0][:80]!r}")
    headers = {}
    for line in lines[1:]:
        name, colon, value = line.partition(":")
        if not colon or not name or name != name.strip():
            raise MalformedAnswer(f"header line {line[:80]!r}")
        headers[name.lower()] = value.strip()
    length = headers.get("content-length")
    if length is not None and not length.isdigit():
        raise MalformedAnswer(f"Content-Length {length[:20]!r}")
    if length is None and not partial:
        raise MalformedAnswer("no Content-Length")
    if length is not None and not partial and int(length) != len(body):
        raise MalformedAnswer(f"Content-Length {length} but {len(body)} bytes of body")
    return Answer(int(code), reason, headers, body)


def exchange(port: int, data: bytes, timeout_s: float = 10.0, head_only: bool = False,
             limit: int = 8 << 20, pieces: int = 1) -> Answer:
    """Send ``data`` (in ``pieces``, a little apart) on a new connection, read to its end, parse the answer.
    Only the head and the first bytes after it are read of a stream (multipart, it never ends) and, with
    ``head_only``, of any answer (the answer to HEAD has none). ``socket.timeout`` after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    with socket.create_connection((HOST, port), timeout=timeout_s) as sock:
        try:
            for k in range(pieces):
                if k:
                    time.sleep(0.01)
                sock.sendall(data[k * len(data) // pieces:(k + 1) * len(data) // pieces])
        except OSError:
            pass  # the server answered and closed before taking all of it (a refusal): read the answer
        received = b""
        partial = False
        while len(received) < limit and not partial:
            sock.settimeout(max(0.01, deadline - time.monotonic()))
            try:
                chunk = sock.recv(65536)
            except ConnectionResetError:
                break
            if not chunk:
                break
            received += chunk
            head = received.partition(b"\r\n\r\n")[0] if b"\r\n\r\n" in received else None
            partial = head is not None and (head_only or b"multipart/x-mixed-replace" in head)
    return parse_answer(received, partial=partial)


def get(port: int, path: str, token: Optional[str] = None, timeout_s: float = 10.0) -> Answer:
    auth = f"Authorization: Bearer {token}\r\n" if token is not None else ""
    return exchange(port, f"GET {path} HTTP/1.1\r\nHost: {HOST}\r\n{auth}\r\n".encode(), timeout_s)


class Attack:
    """``idle`` sockets that connect and send nothing, ``slow`` ones that send a never-ending request head one
    byte every ``interval_s``; one thread drives them all. ``lifetimes`` records, per socket the server
    closed, seconds from connect to close; with ``reconnect`` each such socket is opened again at once."""

    def __init__(self, port: int, idle: int, slow: int, interval_s: float = 2.0, reconnect: bool = False) -> None:
        self.port, self.interval_s, self.reconnect = port, interval_s, reconnect
        self.lifetimes: List[float] = []
        self._selector = selectors.DefaultSelector()
        self._stop = threading.Event()
        for kind in ["idle"] * idle + ["slow"] * slow:
            self._open(kind)
        self._thread = threading.Thread(target=self._run, name="attack", daemon=True)
        self._thread.start()

    @property
    def open(self) -> int:
        return len(self._selector.get_map())

    def _open(self, kind: str) -> None:
        sock = socket.create_connection((HOST, self.port), timeout=10)
        sock.setblocking(False)
        self._selector.register(sock, selectors.EVENT_READ, {"kind": kind, "since": time.monotonic(), "sent": 0})

    def _run(self) -> None:
        next_byte = time.monotonic()
        while not self._stop.is_set():
            for key, _ in self._selector.select(0.05):
                self._closed_by_server(key)
            if time.monotonic() >= next_byte:
                next_byte += self.interval_s
                for key in list(self._selector.get_map().values()):
                    if key.data["kind"] == "slow" and key.data["sent"] < len(SLOW_HEAD):
                        try:
                            key.fileobj.send(SLOW_HEAD[key.data["sent"]:key.data["sent"] + 1])  # type: ignore[union-attr]
                            key.data["sent"] += 1
                        except OSError:
                            self._closed_by_server(key)

    def _closed_by_server(self, key: selectors.SelectorKey) -> None:
        sock: socket.socket = key.fileobj  # type: ignore[assignment]
        try:
            if sock.recv(65536):
                return  # an answer (408) first; the end of the connection follows
        except BlockingIOError:
            return
        except OSError:
            pass
        self._selector.unregister(sock)
        sock.close()
        self.lifetimes.append(time.monotonic() - key.data["since"])
        if self.reconnect and not self._stop.is_set():
            self._open(key.data["kind"])

    def wait_closed(self, timeout_s: float) -> bool:
        """True once the server has closed every socket (none reopened), within ``timeout_s``."""
        deadline = time.monotonic() + timeout_s
        while self.open and time.monotonic() < deadline:
            time.sleep(0.05)
        return not self.open

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)
        for key in list(self._selector.get_map().values()):
            key.fileobj.close()  # type: ignore[union-attr]
        self._selector.close()
