"""The live view's endpoints, as routes (webview/routes.py) of the web server (webview/server.py):

    /                      the page (webview/static/index.html)
    /static/app.css|app.js the page's assets, from an in-memory table read at start: no request path reaches
                           the file system
    /stream/STREAM.mjpg    the annotated video, multipart/x-mixed-replace JPEGs, newest frame each time
    /snapshot/STREAM.jpg   the newest annotated frame (503 before the first)
    /metrics               Prometheus text format
    /healthz               200 while every stream delivers frames, 503 with the failing streams named (JSON)
    /api/state             JSON for the page

Beside these, webview/api.py serves the control API of a box started with --config, and webview/evidence.py
the recorded events of a run with --record (both added where the routes are put together, webview/live.py).
"""

from __future__ import annotations

import html
import socket
from pathlib import Path
from typing import Any, Dict, List, Optional, Protocol, Tuple
from urllib.parse import quote

from webview.routes import VIEWER, Exchange, Route

STATIC_DIR = Path(__file__).resolve().parent / "static"
# URL path -> (file in static/, content type). The only files ever read, once, at start.
ASSETS = {
    "/": ("index.html", "text/html; charset=utf-8"),
    "/static/app.css": ("app.css", "text/css; charset=utf-8"),
    "/static/app.js": ("app.js", "text/javascript; charset=utf-8"),
}
PAGE_POLICY = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; "
               "base-uri 'none'; form-action 'none'; frame-ancestors 'none'")
BOUNDARY = "frame"


class ViewApp(Protocol):
    """What the endpoints ask of the live view (webview.live.LiveView implements it)."""

    hub: Any

    def page_state(self) -> Dict[str, Any]: ...

    def health(self) -> Tuple[bool, Dict[str, Any]]: ...

    def metrics_text(self) -> bytes: ...


def load_assets(token: Optional[str]) -> Dict[str, Tuple[bytes, str]]:
    """URL -> (bytes, content type); the page's own requests for its assets carry the token (they are
    authorised like any other request)."""
    auth = "" if token is None else "?token=" + quote(token, safe="")
    out = {}
    for url, (name, ctype) in ASSETS.items():
        body = (STATIC_DIR / name).read_bytes()
        out[url] = (body.replace(b"__AUTH__", html.escape(auth).encode()) if url == "/" else body, ctype)
    return out


class LiveEndpoints:
    def __init__(self, app: ViewApp, token: Optional[str], send_buffer_bytes: int) -> None:
        self.app, self.send_buffer_bytes = app, send_buffer_bytes
        self.assets = load_assets(token)

    def routes(self) -> List[Route]:
        return [Route("GET", url, self.asset) for url in self.assets] + [
            Route("GET", "/metrics", self.metrics),
            Route("GET", "/healthz", self.healthz),
            Route("GET", "/api/state", self.state),
            Route("GET", "/snapshot/{stream}.jpg", self.snapshot),
            Route("GET", "/stream/{stream}.mjpg", self.stream, lane=VIEWER),
        ]

    def asset(self, exchange: Exchange) -> None:
        body, ctype = self.assets[exchange.request.path]
        exchange.send(200, body, ctype, {"Content-Security-Policy": PAGE_POLICY, "Referrer-Policy": "no-referrer"})

    def metrics(self, exchange: Exchange) -> None:
        from prometheus_client import CONTENT_TYPE_LATEST

        exchange.send(200, self.app.metrics_text(), CONTENT_TYPE_LATEST)

    def healthz(self, exchange: Exchange) -> None:
        ok, health = self.app.health()
        exchange.json(200 if ok else 503, health)

    def state(self, exchange: Exchange) -> None:
        exchange.json(200, self.app.page_state())

    def _stream_name(self, exchange: Exchange) -> Optional[str]:
        name = exchange.request.params["stream"]
        if name in self.app.hub.names:
            return name
        exchange.text(404, "not found")
        return None

    def snapshot(self, exchange: Exchange) -> None:
        name = self._stream_name(exchange)
        if name is None:
            return
        seq, jpeg = self.app.hub.jpeg(name)
        if jpeg:
            exchange.send(200, jpeg, "image/jpeg", {"X-Frame-Sequence": str(seq)})
        else:
            exchange.text(503, "no frame yet: the stream has not delivered one")

    def stream(self, exchange: Exchange) -> None:
        name = self._stream_name(exchange)
        if name is None or not exchange.start(200, f"multipart/x-mixed-replace; boundary={BOUNDARY}"):
            return
        hub = self.app.hub
        # A bounded kernel buffer: left to autotuning, a stalled viewer's would grow to megabytes, dozens of
        # frames queued (and encoded) for nobody. A viewer that stops reading blocks only its own thread, in
        # its write, until the send time-out drops it; the frames published meanwhile are skipped, not queued.
        exchange.sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, self.send_buffer_bytes)
        hub.viewer(name, +1)
        last = 0
        try:
            while not hub.closed and hub.slot(name) is not None:  # (a stream removed at run time)
                if not hub.wait_newer(name, last, 1.0):
                    continue
                seq, jpeg = hub.jpeg(name)
                if not jpeg:
                    continue
                head = f"--{BOUNDARY}\r\nContent-Type: image/jpeg\r\nContent-Length: {len(jpeg)}\r\n\r\n".encode()
                exchange.write(head + jpeg + b"\r\n")
                hub.delivered(name, seq - last - 1 if last else 0)
                last = seq
        finally:
            hub.viewer(name, -1)
