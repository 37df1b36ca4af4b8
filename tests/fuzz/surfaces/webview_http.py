"""The web view's HTTP requests (webview/gate.py, protocol.py, routes.py, server.py): raw requests built from
methods, paths, query strings, tokens in the query or the header (in any case, with spaces, wrong, twice),
headers, bodies and sizes around every bound, sent whole, in pieces or cut short, some with random bytes
damaged; sent to a real LiveView on 127.0.0.1 with a token and a short header deadline.

Valid: a well-formed HTTP answer whose status fits the token (never 401 with the right one, never past the
token check without it), then the server still answers an authorised /healthz. A status of 400 or more is the
server refusing the request: reported as the one-line error. No answer in time, a malformed one or a server
that stops answering is mishandled.
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any, List, Optional, Tuple
from urllib.parse import quote

from runtimes.errors import UserError
from tests.fuzz.cases import Case, Parser, mutate

TOKEN = "fuzz tökén"  # a space and non-ASCII: both must work in the header and the query
DEADLINE_S = 0.5
# Statuses the server may give before it has read the token (the request cannot be parsed): anything else
# from a request without the right token means the token check was passed by.
BEFORE_TOKEN = {400, 401, 408, 414, 431, 505}
PATHS = ["/", "/healthz", "/metrics", "/api/state", "/snapshot/cam0.jpg", "/snapshot/cam9.jpg",
         "/stream/cam0.mjpg", "/static/app.js", "/static/app.css", "/nope", "/static/../../etc/passwd",
         "/static/%2e%2e/%2e%2e/etc/passwd", "//etc/passwd", "/snapshot/%2e%2e%2fcam0.jpg", "/healthz/",
         "/stream/cam0.mjpg/x", "/%ff%fe", "/a%zz", "/" + "a" * 9000]
METHODS = ["GET"] * 6 + ["HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "get", "G\x00T", "BREW", "", "X" * 300]
VERSIONS = ["HTTP/1.1"] * 6 + ["HTTP/1.0", "HTTP/2.0", "HTTP/0.9", "http/1.1", "HTTP/1.1x", "", "HTTP/1.1 extra"]


def _token_parts(rng: random.Random, vary: bool) -> Tuple[str, List[bytes], str]:
    """(query field, header lines, what the token is: right / wrong / none); the right one unless ``vary``."""
    right, wrong = TOKEN.encode(), rng.choice([b"nope", TOKEN.encode()[:-1], b"", TOKEN.upper().encode()])
    scheme = rng.choice([b"Bearer", b"bearer", b"BEARER", b"BeArEr"])
    spaces = (b" " * rng.randint(1, 3), b" " * rng.randint(0, 2))
    if not vary:
        if rng.random() < 0.3:
            return "token=" + quote(TOKEN), [], "right"
        return "", [b"Authorization: " + scheme + spaces[0] + right + spaces[1]], "right"
    kind = rng.randrange(4)
    if kind == 0:
        return "", [], "none"
    if kind == 1:
        return "token=" + quote(wrong), [], "wrong"
    if kind == 2:
        return "", [b"Authorization: " + rng.choice([scheme + b" " + wrong, b"Basic " + right, right])], "wrong"
    return "", [b"Authorization: Bearer " + right, b"Authorization: Bearer " + right], "none"  # twice: refused


def _headers(rng: random.Random, vary: bool) -> List[bytes]:
    if not vary:
        return [b"Host: 127.0.0.1"] if rng.random() < 0.7 else []
    return rng.choice([[b"X-Big: " + b"x" * rng.choice([100, 8000, 20000])],
                       [b"X-N: 1"] * rng.choice([10, 64, 65, 200]),
                       [rng.choice([b"No colon here", b" folded: line", b"Bad Name: x", b": empty", b"X\x00: y"])],
                       [b"Content-Length: " + rng.choice([b"3", b"-1", b"99999999999999", b"abc", b"70000"])],
                       [b"Transfer-Encoding: chunked"]])


PARTS = ["method", "path", "query", "token", "headers", "version", "eol", "body", "cut"]


def _request(rng: random.Random) -> Tuple[bytes, str, str]:
    """(bytes, token kind, what was varied): a good request with no, one or two of its parts varied."""
    vary = set(rng.sample(PARTS, rng.choice([0, 1, 1, 1, 2])))
    query, auth, token = _token_parts(rng, "token" in vary)
    extra = ([f"f{i}={rng.choice(['1', '%zz', '%ff', 'a+b'])}" for i in range(rng.choice([2, 31, 32, 33, 100]))]
             if "query" in vary else [])
    path = rng.choice(PATHS) if "path" in vary else rng.choice(["/healthz", "/metrics", "/api/state", "/"])
    target = path + ("?" + "&".join([part for part in [query] + extra if part]) if query or extra else "")
    method = rng.choice(METHODS) if "method" in vary else "GET"
    version = rng.choice(VERSIONS) if "version" in vary else "HTTP/1.1"
    line = " ".join(part for part in [method, target, version] if part)
    eol = b"\n" if "eol" in vary else b"\r\n"
    headers = auth + _headers(rng, "headers" in vary)
    rng.shuffle(headers)
    body = rng.choice([b"abc", b"x" * 70000]) if "body" in vary else b""
    data = eol.join([line.encode("utf-8")] + headers) + eol + eol + body
    if "cut" in vary:
        data, token = data[:rng.randrange(len(data))], "unknown"  # incomplete: 408 at the deadline
    return data, token, "+".join(sorted(vary)) or "nothing"


def _problem(status: int, token: str) -> Optional[str]:
    if token == "right" and status == 401:
        return "401 for the right token"
    if token in ("wrong", "none") and status not in BEFORE_TOKEN:
        return f"{status} without the right token: the token check was passed by"
    return None


def make_webview_request(rng: random.Random, index: int, folder: Path, assets: Path) -> Case:
    import numpy as np

    from tests.hostile_clients import exchange, get
    from webview.gate import Limits
    from webview.live import LiveView

    if index % 8 == 7:
        what, data = mutate(_request(rng)[0], rng)
        token = "unknown"
    else:
        data, token, varied = _request(rng)
        what = f"{len(data)} bytes, {varied} varied, token {token}"
    pieces = rng.choice([1, 1, 1, 2, 3])

    def run() -> Any:
        view = LiveView(["cam0"], serve=("127.0.0.1", 0), token=TOKEN, log=lambda _: None,
                        limits=Limits(header_timeout_s=DEADLINE_S, linger_s=0.2))
        try:
            view.on_status({"cam0": {"name": "cam0", "alive": True}})
            view.on_frame("cam0", np.zeros((24, 32, 3), np.uint8), {"frame": 0})
            answer = exchange(view.server.port, data, timeout_s=DEADLINE_S + 5, pieces=pieces,
                              head_only=data.startswith(b"HEAD "))
            if get(view.server.port, "/healthz", TOKEN, timeout_s=5).status != 200:
                return "the server stopped answering an authorised /healthz"
        finally:
            view.close()
        problem = _problem(answer.status, token)
        if problem is None and answer.status >= 400:
            reason = answer.body.decode("utf-8", "replace").strip().splitlines()[:1] or [answer.reason]
            raise UserError(f"HTTP {answer.status}: {reason[0][:200]}")
        return problem or answer

    return Case(f"{what}: {data[:60]!r}", run, lambda result: result if isinstance(result, str) else None)


PARSERS = [Parser("webview http request", make_webview_request, timeout_s=20, ci_count=40, full_count=400)]
