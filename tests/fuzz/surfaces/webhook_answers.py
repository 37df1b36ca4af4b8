"""Fuzz surface: what a webhook endpoint answers, and the webhook URLs given to --webhook.

"webhook answers": a :class:`tests.scripted_http.ScriptedPeer` on 127.0.0.1 answers every POST of a
:class:`analytics.sinks.WebhookSink` with a generated script: statuses and reasons, too many or too long
headers, a bad Content-Length or chunking, an answer trickled a byte at a time, an oversized body, a close or a
reset at any point, random or damaged bytes. The sink's counts must add up (each event sent or failed once,
every failure handed over with a one-line reason), a status must have its meaning (2xx sent; 408, 429, 5xx
retried; others failed at once), and close must return within its deadline. An event the sink failed is the
clean refusal (a UserError naming the first reason); all delivered is the valid result.

"webhook url": generated URLs through ``check_webhook_url``: a UserError, or a target that http.client can
build the request for (nothing is sent).
"""

from __future__ import annotations

import random
import time
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

from runtimes.errors import UserError
from tests.fuzz.cases import Case, Parser, mutate
from tests.scripted_http import ScriptedPeer, Step, answer

EVENTS = 2
TIMEOUT_S = 0.4  # each exchange's bound
CLOSE_S = 3.0  # close's: enough for 2 events x 2 attempts x TIMEOUT_S
SLACK_S = 3.0  # close's grace (1 s) and a loaded machine
STATUSES = [200, 201, 204, 299, 101, 301, 302, 304, 400, 401, 404, 408, 413, 429, 500, 502, 503, 599, 600, 999]


def _status(rng: random.Random) -> Tuple[str, List[Step], Optional[int]]:
    status = rng.choice(STATUSES)
    reason = rng.choice(["OK", "", "x" * rng.randint(1, 3000), "r\u00e9ponse".encode("utf-8").decode("latin-1")])
    body = rng.randbytes(rng.choice([0, 10, 5000]))
    return f"status {status}, reason of {len(reason)} chars", [("send", answer(status, reason, body))], status


def _headers(rng: random.Random) -> Tuple[str, List[Step], Optional[int]]:
    kind = rng.choice(["many", "long", "length", "chunked", "folded"])
    if kind == "many":
        count = rng.choice([99, 150, 5000])
        extra = "".join(f"X-{i}: {i}\r\n" for i in range(count))
        return f"{count} headers", [("send", answer(200, headers=extra))], None
    if kind == "long":
        size = rng.choice([1000, 70000, 300000])
        return f"a header of {size} bytes", [("send", answer(200, headers=f"X-Long: {'a' * size}\r\n"))], None
    if kind == "length":
        value = rng.choice(["abc", "-1", "99999999999999999999", "5, 6", ""])
        return f"Content-Length {value!r}", [("send", f"HTTP/1.1 200 OK\r\nContent-Length: {value}\r\n\r\nhello"
                                               .encode())], None
    if kind == "chunked":
        chunks = rng.choice([b"5\r\nhello\r\n0\r\n\r\n", b"zz\r\nhello\r\n", b"ffffffffffff\r\nab", b"5\r\nhel"])
        return f"chunked body {chunks[:12]!r}", [("send", b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
                                                  + chunks)], None
    return "folded header", [("send", b"HTTP/1.1 204 No Content\r\nX-A: 1\r\n  continued\r\n\r\n")], None


def _trickle(rng: random.Random) -> Tuple[str, List[Step], Optional[int]]:
    whole = answer(rng.choice([200, 503]), body=b"b" * 200)
    cut = rng.choice([0, 5, len(whole) - 100])  # trickled from the status line, a header, or the body
    interval = rng.choice([0.05, 0.2])
    steps: List[Step] = [("send", whole[:cut]), ("trickle", whole[cut:], interval)]
    return f"answer trickled from byte {cut}, a byte every {interval} s", steps, None


def _big(rng: random.Random) -> Tuple[str, List[Step], Optional[int]]:
    size = rng.choice([1 << 20, 4 << 20])
    if rng.random() < 0.5:
        head = f"HTTP/1.1 200 OK\r\nContent-Length: {50 << 20}\r\n\r\n".encode()
        return f"a 50 MB body announced, {size} bytes sent", [("send", head + bytes(size))], 200
    return f"a chunked body of {size} bytes, never ended", [
        ("send", b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n" + b"1000\r\n" + bytes(4096) + b"\r\n"),
        ("send", (b"1000\r\n" + bytes(4096) + b"\r\n") * (size // 4096)), ("hold",)], 200


def _close(rng: random.Random) -> Tuple[str, List[Step], Optional[int]]:
    whole = answer(200, body=b"done")
    cut = rng.choice([0, 4, 12, 20, len(whole) - 2])
    end: Step = rng.choice([("close",), ("reset",), ("hold",)])
    return f"{end[0]} after {cut} bytes of the answer", [("send", whole[:cut]), end], None


def _garbage(rng: random.Random) -> Tuple[str, List[Step], Optional[int]]:
    if rng.random() < 0.5:
        what, data = mutate(answer(200, body=b'{"ok": true}'), rng, header=20)
        return f"answer {what}", [("send", data)], None
    data = rng.choice([rng.randbytes(rng.choice([1, 100, 5000])), b"HTTP/1.1 abc OK\r\n\r\n", b"\r\n\r\n",
                       b"ICY 200 OK\r\n\r\n", b"HTTP/9.9 200 OK\r\n\r\n", b"HTTP/1.1 200\r\n\r\n"])
    return f"bytes {data[:20]!r}", [("send", data)], None


KINDS = [_status, _headers, _trickle, _big, _close, _garbage]


def _expected_counts(status: Optional[int], connections: int, stats: Dict[str, int]) -> Optional[str]:
    """What a status means: 2xx delivered, 408/429/5xx retried once, others failed at once."""
    if status is None:
        return None
    if 200 <= status < 300:
        wanted = {"sent": EVENTS, "failed": 0, "queued": 0}
    else:
        wanted = {"sent": 0, "failed": EVENTS, "queued": 0}
    attempts = EVENTS * (2 if status >= 500 or status in (408, 429) else 1)
    if stats != wanted or connections != attempts:
        return f"status {status}: {stats} in {connections} connections, expected {wanted} in {attempts}"
    return None


def _problem(result: Dict[str, Any]) -> Optional[str]:
    stats, reasons = result["stats"], result["reasons"]
    if stats["sent"] + stats["failed"] != EVENTS or stats["queued"]:
        return f"counts do not add up: {stats} for {EVENTS} events"
    if len(reasons) != stats["failed"]:
        return f"{stats['failed']} failed but {len(reasons)} handed over as undelivered"
    if any("\n" in r or len(r) > 400 for r in reasons):
        return f"a reason not fit for one line: {max(reasons, key=len)[:100]!r}"
    if result["seconds"] > CLOSE_S + SLACK_S:
        return f"took {result['seconds']:.1f} s, past close's deadline of {CLOSE_S} s"
    return _expected_counts(result["status"], result["connections"], stats)


def make_answers(rng: random.Random, index: int, folder: Path, assets: Path) -> Case:
    from analytics.sinks import WebhookSink

    what, steps, status = KINDS[index % len(KINDS)](rng)

    def run() -> Dict[str, Any]:
        reasons: List[str] = []
        with ScriptedPeer(steps) as peer:
            sink = WebhookSink(peer.url, timeout_s=TIMEOUT_S, retries=1, backoff_s=0.01, max_backoff_s=0.01,
                               queue_size=EVENTS, on_undelivered=lambda name, reason, event: reasons.append(reason))
            started = time.monotonic()
            for seq in range(EVENTS):
                sink.submit({"type": "counts", "stream": "fuzz", "seq": seq})
            sink.close(CLOSE_S)
            result = {"stats": sink.stats(), "reasons": reasons, "seconds": time.monotonic() - started,
                      "connections": peer.connections, "status": status}
        if _problem(result) is None and result["stats"]["failed"]:
            raise UserError(f"{result['stats']['failed']} of {EVENTS} events failed: {reasons[0]}")
        return result
    return Case(what, run, _problem)


URL_PARTS = {
    "scheme": ["http", "https", "HTTP", "ftp", "", "http:", "ht tp"],
    "host": ["127.0.0.1", "[::1]", "[::1", "::1", "", "localhost", "exa mple", "ex\u00e4mple", "h\x00st",
             "user:pw@127.0.0.1", "%31%32%37.0.0.1", "a" * 70, "\u00ff" * 70],
    "port": ["", ":8080", ":0", ":65535", ":65536", ":99999", ":-1", ":abc", ":08080", ":", ":8080:90"],
    "path": ["/events", "", "/e?x=1#f", "/\u00e9v\u00e9nements", "/a b", "/a\r\nX: 1", "/%zz", "/a\x7f", "?q",
             "/" + "p" * 5000],
}


def make_url(rng: random.Random, index: int, folder: Path, assets: Path) -> Case:
    from analytics.webhook import check_webhook_url

    parts = {key: rng.choice(values) if index % 4 else values[0] for key, values in URL_PARTS.items()}
    url = f"{parts['scheme']}://{parts['host']}{parts['port']}{parts['path']}"
    if index % 7 == 3:
        url = url.replace(rng.choice(url or "x"), rng.choice(["[", "]", "@", "%", "#", "\t", ""]), 1)

    def check(target: Any) -> Optional[str]:
        import http.client

        if not target.host or not 0 < target.port < 65536 or not target.path.startswith(("/", "?")):
            return f"accepted with {target}"
        try:  # what every POST would do first
            probe = http.client.HTTPConnection(target.host, target.port)
            probe.putrequest("POST", target.path)
        except Exception as exc:
            return f"accepted, but a POST cannot be built: {type(exc).__name__}: {exc}"
        return None
    return Case(f"url {url[:80]!r}", lambda: check_webhook_url(url), check)


PARSERS = [
    Parser("webhook answers", make_answers, timeout_s=30.0, ci_count=12, full_count=120),
    Parser("webhook url", make_url, ci_count=40, full_count=300),
]
