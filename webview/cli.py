"""The camera app's live-view flags: ``--serve``, ``--serve-token``, ``--serve-header-timeout`` and
``--rtsp-out``.

    from webview.cli import add_arguments, from_args
    add_arguments(parser)
    view = from_args(args, ["cam0", "cam1"])     # None when neither --serve nor --rtsp-out was given
    ... view.on_frame(name, annotated, record); view.on_status(statuses) ...
    view.close()
"""

from __future__ import annotations

import argparse
import ipaddress
import re
from typing import List, Optional, Tuple

from runtimes.errors import UserError
from webview.gate import Limits
from webview.live import LiveView

DEFAULT_HOST = "127.0.0.1"
DEFAULT_RTSP_PATH = "live"
MAX_HEADER_TIMEOUT_S = 600.0  # longer only helps a client that holds connections open
_HOST_PORT = re.compile(r"^(?:\[(?P<v6>[^\]]+)\]|(?P<host>[^:/\[\]]+)):(?P<port>\d+)$")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("live view (web page, Prometheus metrics, health, snapshots, RTSP)")
    group.add_argument("--serve", metavar="HOST:PORT",
                       help="serve the live page (/), /metrics, /healthz, /snapshot/STREAM.jpg and "
                            "/stream/STREAM.mjpg here; a bare PORT means 127.0.0.1:PORT, 0.0.0.0:PORT serves every "
                            "interface (default: off)")
    group.add_argument("--serve-token", metavar="TOKEN",
                       help="require this token on every request, as ?token=TOKEN or Authorization: Bearer TOKEN, "
                            "spaces around it ignored (default: none)")
    group.add_argument("--serve-header-timeout", metavar="SECONDS", type=float,
                       default=Limits.header_timeout_s,
                       help="a client must send its whole request within this time of connecting, else it is "
                            "closed (default: %(default)g)")
    group.add_argument("--rtsp-out", metavar="[HOST:]PORT/PATH",
                       help="publish the annotated video over RTSP at rtsp://HOST:PORT/PATH (one stream) or "
                            f"PATH/STREAM (several); HOST defaults to {DEFAULT_HOST}, PATH to {DEFAULT_RTSP_PATH} "
                            "(default: off)")


def _port(text: str, flag: str, spec: str) -> int:
    port = int(text)
    if not 0 <= port <= 65535:
        raise UserError(f"{flag} {spec}: port {port} is out of range; give 1-65535 (0: any free port)")
    return port


def parse_host_port(spec: str, flag: str = "--serve") -> Tuple[str, int]:
    """"8080" -> ("127.0.0.1", 8080); "0.0.0.0:8080", "[::1]:8080", "localhost:8080" as written."""
    spec = spec.strip()
    if spec.isdigit():
        return DEFAULT_HOST, _port(spec, flag, spec)
    match = _HOST_PORT.match(spec)
    if match is None:
        raise UserError(f"{flag} {spec}: give HOST:PORT or a bare PORT, e.g. {flag} 127.0.0.1:8080 or {flag} 8080")
    host = match.group("v6") or match.group("host")
    if match.group("v6"):
        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            raise UserError(f"{flag} {spec}: [{host}] is not an IPv6 address") from None
    return host, _port(match.group("port"), flag, spec)


def parse_rtsp_out(spec: str) -> Tuple[str, int, str]:
    """"8554/live" -> ("127.0.0.1", 8554, "live"); "0.0.0.0:8554/cams"; "8554" -> path "live"."""
    where, _, path = spec.strip().partition("/")
    path = path.strip("/") or DEFAULT_RTSP_PATH
    if not re.match(r"^[A-Za-z0-9._~/-]+$", path):
        raise UserError(f"--rtsp-out {spec}: the path may hold letters, digits and . _ ~ - / only")
    host, port = parse_host_port(where, "--rtsp-out")
    return host, port, path


def from_args(args: argparse.Namespace, stream_names: List[str], log=print) -> Optional[LiveView]:
    """The LiveView the flags ask for, started; None when neither --serve nor --rtsp-out was given.
    Raises :class:`UserError` (one line) for a bad flag, an address that cannot be bound, a missing package."""
    serve, token, rtsp_out = getattr(args, "serve", None), getattr(args, "serve_token", None), \
        getattr(args, "rtsp_out", None)
    if token is not None and not serve:
        raise UserError("--serve-token needs --serve HOST:PORT")
    if token is not None and not token.strip():
        raise UserError("--serve-token: the token is empty; give a secret string")
    if not serve and not rtsp_out:
        return None
    if not stream_names:
        raise UserError("--serve/--rtsp-out: no streams to show")
    address = parse_host_port(serve) if serve else None
    rtsp = parse_rtsp_out(rtsp_out) if rtsp_out else None
    limits = Limits(header_timeout_s=_header_timeout(getattr(args, "serve_header_timeout", Limits.header_timeout_s)))
    view = LiveView(stream_names, serve=address, token=token, rtsp=rtsp, log=log, limits=limits)
    if view.url is not None:
        log(f"web view: {view.url}" + ("?token=... (token required)" if token else ""))
        if address is not None and not _loopback(address[0]) and token is None:
            log(f"web view: serving {address[0]} without --serve-token: anyone who reaches this port can watch")
    return view


def _header_timeout(seconds: float) -> float:
    if not 0 < seconds <= MAX_HEADER_TIMEOUT_S:  # also NaN
        raise UserError(f"--serve-header-timeout {seconds:g}: give seconds above 0 and up to "
                        f"{MAX_HEADER_TIMEOUT_S:g}")
    return seconds


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
