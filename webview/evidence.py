"""The recorded events in the web view (issue #26), as routes of the web server:

    /api/events?limit=N        the newest N recorded events (default 20, at most 200), newest first:
                               {"recording": true, "events": [{"id", "stream", "event", "clip", "snapshot",
                               "thumb"}, ...]}; "clip"/"snapshot"/"thumb" say whether the file is written yet
    /evidence/ID.mp4           the event's clip (one byte range with ``Range: bytes=A-B``, for video players)
    /evidence/ID.jpg           its snapshot: the full frame with the track's box
    /evidence/ID-thumb.jpg     the crop of the box

Files are served by the recorder's id only: the recorder (a component of the live view with ``recent_events``
and ``evidence_file``, recording.Recording) maps an id to the file it wrote, so no part of a request path
reaches the file system. Unknown ids, files not written yet or removed, and anything else are 404. The token
is checked before any route (webview/server.py).
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Protocol, Tuple

from webview.protocol import HttpError
from webview.routes import VIEWER, Exchange, Route

DEFAULT_LIMIT, MAX_LIMIT = 20, 200
CHUNK = 64 * 1024
# the suffix of /evidence/NAME -> (kind the recorder knows, content type); longest first
SUFFIXES = (("-thumb.jpg", "thumb", "image/jpeg"), (".jpg", "snapshot", "image/jpeg"),
            (".mp4", "clip", "video/mp4"))
_RANGE = re.compile(r"^bytes=(\d*)-(\d*)$")


class EvidenceStore(Protocol):
    """What the routes ask of the recorder (recording.recorder.Recording implements it)."""

    def recent_events(self, limit: int) -> List[Dict[str, Any]]: ...

    def evidence_file(self, evidence_id: str, kind: str) -> Optional[Path]: ...


def byte_range(header: Optional[str], size: int) -> Optional[Tuple[int, int]]:
    """(first, last) byte of a ``Range`` header's one range in a file of ``size`` bytes; None: the whole
    file (no header, or several ranges: serving all is allowed). Raises 416 for a range outside the file."""
    if header is None or "," in header:
        return None
    found = _RANGE.match(header.strip())
    if found is None or found.groups() == ("", ""):
        return None  # not a byte range we know: the whole file, as RFC 9110 allows
    start, end = found.groups()
    if start == "":  # the last N bytes
        first, last = max(0, size - int(end)), size - 1
    else:
        first, last = int(start), min(size - 1, int(end)) if end else size - 1
    if first >= size or first > last:
        raise HttpError(416, f"the range {header.strip()[:40]} is outside the {size} bytes of the file",
                        {"Content-Range": f"bytes */{size}"})
    return first, last


class EvidenceEndpoints:
    """``components``: the live view's components by name (read at each request: the recorder is added after
    the server starts)."""

    def __init__(self, components: Mapping[str, Any]) -> None:
        self.components = components

    def routes(self) -> List[Route]:
        return [Route("GET", "/api/events", self.events),
                Route("GET", "/evidence/{name}", self.file, lane=VIEWER)]  # a clip holds its thread while sent

    def store(self) -> Optional[EvidenceStore]:
        for component in list(self.components.values()):
            if hasattr(component, "recent_events") and hasattr(component, "evidence_file"):
                return component
        return None

    def events(self, exchange: Exchange) -> None:
        values = exchange.request.query.get("limit", [str(DEFAULT_LIMIT).encode()])
        text = values[0].decode("ascii", "replace")
        if not text.isdigit() or not 1 <= int(text) <= MAX_LIMIT:
            exchange.text(400, f"limit={text[:20]}: give a number of events from 1 to {MAX_LIMIT}")
            return
        store = self.store()
        exchange.json(200, {"recording": store is not None,
                            "events": store.recent_events(int(text)) if store is not None else []})

    def file(self, exchange: Exchange) -> None:
        name, store = exchange.request.params["name"], self.store()
        for suffix, kind, ctype in SUFFIXES:
            if name.endswith(suffix) and store is not None:
                path = store.evidence_file(name[:-len(suffix)], kind)
                if path is not None:
                    self._send_file(exchange, path, ctype)
                    return
                break
        exchange.text(404, "not found: no recorded file has this id (unknown, not written yet, or removed)")

    @staticmethod
    def _send_file(exchange: Exchange, path: Path, ctype: str) -> None:
        try:
            handle = open(path, "rb")
        except OSError:  # removed by retention since it was looked up
            exchange.text(404, "not found: the file was removed")
            return
        with handle:
            size = os.fstat(handle.fileno()).st_size
            try:
                wanted = byte_range(exchange.request.headers.get("range"), size)
            except HttpError as refused:
                exchange.text(refused.status, refused.message, refused.headers)
                return
            first, last = wanted or (0, size - 1)
            headers = {"Accept-Ranges": "bytes", "Content-Length": str(last - first + 1)}
            if wanted is not None:
                headers["Content-Range"] = f"bytes {first}-{last}/{size}"
            if not exchange.start(206 if wanted is not None else 200, ctype, headers):
                return
            handle.seek(first)
            left = last - first + 1
            while left > 0:
                chunk = handle.read(min(CHUNK, left))
                if not chunk:
                    break  # shorter than it was: the client sees a short body, as with any cut connection
                exchange.write(chunk)
                left -= len(chunk)
