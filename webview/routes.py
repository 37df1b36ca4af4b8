"""Routes of the web view: which method and path run which handler, on which lane, with how large a body; and
the :class:`Exchange` a handler answers through.

A route is one line in a table:

    Route("GET", "/healthz", handler)                                   # answered at once, on the quick lane
    Route("GET", "/stream/{stream}.mjpg", handler, lane=VIEWER)          # holds its thread while it streams
    Route(("POST", "PATCH"), "/api/zones/{zone}", handler, max_body=64 * 1024)   # a JSON body up to 64 KiB

``{name}`` matches one path segment (or the part of one before a fixed suffix); the handler finds it
percent-decoded in ``exchange.request.params``. The token is checked before any route is looked up (webview/
gate.py), so every route, old or new, is behind it. A GET route answers HEAD too (head only).
"""

from __future__ import annotations

import re
import socket
from dataclasses import dataclass
from typing import Any, Callable, Dict, List, Optional, Pattern, Tuple, Union
from urllib.parse import unquote

from webview.protocol import HttpError, Request, answer_head, json_bytes, text_answer

QUICK, VIEWER = "quick", "viewer"


@dataclass(frozen=True)
class Route:
    methods: Union[str, Tuple[str, ...]]
    pattern: str
    handler: Callable[["Exchange"], None]
    lane: str = QUICK
    max_body: int = 0  # bytes; a longer body is refused with 413 before it is read

    def method_list(self) -> Tuple[str, ...]:
        methods = (self.methods,) if isinstance(self.methods, str) else tuple(self.methods)
        return methods + ("HEAD",) if "GET" in methods and "HEAD" not in methods else methods


def _compile(pattern: str) -> Pattern[str]:
    parts = re.split(r"\{(\w+)\}", pattern)
    regex = "".join(re.escape(part) if i % 2 == 0 else f"(?P<{part}>[^/]+?)" for i, part in enumerate(parts))
    return re.compile(f"^{regex}$")


class Router:
    def __init__(self, routes: List[Route]) -> None:
        self._routes = [(_compile(route.pattern), route) for route in routes]
        self._served = {method for route in routes for method in route.method_list()}

    def find(self, request: Request) -> Route:
        """The route for ``request``, its path parameters set on it. Raises :class:`HttpError` 404, 405, 501."""
        if request.method not in self._served:
            raise HttpError(501, f"method {request.method[:20]} is not served")
        allowed: List[str] = []
        for regex, route in self._routes:
            found = regex.match(request.path)
            if found is None:
                continue
            if request.method in route.method_list():
                request.params = {key: unquote(value) for key, value in found.groupdict().items()}
                return route
            allowed.extend(m for m in route.method_list() if m not in allowed)
        if allowed:
            raise HttpError(405, f"{request.method} is not allowed here; use {', '.join(allowed)}",
                            {"Allow": ", ".join(allowed)})
        raise HttpError(404, "not found")


class Exchange:
    """One request and its connection (blocking, with the send time-out set): a handler answers once, with
    :meth:`send`, :meth:`text` or :meth:`json`, or starts a stream with :meth:`start` and writes with :meth:`write`."""

    def __init__(self, sock: socket.socket, request: Request) -> None:
        self.sock, self.request = sock, request
        self.answered = False  # a head has gone out: a failure after this cannot be answered any more

    def send(self, status: int, body: bytes, ctype: str, headers: Optional[Dict[str, str]] = None) -> None:
        self._send(answer_head(status, ctype, headers, len(body)), body)

    def text(self, status: int, text: str, headers: Optional[Dict[str, str]] = None) -> None:
        answer = text_answer(status, text, headers)
        split = answer.index(b"\r\n\r\n") + 4
        self._send(answer[:split], answer[split:])

    def _send(self, head: bytes, body: bytes) -> None:
        self.answered = True
        self.sock.sendall(head if self.request.method == "HEAD" else head + body)

    def json(self, status: int, value: Any) -> None:
        self.send(status, json_bytes(value), "application/json")

    def start(self, status: int, ctype: str, headers: Optional[Dict[str, str]] = None) -> bool:
        """Send the head of an answer whose body is written by :meth:`write` until the connection closes;
        False for HEAD (nothing more to write)."""
        self.answered = True
        self.sock.sendall(answer_head(status, ctype, headers))
        return self.request.method != "HEAD"

    def write(self, data: bytes) -> None:
        self.sock.sendall(data)
