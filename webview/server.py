"""The web view's HTTP server: a gate thread that reads every request under a deadline (webview/gate.py), the
token checked before anything else, then a route (webview/routes.py) run on a lane of bounded threads
(webview/lanes.py): the quick lane for answers that end at once (page, /metrics, /healthz, ...), the viewer
lane for MJPEG streams that hold a thread each. A full viewer lane never delays /healthz or /metrics.

Only what the routes name is served (any other path is 404, a method no route takes 501). With a token, every
request needs ``?token=TOKEN`` or ``Authorization: Bearer TOKEN`` (else 401). One request per connection. No
line per request on the console; a client that goes away mid-answer is not an error.
"""

from __future__ import annotations

import contextlib
import errno
import hmac
import socket
import threading
from typing import Callable, Dict, List, Optional, Set

from runtimes.errors import UserError
from webview.gate import Gate, Limits
from webview.lanes import Lane
from webview.protocol import HttpError, Request, given_token
from webview.routes import QUICK, VIEWER, Exchange, Route, Router

LISTEN_BACKLOG = 128
UNAUTHORISED = "unauthorised: add ?token=TOKEN to the URL or send Authorization: Bearer TOKEN"


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


def listen(host: str, port: int, flag: str) -> socket.socket:
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # a restart need not wait for TIME_WAIT
        sock.bind((host, port))
        sock.listen(LISTEN_BACKLOG)
    except OSError as exc:
        sock.close()
        raise UserError(bind_error(exc, flag, host, port)) from None
    return sock


class WebServer:
    """Serves ``routes`` at host:port from threads of its own. Raises :class:`UserError` when it cannot listen."""

    def __init__(self, host: str, port: int, routes: List[Route], token: Optional[str] = None,
                 limits: Limits = Limits(), log: Callable[[str], None] = print, flag: str = "--serve") -> None:
        self._listener = listen(host, port, flag)
        self.host, self.port = host, int(self._listener.getsockname()[1])
        self.limits, self._log = limits, log
        self._token = token.strip().encode("utf-8") if token is not None else None
        self._router = Router(routes)
        self._lanes: Dict[str, Lane] = {QUICK: Lane(QUICK, limits.quick_threads, limits.quick_backlog),
                                        VIEWER: Lane(VIEWER, limits.max_viewers)}
        self._open: Set[socket.socket] = set()  # connections a lane is answering, for close()
        self._open_lock = threading.Lock()
        self._gate = Gate(self._listener, self, limits, log)

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}/"

    def route(self, request: Request) -> Route:
        """The token before anything else, then the route (the gate calls this once the head is complete)."""
        if self._token is not None and not hmac.compare_digest(given_token(request), self._token):
            raise HttpError(401, UNAUTHORISED, {"WWW-Authenticate": "Bearer"})
        return self._router.find(request)

    def hand_over(self, sock: socket.socket, request: Request, route: Route) -> None:
        if not self._lanes[route.lane].submit(lambda: self._answer(sock, request, route)):
            what = f"{self.limits.max_viewers} viewers already" if route.lane == VIEWER else "busy"
            raise HttpError(503, f"too many requests ({what}); try again later", {"Retry-After": "5"})

    def _answer(self, sock: socket.socket, request: Request, route: Route) -> None:
        with self._open_lock:
            self._open.add(sock)
        exchange = Exchange(sock, request)
        try:
            sock.setblocking(True)
            sock.settimeout(self.limits.send_timeout_s)
            route.handler(exchange)
        except OSError:
            pass  # the client went away or stalled past the send time-out: not our error
        except Exception as exc:
            self._log(f"web view: {type(exc).__name__} while answering {request.method} {request.path[:80]}: {exc}")
            if not exchange.answered:
                with contextlib.suppress(OSError):
                    exchange.text(500, "internal error: the app's log says what went wrong")
        finally:
            with self._open_lock:
                self._open.discard(sock)
            sock.close()

    def close(self, timeout_s: float = 2.0) -> None:
        """Stop accepting, end open connections (viewers too), free the port; about 0.2 s."""
        self._gate.close(timeout_s)
        self._listener.close()
        with self._open_lock:
            open_now = list(self._open)
        for sock in open_now:
            try:
                sock.shutdown(socket.SHUT_RDWR)  # wakes a thread blocked in sendall on a stalled viewer
            except OSError:
                pass
