"""The HTTP side of the live view: the standard library's ThreadingHTTPServer, one thread per connection.

Served, and nothing else (any other path is 404, any other method 501):
    /                      the page (webview/static/index.html)
    /static/app.css|app.js the page's assets, from an in-memory table read at start: no request path reaches
                           the file system
    /stream/STREAM.mjpg    the annotated video, multipart/x-mixed-replace JPEGs, newest frame each time
    /snapshot/STREAM.jpg   the newest annotated frame (503 before the first)
    /metrics               Prometheus text format
    /healthz               200 while every stream delivers frames, 503 with the failing streams named (JSON)
    /api/state             JSON for the page

With a token, every request needs ``?token=TOKEN`` or ``Authorization: Bearer TOKEN`` (else 401). Per-request
logging is off and a client that goes away mid-response is not an error: the console stays quiet.
"""

from __future__ import annotations

import errno
import hmac
import html
import json
import math
import socket
import socketserver
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Callable, Dict, Optional, Protocol, Set, Tuple
from urllib.parse import parse_qs, quote, unquote, urlsplit

from runtimes.errors import UserError

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


def load_assets() -> Dict[str, Tuple[bytes, str]]:
    return {url: ((STATIC_DIR / name).read_bytes(), ctype) for url, (name, ctype) in ASSETS.items()}


def bind_error(exc: OSError, flag: str, host: str, port: int) -> str:
    """One line for a socket that cannot be bound: what went wrong and what to do."""
    where = f"{flag} {host}:{port}"
    if isinstance(exc, socket.gaierror):
        return f"{where}: cannot resolve {host!r}; give an IP address such as 127.0.0.1"
    if exc.errno == errno.EADDRINUSE:
        return f"{where}: port {port} is already in use; stop what listens there or choose another port"
    if exc.errno == errno.EADDRNOTAVAIL:
        return (f"{where}: {host} is not an address of this machine; use 127.0.0.1 (this machine only) or "
                f"0.0.0.0 (every interface)")
    if exc.errno == errno.EACCES:
        return f"{where}: no permission to listen on port {port} (below 1024 needs root); choose a port above 1024"
    return f"{where}: cannot listen there ({exc.strerror or exc}); choose another address or port"


def plain_json(value: Any) -> Any:
    """``value`` with what JSON.parse rejects or json cannot write made plain: NaN and infinities -> None
    (a status before its first frame has NaN percentiles), numpy scalars and arrays -> numbers and lists."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {str(k): plain_json(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain_json(v) for v in value]
    if value is None or isinstance(value, (str, int, bool)):
        return value
    if hasattr(value, "tolist"):  # numpy scalar or array
        return plain_json(value.tolist())
    return str(value)


class ViewApp(Protocol):
    """What the handlers ask of the live view (webview.live.LiveView implements it)."""

    hub: Any

    def page_state(self) -> Dict[str, Any]: ...

    def health(self) -> Tuple[bool, Dict[str, Any]]: ...

    def metrics_text(self) -> bytes: ...


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False  # close() ends open connections itself, in bounded time
    request_queue_size = 32

    app: ViewApp
    token: Optional[bytes]
    assets: Dict[str, Tuple[bytes, str]]
    send_timeout_s: float
    send_buffer_bytes: int
    max_connections: int
    log_line: Callable[[str], None]

    def server_bind(self) -> None:
        # HTTPServer.server_bind resolves the host's FQDN (a DNS query on some set-ups): not needed here.
        socketserver.TCPServer.server_bind(self)
        self.server_name, self.server_port = str(self.server_address[0]), int(self.server_address[1])
        self.connections: Set[socket.socket] = set()
        self.connections_lock = threading.Lock()

    def handle_error(self, request: Any, client_address: Any) -> None:
        exc = sys.exc_info()[1]
        if isinstance(exc, OSError):  # the client went away or stalled past the time-out: not our error
            return
        self.log_line(f"web view: {type(exc).__name__} while answering {client_address[0]}: {exc}")


class _Server6(_Server):
    address_family = socket.AF_INET6


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    server_version = "ssd-edge-webview"
    sys_version = ""
    timeout = 10.0  # seconds to send a request: a client that connects and says nothing is dropped

    def log_message(self, format: str, *args: Any) -> None:  # the base class's signature
        pass  # no line per request on the console

    def setup(self) -> None:
        super().setup()
        with self.server.connections_lock:
            self.server.connections.add(self.connection)
            self._over_limit = len(self.server.connections) > self.server.max_connections

    def finish(self) -> None:
        with self.server.connections_lock:
            self.server.connections.discard(self.connection)
        try:
            super().finish()
        except OSError:
            pass

    def _send(self, status: int, body: bytes, ctype: str, headers: Optional[Dict[str, str]] = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.send_header("X-Content-Type-Options", "nosniff")
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.end_headers()
        self.wfile.write(body)

    def _text(self, status: int, text: str, headers: Optional[Dict[str, str]] = None) -> None:
        self._send(status, (text + "\n").encode(), "text/plain; charset=utf-8", headers)

    def _json(self, status: int, value: Any) -> None:
        self._send(status, json.dumps(plain_json(value)).encode(), "application/json")

    def _authorised(self, query: str) -> bool:
        token = self.server.token
        if token is None:
            return True
        given = parse_qs(query).get("token", [""])[0].encode()
        auth = self.headers.get("Authorization", "")
        if auth.startswith("Bearer "):
            given = auth[len("Bearer "):].strip().encode()
        return hmac.compare_digest(given, token)

    def do_GET(self) -> None:  # the base class's naming
        if self._over_limit:
            self._text(503, "too many connections; try again later")
            return
        url = urlsplit(self.path)
        if not self._authorised(url.query):
            self._text(401, "unauthorised: add ?token=TOKEN to the URL or send Authorization: Bearer TOKEN",
                       {"WWW-Authenticate": "Bearer"})
            return
        path, app = url.path, self.server.app
        if path in self.server.assets:
            body, ctype = self.server.assets[path]
            if path == "/":  # the page's own requests for its assets carry the token too (they are authorised)
                auth = "" if self.server.token is None else "?token=" + quote(self.server.token.decode(), safe="")
                body = body.replace(b"__AUTH__", html.escape(auth).encode())
            self._send(200, body, ctype, {"Content-Security-Policy": PAGE_POLICY, "Referrer-Policy": "no-referrer"})
        elif path == "/metrics":
            from prometheus_client import CONTENT_TYPE_LATEST

            self._send(200, app.metrics_text(), CONTENT_TYPE_LATEST)
        elif path == "/healthz":
            ok, health = app.health()
            self._json(200 if ok else 503, health)
        elif path == "/api/state":
            self._json(200, app.page_state())
        elif path.startswith("/stream/") and path.endswith(".mjpg") and self._stream(path[8:-5]) is not None:
            self._mjpeg(self._stream(path[8:-5]))  # type: ignore[arg-type]  # checked just above
        elif path.startswith("/snapshot/") and path.endswith(".jpg") and self._stream(path[10:-4]) is not None:
            seq, jpeg = app.hub.jpeg(self._stream(path[10:-4]))
            if jpeg:
                self._send(200, jpeg, "image/jpeg", {"X-Frame-Sequence": str(seq)})
            else:
                self._text(503, "no frame yet: the stream has not delivered one")
        else:
            self._text(404, "not found")

    def _stream(self, quoted: str) -> Optional[str]:
        name = unquote(quoted)
        return name if name in self.server.app.hub.names else None

    def _mjpeg(self, name: str) -> None:
        hub = self.server.app.hub
        self.send_response(200)
        self.send_header("Content-Type", f"multipart/x-mixed-replace; boundary={BOUNDARY}")
        self.send_header("Cache-Control", "no-store")
        self.send_header("X-Content-Type-Options", "nosniff")
        self.end_headers()
        # A viewer that stops reading blocks only this thread, in sendall, until the time-out drops it; the
        # frames published meanwhile are skipped, not queued.
        self.connection.settimeout(self.server.send_timeout_s)
        # A bounded kernel buffer: left to autotuning, a stalled viewer's would grow to megabytes, dozens of
        # frames queued (and encoded) for nobody.
        self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, self.server.send_buffer_bytes)
        hub.viewer(name, +1)
        last = 0
        try:
            while not hub.closed:
                if not hub.wait_newer(name, last, 1.0):
                    continue
                seq, jpeg = hub.jpeg(name)
                if not jpeg:
                    continue
                head = f"--{BOUNDARY}\r\nContent-Type: image/jpeg\r\nContent-Length: {len(jpeg)}\r\n\r\n".encode()
                self.wfile.write(head + jpeg + b"\r\n")
                hub.delivered(name, seq - last - 1 if last else 0)
                last = seq
        except OSError:
            pass  # the viewer left or stalled
        finally:
            hub.viewer(name, -1)
            self.close_connection = True


class WebServer:
    """The HTTP server on its own thread. Raises :class:`UserError` when it cannot listen at host:port."""

    def __init__(self, host: str, port: int, app: ViewApp, token: Optional[str] = None, log=print,
                 send_timeout_s: float = 30.0, max_connections: int = 64, send_buffer_bytes: int = 128 * 1024,
                 flag: str = "--serve") -> None:
        server_class = _Server6 if ":" in host else _Server
        try:
            self._server = server_class((host, port), _Handler)
        except OSError as exc:
            raise UserError(bind_error(exc, flag, host, port)) from None
        self._server.app = app
        self._server.token = token.encode() if token is not None else None
        self._server.assets = load_assets()
        self._server.send_timeout_s = send_timeout_s
        self._server.send_buffer_bytes = send_buffer_bytes
        self._server.max_connections = max_connections
        self._server.log_line = log
        self.host, self.port = host, int(self._server.server_address[1])
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.2},
                                        name="webview-http", daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}/"

    def close(self, timeout_s: float = 2.0) -> None:
        """Stop accepting, end open connections (viewers too), free the port; about 0.2 s."""
        self._server.shutdown()
        with self._server.connections_lock:
            open_now = list(self._server.connections)
        for conn in open_now:
            try:
                conn.shutdown(socket.SHUT_RDWR)  # wakes a thread blocked in sendall on a stalled viewer
            except OSError:
                pass
        self._server.server_close()
        self._thread.join(timeout_s)
