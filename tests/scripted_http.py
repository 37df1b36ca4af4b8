"""A misbehaving HTTP peer on 127.0.0.1 for the webhook's tests and fuzz cases: it reads each request and
answers with a script of steps (bytes sent at once or a byte at a time, pauses, a close, a reset, holding the
connection open), so statuses, headers, trickles, oversized bodies and dropped connections are all one list."""

from __future__ import annotations

import socket
import struct
import threading
import time
from typing import List, Tuple, Union

# ("send", bytes) | ("trickle", bytes, seconds between bytes) | ("sleep", seconds) | ("hold",) | ("close",)
# | ("reset",): after the last step the connection is closed.
Step = Union[Tuple[str], Tuple[str, object], Tuple[str, object, float]]


class ScriptedPeer:
    """Accepts connections, reads one request from each (headers and Content-Length body) and plays ``steps``.
    ``bodies`` holds every request body read; ``connections`` counts accepted connections."""

    def __init__(self, steps: List[Step], read_limit: int = 1 << 20) -> None:
        self.steps, self.read_limit = steps, read_limit
        self.bodies: List[bytes] = []
        self.connections = 0
        self.request_read = threading.Event()  # set once a whole request has been read
        self._stop = threading.Event()
        self._listener = socket.socket()
        self._listener.bind(("127.0.0.1", 0))
        self._listener.listen(64)
        self._listener.settimeout(0.1)
        self.port = self._listener.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}/events"
        self._threads = [threading.Thread(target=self._accept_loop, daemon=True)]
        self._threads[0].start()

    def __enter__(self) -> "ScriptedPeer":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Stop playing (held and trickled connections end) and stop listening."""
        self._stop.set()
        for thread in list(self._threads):
            thread.join(5)
        self._listener.close()

    def _accept_loop(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._listener.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            self.connections += 1
            thread = threading.Thread(target=self._serve, args=(conn,), daemon=True)
            self._threads.append(thread)
            thread.start()

    def _serve(self, conn: socket.socket) -> None:
        with conn:
            conn.settimeout(5.0)
            try:
                self._read_request(conn)
                self._play(conn)
            except OSError:  # the client gave up (shut its socket): what a timeout should do
                return

    def _read_request(self, conn: socket.socket) -> None:
        data = b""
        while b"\r\n\r\n" not in data and len(data) < self.read_limit:
            chunk = conn.recv(65536)
            if not chunk:
                return
            data += chunk
        head, _, body = data.partition(b"\r\n\r\n")
        length = next((int(line.split(b":", 1)[1]) for line in head.split(b"\r\n")[1:]
                       if line.lower().startswith(b"content-length:")), 0)
        while len(body) < min(length, self.read_limit):
            chunk = conn.recv(65536)
            if not chunk:
                break
            body += chunk
        self.bodies.append(body)
        self.request_read.set()

    def _play(self, conn: socket.socket) -> None:
        for step in self.steps:
            kind = step[0]
            if kind == "send":
                conn.sendall(step[1])  # type: ignore[arg-type]
            elif kind == "trickle":
                for byte in step[1]:  # type: ignore[attr-defined]
                    if self._stop.wait(step[2]):  # type: ignore[misc]
                        return
                    conn.sendall(bytes([byte]))
            elif kind == "sleep":
                if self._stop.wait(step[1]):  # type: ignore[arg-type]
                    return
            elif kind == "hold":
                while not self._stop.wait(0.05):
                    pass
            elif kind == "reset":  # RST instead of FIN
                conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                return
            elif kind == "close":
                return


def answer(status: int = 200, reason: str = "OK", body: bytes = b"", headers: str = "") -> bytes:
    """A whole HTTP/1.1 answer."""
    return (f"HTTP/1.1 {status} {reason}\r\nContent-Length: {len(body)}\r\n{headers}Connection: close\r\n\r\n"
            .encode("latin-1") + body)


def wait_until(condition, timeout_s: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout_s
    while not condition() and time.monotonic() < deadline:
        time.sleep(0.01)
    return bool(condition())
