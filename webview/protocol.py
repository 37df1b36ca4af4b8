"""HTTP/1.x on the wire for the web view, bounded: parse a request head, find the token it carries, write an
answer. No I/O here: webview/gate.py reads the bytes, webview/routes.py writes the answers.

Every size a client controls has a limit; a request over one is refused with the status that names it (414 a
request line, 431 the headers, 413 a body) before anything else reads it.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field
from email.utils import formatdate
from http import HTTPStatus
from typing import Any, Dict, List, Optional, Tuple
from urllib.parse import unquote_to_bytes

MAX_REQUEST_LINE = 8 * 1024  # bytes: a URL with a long token and query fits many times over
MAX_HEAD = 16 * 1024  # request line and headers together
MAX_HEADERS = 64
MAX_QUERY_FIELDS = 32
SERVER_NAME = "ssd-edge-webview"

_TOKEN_CHARS = re.compile(rb"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")  # RFC 9110 token: methods and header names
_VERSION = re.compile(rb"^HTTP/(\d)\.(\d)$")
_HEAD_END = re.compile(rb"\r?\n\r?\n")


class HttpError(Exception):
    """A request refused with ``status`` and a one-line ``message`` (the answer's body)."""

    def __init__(self, status: int, message: str, headers: Optional[Dict[str, str]] = None) -> None:
        super().__init__(message)
        self.status, self.message, self.headers = status, message, headers or {}


@dataclass
class Request:
    method: str
    target: str  # as sent: path and query
    path: str  # still percent-encoded: routes decode their own parts
    query: Dict[str, List[bytes]]  # field -> values, percent-decoded to bytes
    headers: Dict[str, str]  # lower-case name -> value (bytes as latin-1, so no byte is lost)
    body: bytes = b""
    params: Dict[str, str] = field(default_factory=dict)  # the route's {name} parts, decoded

    def content_length(self) -> int:
        """The body's declared size: 0 without one. Chunked bodies are not taken (411: send a length)."""
        if "transfer-encoding" in self.headers:
            raise HttpError(411, "send the body with Content-Length, not Transfer-Encoding")
        text = self.headers.get("content-length", "0").strip()
        if not text.isdigit() or len(text) > 12:
            raise HttpError(400, f"Content-Length {text[:40]!r} is not a size in bytes")
        return int(text)


def head_end(buffer: bytes) -> Tuple[int, int]:
    """(end of the head, start of the body) in ``buffer``; (-1, -1) while the blank line has not come."""
    found = _HEAD_END.search(buffer)
    return (found.start(), found.end()) if found else (-1, -1)


def oversized_head(buffer: bytes) -> Optional[HttpError]:
    """The refusal for a head still incomplete in ``buffer``, once it is longer than any accepted one."""
    line_end = buffer.find(b"\n")
    if (line_end < 0 and len(buffer) > MAX_REQUEST_LINE) or line_end > MAX_REQUEST_LINE:
        return HttpError(414, f"the request line is longer than {MAX_REQUEST_LINE} bytes")
    if len(buffer) > MAX_HEAD:
        return HttpError(431, f"the request head is longer than {MAX_HEAD} bytes")
    return None


def parse_head(head: bytes) -> Request:
    """The request in ``head`` (request line and headers, without the blank line). Raises :class:`HttpError`."""
    if len(head) > MAX_HEAD:
        raise HttpError(431, f"the request head is longer than {MAX_HEAD} bytes")
    lines = [line[:-1] if line.endswith(b"\r") else line for line in head.split(b"\n")]
    if len(lines[0]) > MAX_REQUEST_LINE:
        raise HttpError(414, f"the request line is longer than {MAX_REQUEST_LINE} bytes")
    parts = lines[0].split(b" ")
    if len(parts) != 3 or not _TOKEN_CHARS.match(parts[0]):
        raise HttpError(400, "the request line is not METHOD TARGET HTTP/1.1")
    method, target, version = parts
    found = _VERSION.match(version)
    if found is None:
        raise HttpError(400, "the request line is not METHOD TARGET HTTP/1.1")
    if found.group(1) != b"1":
        raise HttpError(505, "only HTTP/1.0 and HTTP/1.1 are served")
    if not target.startswith(b"/") or not all(33 <= byte < 127 for byte in target) or b"#" in target:
        raise HttpError(400, "the target is not a path: give /PATH?QUERY in printable ASCII")
    text = target.decode("ascii")
    path, _, query = text.partition("?")
    return Request(method.decode("ascii"), text, path, parse_query(query), parse_headers(lines[1:]))


def parse_headers(lines: List[bytes]) -> Dict[str, str]:
    if len(lines) > MAX_HEADERS:
        raise HttpError(431, f"more than {MAX_HEADERS} headers")
    headers: Dict[str, str] = {}
    for line in lines:
        name, colon, value = line.partition(b":")
        if not colon or not _TOKEN_CHARS.match(name):  # also a folded line (leading space): obsolete, refused
            raise HttpError(400, "a header line is not NAME: VALUE")
        key = name.decode("ascii").lower()
        if key in headers and key in ("authorization", "content-length", "transfer-encoding", "host"):
            raise HttpError(400, f"the {key} header is given twice")
        text = value.strip(b" \t").decode("latin-1")
        headers[key] = headers[key] + ", " + text if key in headers else text
    return headers


def parse_query(query: str) -> Dict[str, List[bytes]]:
    fields = [part for part in query.split("&") if part]
    if len(fields) > MAX_QUERY_FIELDS:
        raise HttpError(400, f"more than {MAX_QUERY_FIELDS} query fields")
    out: Dict[str, List[bytes]] = {}
    for part in fields:
        name, _, value = part.partition("=")
        key = unquote_to_bytes(name.replace("+", " ")).decode("utf-8", "replace")
        out.setdefault(key, []).append(unquote_to_bytes(value.replace("+", " ")))
    return out


def given_token(request: Request) -> bytes:
    """The token the request carries: ``Authorization: Bearer TOKEN`` (scheme in any case, spaces around the
    token ignored, any bytes), else ``?token=TOKEN`` (percent-encoded UTF-8); b"" without one."""
    scheme, _, credentials = request.headers.get("authorization", "").strip(" \t").partition(" ")
    if scheme.lower() == "bearer" and credentials.strip(" \t"):
        return credentials.strip(" \t").encode("latin-1")  # the header's own bytes (see Request.headers)
    return request.query.get("token", [b""])[0].strip(b" \t")


def answer_head(status: int, ctype: str, headers: Optional[Dict[str, str]] = None,
                length: Optional[int] = None) -> bytes:
    """Status line and headers of an answer; every answer closes its connection (one request per connection)."""
    lines = [f"HTTP/1.1 {status} {_reason(status)}", f"Server: {SERVER_NAME}",
             f"Date: {formatdate(usegmt=True)}", f"Content-Type: {ctype}", "Cache-Control: no-store",
             "X-Content-Type-Options: nosniff", "Connection: close"]
    if length is not None:
        lines.append(f"Content-Length: {length}")
    lines.extend(f"{key}: {value}" for key, value in (headers or {}).items())
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


def text_answer(status: int, text: str, headers: Optional[Dict[str, str]] = None) -> bytes:
    body = (text + "\n").encode("utf-8")
    return answer_head(status, "text/plain; charset=utf-8", headers, len(body)) + body


def _reason(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Status"


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


def json_bytes(value: Any) -> bytes:
    return json.dumps(plain_json(value)).encode("utf-8")
