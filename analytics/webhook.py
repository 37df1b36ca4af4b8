"""The webhook's side of HTTP: its URL checked at start, and one POST whose whole exchange is bounded in time
and size (analytics/sinks.py's WebhookSink retries and counts)."""

from __future__ import annotations

import contextlib
import socket
import threading
from typing import NamedTuple, Tuple

from runtimes.errors import UserError


class WebhookTarget(NamedTuple):
    https: bool
    host: str
    port: int
    path: str  # with the query


def check_webhook_url(url: str) -> WebhookTarget:
    """Where ``url`` POSTs to; UserError, in one line, unless it is an http:// or https:// URL with a host,
    a port in 1..65535 (if given), no credentials, spaces or control characters."""
    from urllib.parse import urlsplit

    where = f"--webhook {url}"
    example = "give one like http://127.0.0.1:8080/events"
    if any(c.isspace() or ord(c) < 32 or ord(c) == 127 for c in url):
        raise UserError(f"{where!r}: the URL holds spaces or control characters; percent-encode them")
    try:
        parts = urlsplit(url)
    except ValueError as exc:  # "Invalid IPv6 URL"
        raise UserError(f"{where}: not a valid URL ({exc}); {example}") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise UserError(f"{where}: not an http:// or https:// URL; {example}")
    try:
        port = parts.port  # ValueError: not a number, or above 65535
    except ValueError:
        port = 0
    if port == 0:
        raise UserError(f"{where}: the port is not a number in 1..65535; {example}")
    if parts.username is not None or parts.password is not None:
        raise UserError(f"{where}: credentials in the URL are not sent; put a token in the path or query instead")
    https = parts.scheme == "https"
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    target = WebhookTarget(https, parts.hostname, port or (443 if https else 80), path)
    _check_sendable(where, target)
    return target


def _check_sendable(where: str, target: WebhookTarget) -> None:
    """UserError unless http.client can make the request (its own checks of the host and path, which would
    otherwise fail every POST): the request line and Host header are built, nothing is sent."""
    import http.client

    try:
        target.host.encode("idna")  # as connecting will
        probe = http.client.HTTPConnection(target.host, target.port)
        probe.putrequest("POST", target.path)
        probe.close()
    except (ValueError, UnicodeError, http.client.HTTPException) as exc:
        raise UserError(f"{where}: cannot be sent ({exc}); fix the host, or percent-encode characters outside "
                        "ASCII") from None


MAX_ANSWER_BYTES = 64 * 1024  # read of an answer's body, which is not used: its status is all that counts


def post_bounded(target: WebhookTarget, body: bytes, timeout_s: float) -> Tuple[int, str]:
    """POST ``body`` as JSON; the answer's (status, reason). The whole exchange ends within about
    ``timeout_s``: a socket timeout bounds each wait only, so a server that trickles its answer a byte at a
    time would hold it forever; a watchdog shuts the socket at the deadline (TimeoutError)."""
    import http.client

    kind = http.client.HTTPSConnection if target.https else http.client.HTTPConnection
    connection = kind(target.host, target.port, timeout=timeout_s)
    expired = threading.Event()

    def cut() -> None:
        expired.set()
        sock = connection.sock
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)  # wakes the read it is blocked in

    watchdog = threading.Timer(timeout_s, cut)
    watchdog.daemon = True
    watchdog.start()
    try:
        connection.connect()
        if expired.is_set():  # the deadline passed while connecting, before there was a socket to shut
            raise TimeoutError
        connection.request("POST", target.path, body, {"Content-Type": "application/json"})
        answer = connection.getresponse()
        with contextlib.suppress(OSError, http.client.HTTPException):  # the status is in; the body may fail
            answer.read(MAX_ANSWER_BYTES)
        return answer.status, answer.reason
    except (OSError, http.client.HTTPException):
        if expired.is_set():
            raise TimeoutError(f"no complete answer within {timeout_s:g} s") from None
        raise
    finally:
        watchdog.cancel()
        connection.close()


def short_reason(text: str, limit: int = 200) -> str:
    """A reason fit for one line of the events file (a server's answer can be long or hold anything)."""
    text = " ".join(text.split())
    return text if len(text) <= limit else text[:limit] + "..."
