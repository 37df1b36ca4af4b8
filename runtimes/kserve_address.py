"""A served model's URL taken apart and checked: ``http[s]://HOST:PORT/NAME`` or ``grpc://HOST:PORT/NAME``.

Checked here, once, so that a mistyped URL is one line naming what is wrong rather than an error deep inside
a client library: the port a number from 1 to 65535 (gRPC would silently wrap 99999 to another port), an
IPv6 host in brackets, no user or query parts (the KServe clients send neither), a model name.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass

from runtimes.errors import UserError

SCHEMES = ("http://", "https://", "grpc://")
DEFAULT_PORTS = {"http://": 8000, "https://": 443, "grpc://": 8001}
_HOST_NAME = re.compile(r"^[A-Za-z0-9]([A-Za-z0-9.-]*[A-Za-z0-9])?$")
_MODEL_NAME = re.compile(r"^[^\s/?#%]+$")
_LOOPBACK = ("127.", "localhost", "::1")


@dataclass(frozen=True)
class Endpoint:
    """A served model: ``scheme`` ("grpc://"), ``host`` (IPv6 without brackets), ``port``, ``model``."""

    scheme: str
    host: str
    port: int
    model: str

    @property
    def address(self) -> str:
        """``HOST:PORT``, an IPv6 host in brackets."""
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"

    @property
    def url(self) -> str:
        return f"{self.scheme}{self.address}/{self.model}"

    @property
    def is_loopback(self) -> bool:
        return self.host.lower().startswith(_LOOPBACK)


def parse_url(url: str) -> Endpoint:
    """The :class:`Endpoint` of ``http[s]://HOST[:PORT]/NAME`` or ``grpc://HOST[:PORT]/NAME`` (``/v2/models/NAME``
    is accepted too; the port defaults to 8000, 443 or 8001); anything else is a :class:`UserError`."""
    scheme = next((s for s in SCHEMES if url.lower().startswith(s)), None)
    if scheme is None:
        raise UserError(f"{url}: a served model's URL starts with {', '.join(SCHEMES)}")
    example = f"e.g. {scheme}127.0.0.1:{DEFAULT_PORTS[scheme]}/MODEL"
    authority, _, path = url[len(scheme):].rstrip("/").partition("/")
    if path.startswith("v2/models/"):
        path = path[len("v2/models/"):]
    if not authority or not path or not _MODEL_NAME.match(path):
        raise UserError(f"{url}: name the model after the server's address, without '?', '#' or '/' in it "
                        f"({example})")
    if "@" in authority:
        raise UserError(f"{url}: user names ('@') are not sent to KServe servers; give HOST:PORT only ({example})")
    host, port_text = _split_authority(url, authority, example)
    return Endpoint(scheme, host, _port(url, port_text, scheme, example), path)


def _split_authority(url: str, authority: str, example: str) -> "tuple[str, str]":
    """(host, port text or "") of ``HOST[:PORT]`` or ``[IPV6][:PORT]``."""
    if authority.startswith("["):
        host, bracket, rest = authority[1:].partition("]")
        if not bracket or (rest and not rest.startswith(":")):
            raise UserError(f"{url}: '{authority}' is not [IPV6]:PORT (a ']' is missing or misplaced); "
                            "e.g. http://[::1]:8000/MODEL")
        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            raise UserError(f"{url}: '{host}' in brackets is not an IPv6 address; e.g. http://[::1]:8000/MODEL") \
                from None
        return host, rest[1:]
    host, _, port_text = authority.partition(":")
    if not _HOST_NAME.match(host):
        raise UserError(f"{url}: '{host}' is not a host name or IPv4 address (IPv6 goes in brackets: [::1]); "
                        f"{example}")
    return host, port_text


def _port(url: str, text: str, scheme: str, example: str) -> int:
    if not text:
        return DEFAULT_PORTS[scheme]
    if not text.isdigit() or not text.isascii():
        raise UserError(f"{url}: port '{text}' is not a number; {example}")
    port = int(text)
    if not 1 <= port <= 65535:
        raise UserError(f"{url}: port {port} is out of range (1 to 65535); {example}")
    return port
