"""The gate: one thread that accepts every connection and reads its request, head and body, under one deadline,
before any other thread sees it. Only a complete request whose token is right reaches a lane (webview/lanes.py)
and its threads; everything else is answered or closed here.

Why one thread: a client that connects and says nothing, or sends a byte every few seconds, costs a socket
and a few bytes here, not a thread, and cannot hold back an authorised request behind it. The number of such
connections is bounded too (``max_pending``): at the bound the oldest one is closed to let the new one in (an
honest client sends its whole head in its first packet and is not the oldest for long).
"""

from __future__ import annotations

import selectors
import socket
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass
from functools import partial
from typing import Callable, Optional, Protocol

from webview.protocol import HttpError, Request, head_end, oversized_head, parse_head, text_answer
from webview.routes import Route

READ_CHUNK = 16 * 1024
MAX_ACCEPTS_PER_WAKE = 64  # then the connections already waiting are read, so a flood cannot starve them
POLL_S = 0.2  # the longest the gate sleeps: close() takes at most this long to stop it


@dataclass(frozen=True)
class Limits:
    """What the web server allows its clients. One place for these numbers (flags and docs refer here)."""

    header_timeout_s: float = 10.0  # from connect to the last byte of the request (head and body)
    max_pending: int = 512  # connections whose request is not complete yet (or refused and draining)
    quick_threads: int = 4  # page, assets, /metrics, /healthz, /api/state, snapshots
    quick_backlog: int = 32  # complete requests waiting for a quick thread
    max_viewers: int = 64  # MJPEG streams at once, a thread each
    send_timeout_s: float = 30.0  # a client that reads nothing for this long is dropped
    send_buffer_bytes: int = 128 * 1024  # kernel send buffer per viewer (bounds what a stalled one holds)
    linger_s: float = 1.0  # after a refusal, unread input is drained this long so the client gets the answer

    @property
    def max_threads(self) -> int:
        """Threads of the web server at most: the gate, the quick lane, one per viewer."""
        return 1 + self.quick_threads + self.max_viewers


class Dispatch(Protocol):
    """What the gate asks of the server (webview/server.py)."""

    def route(self, request: Request) -> Route: ...  # token first; raises HttpError

    def hand_over(self, sock: socket.socket, request: Request, route: Route) -> None: ...  # raises HttpError


class _Pending:
    __slots__ = ("sock", "deadline", "buffer", "request", "route", "body_at", "length")

    def __init__(self, sock: socket.socket, deadline: float) -> None:
        self.sock, self.deadline = sock, deadline
        self.buffer = bytearray()
        self.request: Optional[Request] = None
        self.route: Optional[Route] = None
        self.body_at = self.length = 0


class Gate:
    def __init__(self, listener: socket.socket, dispatch: Dispatch, limits: Limits,
                 log: Callable[[str], None]) -> None:
        self._listener, self._dispatch, self._limits, self._log = listener, dispatch, limits, log
        listener.setblocking(False)
        self._selector = selectors.DefaultSelector()
        self._selector.register(listener, selectors.EVENT_READ, self._accept)
        self._pending: "OrderedDict[socket.socket, _Pending]" = OrderedDict()  # oldest first
        self._closing: "OrderedDict[socket.socket, float]" = OrderedDict()  # refused, draining -> when to close
        self._stop = False
        self._thread = threading.Thread(target=self._run, name="webview-gate", daemon=True)
        self._thread.start()

    @property
    def held(self) -> int:
        """Connections the gate holds: requests still coming in, and refused ones draining (``max_pending``
        bounds both together)."""
        return len(self._pending) + len(self._closing)

    def close(self, timeout_s: float = 2.0) -> None:
        self._stop = True
        self._thread.join(timeout_s)

    def _run(self) -> None:
        try:
            while not self._stop:
                for key, _ in self._selector.select(self._wait_s()):
                    try:
                        key.data()
                    except Exception as exc:  # a bug must cost one connection, never the gate
                        self._log(f"web view: {type(exc).__name__} in the gate: {exc}")
                        if isinstance(key.fileobj, socket.socket) and key.fileobj is not self._listener:
                            self._drop(key.fileobj)
                self._expire(time.monotonic())
        finally:
            for sock in list(self._pending) + list(self._closing):
                self._drop(sock)
            self._selector.close()

    def _wait_s(self) -> float:
        due = [POLL_S]
        if self._pending:
            due.append(next(iter(self._pending.values())).deadline - time.monotonic())
        if self._closing:
            due.append(next(iter(self._closing.values())) - time.monotonic())
        return max(0.0, min(due))

    def _expire(self, now: float) -> None:
        while self._pending:
            conn = next(iter(self._pending.values()))
            if conn.deadline > now:
                break
            self._refuse(conn.sock, HttpError(
                408, f"the request was not complete within {self._limits.header_timeout_s:g} s"))
        while self._closing and next(iter(self._closing.values())) <= now:
            self._drop(next(iter(self._closing)))

    def _accept(self) -> None:
        for _ in range(MAX_ACCEPTS_PER_WAKE):
            try:
                sock, _ = self._listener.accept()
            except BlockingIOError:
                return
            except OSError:  # out of file descriptors, most likely: free one, try again on the next wake-up
                self._make_room(accept_failed=True)
                return
            sock.setblocking(False)
            if self.held >= self._limits.max_pending:
                self._make_room()
            conn = _Pending(sock, time.monotonic() + self._limits.header_timeout_s)
            self._pending[sock] = conn
            self._selector.register(sock, selectors.EVENT_READ, partial(self._read, conn))

    def _make_room(self, accept_failed: bool = False) -> None:
        if self._closing:
            self._drop(next(iter(self._closing)))
        elif self._pending:
            self._refuse(next(iter(self._pending)), HttpError(503, "too many connections waiting; try again"),
                         linger=False)
        elif accept_failed:
            time.sleep(POLL_S)  # nothing of ours to free: do not spin on a listener that cannot accept

    def _read(self, conn: _Pending) -> None:
        try:
            data = conn.sock.recv(READ_CHUNK)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if not data:  # the client closed or reset: nothing to answer
            self._drop(conn.sock)
            return
        conn.buffer += data
        try:
            if conn.route is None and not self._read_head(conn):
                return
            if len(conn.buffer) - conn.body_at < conn.length:
                return  # the body is still coming
            self._forget(conn.sock)
            assert conn.request is not None and conn.route is not None
            conn.request.body = bytes(conn.buffer[conn.body_at:conn.body_at + conn.length])
            self._dispatch.hand_over(conn.sock, conn.request, conn.route)
        except HttpError as exc:
            self._refuse(conn.sock, exc)

    def _read_head(self, conn: _Pending) -> bool:
        """Parse the head once it is complete (token, route, body size checked in that order); False until then."""
        end, body_at = head_end(bytes(conn.buffer))
        if end < 0:
            error = oversized_head(bytes(conn.buffer))
            if error is not None:
                raise error
            return False
        request = parse_head(bytes(conn.buffer[:end]))
        route = self._dispatch.route(request)
        length = request.content_length()
        if length > route.max_body:
            raise HttpError(413, f"the body is {length} bytes; at most {route.max_body} are taken here")
        conn.request, conn.route, conn.body_at, conn.length = request, route, body_at, length
        return True

    def _refuse(self, sock: socket.socket, error: HttpError, linger: bool = True) -> None:
        """Answer ``error`` as far as the socket takes it without waiting, then close; with ``linger``, first
        read what the client still sends for a moment (closing on unread input would reset the connection
        and could destroy the answer before the client reads it)."""
        self._forget(sock)
        try:
            sock.send(text_answer(error.status, error.message, error.headers))
            sock.shutdown(socket.SHUT_WR)
        except OSError:
            linger = False
        if not linger or self.held >= self._limits.max_pending:
            sock.close()
            return
        self._closing[sock] = time.monotonic() + self._limits.linger_s
        self._selector.register(sock, selectors.EVENT_READ, partial(self._drain, sock))

    def _drain(self, sock: socket.socket) -> None:
        try:
            if sock.recv(READ_CHUNK):
                return
        except BlockingIOError:
            return
        except OSError:
            pass
        self._drop(sock)

    def _forget(self, sock: socket.socket) -> None:
        if self._pending.pop(sock, None) is not None or self._closing.pop(sock, None) is not None:
            self._selector.unregister(sock)

    def _drop(self, sock: socket.socket) -> None:
        self._forget(sock)
        sock.close()
