"""One keep-alive HTTP/1.1 connection whose every exchange is bounded in time and size.

The whole exchange (connecting, sending, the status line and headers, the body) ends by one deadline,
``timeout`` seconds after it starts: the socket under http.client is wrapped so that each read and write
waits only until that deadline. (A timeout per read, which is what tritonclient's HTTP client has through
geventhttpclient, lets a server that sends one header line a second hold a client for as long as it likes.)
The body is read in pieces up to a limit the caller sets from the status and headers; a Content-Length
beyond it is refused before a byte of the body is read. Host names are resolved by the system's resolver,
under its own timeout.
"""

from __future__ import annotations

import http.client
import io
import socket
import time
from dataclasses import dataclass
from typing import Any, Callable, Dict, Iterable, Optional, Tuple, Union

from runtimes.kserve_address import Endpoint
from runtimes.kserve_failures import AnswerTooLarge, ConnectionFailure, MalformedAnswer, one_line

PIECE = 1 << 20  # bytes read at a time
Limit = Callable[[http.client.HTTPResponse], Tuple[int, str]]  # answer -> (most body bytes, what they hold)


@dataclass
class Answer:
    """An HTTP answer: ``status``, ``headers`` (case-insensitive ``get``), the whole ``body``."""

    status: int
    headers: Any
    body: bytearray


class _DeadlineSocket:
    """A connected socket whose reads and writes each wait only until ``deadline()`` (time.monotonic)."""

    def __init__(self, sock: socket.socket, deadline: Callable[[], float]) -> None:
        self.sock, self.deadline = sock, deadline

    def _arm(self) -> None:
        left = self.deadline() - time.monotonic()
        if left <= 0:
            raise socket.timeout("timed out")
        self.sock.settimeout(left)

    def sendall(self, data: Any) -> None:
        self._arm()
        self.sock.sendall(data)

    def recv_into(self, buffer: Any, nbytes: int = 0) -> int:
        self._arm()
        return self.sock.recv_into(buffer, nbytes)

    def makefile(self, mode: str = "rb", *args: Any, **kwargs: Any) -> io.BufferedReader:
        return io.BufferedReader(_DeadlineReader(self))

    def close(self) -> None:
        self.sock.close()


class _DeadlineReader(io.RawIOBase):
    def __init__(self, sock: _DeadlineSocket) -> None:
        self.sock = sock

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        return self.sock.recv_into(buffer)


class _Deadlined:
    """Mixed into http.client's connections: connecting waits until ``deadline``, then the socket is wrapped."""

    deadline = 0.0
    sock: Any
    timeout: Optional[float]

    def connect(self) -> None:
        left = self.deadline - time.monotonic()
        if left <= 0:
            raise socket.timeout("timed out")
        self.timeout = left
        super().connect()  # type: ignore[misc]
        self.sock = _DeadlineSocket(self.sock, lambda: self.deadline)


class _HTTPConnection(_Deadlined, http.client.HTTPConnection):
    pass


class _HTTPSConnection(_Deadlined, http.client.HTTPSConnection):
    pass


class BoundedConnection:
    """Exchanges with ``endpoint``'s server over one connection (opened when needed, kept alive between
    exchanges, not safe for two threads at once); each exchange at most ``timeout`` seconds."""

    def __init__(self, endpoint: Endpoint, timeout: float) -> None:
        self.endpoint, self.timeout = endpoint, timeout
        self._conn: "Optional[Union[_HTTPConnection, _HTTPSConnection]]" = None

    def exchange(self, method: str, path: str, body: "Union[bytes, Iterable[Any], None]",
                 headers: Dict[str, str], limit: Limit, what: str) -> Answer:
        """Send one request and read its answer, whose body may hold at most ``limit(answer)`` bytes;
        ``what`` the answer should be ("inference response"), for the errors. Raises
        :class:`ConnectionFailure`, :class:`MalformedAnswer` or :class:`AnswerTooLarge`."""
        deadline = time.monotonic() + self.timeout
        for fresh in (self._conn is None, True):
            conn = self._open(deadline)
            try:
                conn.request(method, path, body=body, headers=headers)
                response = conn.getresponse()
                answer = Answer(response.status, response.msg, self._read(response, limit))
            except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError) as exc:
                self.close()
                if fresh:
                    raise self._failure(exc, what) from None
                continue  # the server closed a kept-alive connection while it was idle: once more, on a new one
            except (OSError, http.client.HTTPException, ValueError) as exc:
                self.close()
                raise self._failure(exc, what) from None
            except BaseException:
                self.close()
                raise
            if response.will_close:
                self.close()
            return answer
        raise AssertionError("unreachable: the second attempt is on a fresh connection")

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def _open(self, deadline: float) -> "Union[_HTTPConnection, _HTTPSConnection]":
        conn = self._conn
        if conn is None:
            https = self.endpoint.scheme == "https://"
            conn = (_HTTPSConnection if https else _HTTPConnection)(self.endpoint.host, self.endpoint.port)
            self._conn = conn
        conn.deadline = deadline
        return conn

    def _read(self, response: http.client.HTTPResponse, limit: Limit) -> bytearray:
        most, holds = limit(response)
        if response.length is not None and response.length > most:
            raise AnswerTooLarge(self.endpoint.url, f"{response.length} bytes announced", most, holds)
        body = bytearray()
        while True:
            piece = response.read(min(PIECE, most + 1 - len(body)))
            if not piece:
                return body
            body += piece
            if len(body) > most:
                raise AnswerTooLarge(self.endpoint.url, f"more than {most} bytes sent", most, holds)

    def _failure(self, exc: BaseException, what: str) -> Exception:
        if isinstance(exc, socket.timeout):
            return ConnectionFailure(f"no complete answer within {self.timeout:g} s")
        if isinstance(exc, http.client.IncompleteRead):
            # http.client says so of a connection closed early and of broken chunked framing alike
            return ConnectionFailure(f"the answer broke off after {len(exc.partial)} bytes of its body")
        if isinstance(exc, http.client.RemoteDisconnected):
            return ConnectionFailure("the server closed the connection without answering")
        detail = one_line(str(exc) or type(exc).__name__, 80)
        if isinstance(exc, OSError):  # before ValueError: a TLS certificate error is both
            return ConnectionFailure(detail)
        return MalformedAnswer(self.endpoint.url, what, f"not an HTTP/1.1 answer ({detail})")
