"""The control API (issue #27) on the web view's server: the routes that change a running box.

    GET    /api/config           the effective configuration, secrets redacted
    GET    /api/streams          {"streams": [entry, ...]}: each stream's configuration, state, frames, fps
    POST   /api/streams          add a stream (body: one ``streams[]`` entry of the configuration file) -> 201
    PATCH  /api/streams/NAME     change ``zones``, ``score_threshold``, ``keep_classes`` of a running stream
    DELETE /api/streams/NAME     stop a stream, its outputs finalised
    POST   /api/models/NAME      swap a model (body: a ``models`` entry, optional ``class_map``, ``max_map_drop``,
                                 ``validation``); the old one keeps running when the new one fails its checks
    POST   /api/reload           read the configuration file again and apply the difference (as SIGHUP)

The token is checked before any route (webview/gate.py) and a body over its route's limit is refused with 413
before it is read. Here a body must be one JSON object (UTF-8, no key twice, no NaN), names must be usable in
a URL and a file name, and what a request names is held to what cannot reach the file system beyond opening
a live source or a model: a stream's source is a camera or a URL (a file or a GStreamer pipeline, which can
write files, goes in the configuration file), zones are inline (a path would read any file), a model's path
is an absolute model file. Each refusal is 400 and ``{"error": "one line"}``.

Every call goes to a control object (box/control.py's BoxControl, set with :meth:`LiveView.set_control`);
without one /api answers 503. A refusal of the control is an exception carrying ``status`` and ``message``
(box.control.ControlError; duck-typed, since webview sits below box in the layers), answered as that status
and ``{"error": message}``.
"""

from __future__ import annotations

import json
import re
import threading
from typing import Any, Callable, Dict, List, Optional

from webview.protocol import HttpError, json_bytes
from webview.routes import Exchange, Route

STREAM_BODY = 256 * 1024  # a stream with inline zones (a few hundred polygons); the whole file is 1 MiB at most
MODEL_BODY = 16 * 1024
NO_CONTROL = "the control API needs a configuration file: start the camera with --config FILE"
BUSY = "another change is under way (a model swap takes seconds); send this again once it has been answered"
MAX_NAME = 64
MODEL_SUFFIXES = (".xml", ".onnx", ".engine", ".plan")
_LIVE_SOURCE = re.compile(r"^(?:\d{1,3}|/dev/video\d{1,3}|csi://\d{0,3}|(?:rtsps?|https?)://[^\s!]+)$")
_FILE_OPTION = re.compile(r"dir|path|file|cache|folder|log", re.IGNORECASE)


# The control object: box.control.BoxControl (the contract lives there; webview sits below box in the layers,
# so it is not imported here).
Control = Any


class ApiEndpoints:
    """The /api routes; ``control()`` gives the control object at the time of each request (None: 503)."""

    def __init__(self, control: Callable[[], Optional[Control]]) -> None:
        self._control = control
        # One change at a time, the others refused at once: a swap holds its thread for seconds, and changes
        # queued behind it would take every quick thread, delaying /healthz and /metrics.
        self._changing = threading.Lock()

    def routes(self) -> List[Route]:
        return [
            Route("GET", "/api/config", self._call(lambda c, _: c.config_data())),
            Route(("GET", "POST"), "/api/streams", self.streams, max_body=STREAM_BODY),
            Route(("PATCH", "DELETE"), "/api/streams/{name}", self.stream, max_body=STREAM_BODY),
            Route("POST", "/api/models/{name}", self._call(self._swap), max_body=MODEL_BODY),
            Route("POST", "/api/reload", self._call(lambda c, _: c.reload())),
        ]

    def streams(self, exchange: Exchange) -> None:
        if exchange.request.method == "POST":
            self._call(self._add, 201)(exchange)
        else:
            self._call(lambda c, _: {"streams": c.list_streams()})(exchange)

    def stream(self, exchange: Exchange) -> None:
        if exchange.request.method == "PATCH":
            self._call(self._patch)(exchange)
        else:
            self._call(lambda c, e: c.remove_stream(checked_name(e.request.params["name"], "stream")))(exchange)

    def _call(self, work: Callable[[Control, Exchange], Any], status: int = 200) -> Callable[[Exchange], None]:
        def handler(exchange: Exchange) -> None:
            control = self._control()
            change = exchange.request.method not in ("GET", "HEAD")
            try:
                if control is None:
                    raise HttpError(503, NO_CONTROL)
                if change and not self._changing.acquire(blocking=False):
                    raise HttpError(503, BUSY, {"Retry-After": "2"})
                try:
                    answer = work(control, exchange)
                finally:
                    if change:
                        self._changing.release()
            except HttpError as exc:
                exchange.send(exc.status, json_bytes({"error": exc.message}), "application/json", exc.headers)
                return
            except Exception as exc:
                refused = _refusal(exc)
                if refused is None:
                    raise  # a bug: the server logs it and answers 500
                exchange.json(refused[0], {"error": refused[1]})
                return
            exchange.json(status, answer)

        return handler

    # -- each change, its input checked first ----------------------------------------------------------------
    @staticmethod
    def _add(control: Control, exchange: Exchange) -> Any:
        data = json_object(exchange.request.body)
        checked_name(data.get("name"), "stream", "name")
        check_source(data.get("source"))
        check_zones(data)
        return control.add_stream(data)

    @staticmethod
    def _patch(control: Control, exchange: Exchange) -> Any:
        name = checked_name(exchange.request.params["name"], "stream")
        data = json_object(exchange.request.body)
        check_zones(data)
        return control.patch_stream(name, data)

    @staticmethod
    def _swap(control: Control, exchange: Exchange) -> Any:
        name = checked_name(exchange.request.params["name"], "model")
        data = json_object(exchange.request.body)
        check_model_path(data.get("path"), "path", MODEL_SUFFIXES)
        if data.get("validation") is not None:
            check_model_path(data["validation"], "validation", None)
        options = data.get("options")
        for key in options if isinstance(options, dict) else ():
            if _FILE_OPTION.search(str(key)):
                raise HttpError(400, f"options.{str(key)[:64]}: an option naming a file or folder is set in the "
                                     "configuration file, not through the API")
        return control.swap_model(name, data)


def _refusal(exc: Exception) -> Optional[tuple]:
    """(status, line) of a control's refusal (box.control.ControlError and anything shaped like it), else None."""
    status, message = getattr(exc, "status", None), getattr(exc, "message", None)
    if isinstance(status, int) and 400 <= status <= 599 and isinstance(message, str):
        return status, message
    return None


def json_object(body: bytes) -> Dict[str, Any]:
    """The body as one JSON object; HttpError 400 saying why it is not one."""
    if not body.strip():
        raise HttpError(400, "the body is empty; send a JSON object (Content-Type: application/json)")
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise HttpError(400, f"the body is not UTF-8 (byte {exc.start}); send JSON in UTF-8") from None
    try:
        value = json.loads(text, object_pairs_hook=_no_duplicates, parse_constant=_no_constant)
    except json.JSONDecodeError as exc:
        raise HttpError(400, f"the body is not JSON: {exc.msg} at line {exc.lineno} column {exc.colno}") from None
    except ValueError as exc:  # from the hooks
        raise HttpError(400, f"the body is not plain JSON: {exc}") from None
    except RecursionError:
        raise HttpError(400, "the body is not plain JSON: nested too deep") from None
    if not isinstance(value, dict):
        raise HttpError(400, f"the body must be a JSON object, got {_json_type(value)}")
    return value


def _no_duplicates(pairs: List[tuple]) -> Dict[str, Any]:
    out: Dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise ValueError(f"the key {key[:64]!r} is given twice")
        out[key] = value
    return out


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number; give a finite number")


def _json_type(value: Any) -> str:
    return {list: "an array", str: "a string", bool: "a boolean", type(None): "null"}.get(type(value), "a number")


def checked_name(name: Any, what: str, key: Optional[str] = None) -> str:
    """``name`` if it can go in a URL, a file name and a log line unchanged; HttpError 400 otherwise."""
    where = f"{key}: " if key else ""
    if not isinstance(name, str) or not name:
        raise HttpError(400, f"{where}give the {what}'s name (a string)")
    bad = ("'/'" if "/" in name else "'\\'" if "\\" in name else "'..'" if ".." in name
           else "a control character" if any(ord(c) < 32 or ord(c) == 127 for c in name)
           else f"more than {MAX_NAME} characters" if len(name) > MAX_NAME else None)
    if bad:
        raise HttpError(400, f"{where}a {what} name with {bad} is refused: use letters, digits, '_', '.', '-' "
                             f"(up to {MAX_NAME}) (got {name[:80]!r})")
    return name


def check_source(source: Any) -> None:
    if source is None:
        raise HttpError(400, "source: missing; give a camera index, /dev/videoN, csi://N or an rtsp(s)/http(s) URL")
    if not isinstance(source, str) or not _LIVE_SOURCE.match(source):
        shown = source[:80] if isinstance(source, str) else _json_type(source)
        raise HttpError(400, f"source {shown!r}: the API opens cameras and streams only (a camera index, "
                             "/dev/videoN, csi://N, an rtsp(s):// or http(s):// URL); put files and GStreamer "
                             "pipelines in the configuration file")


def check_zones(data: Dict[str, Any]) -> None:
    if isinstance(data.get("zones"), str):
        raise HttpError(400, "zones: give the zones and lines inline (an object); a zones file's path is taken "
                             "from the configuration file only")


def check_model_path(path: Any, key: str, suffixes: Optional[tuple]) -> None:
    """An absolute path without '..' (and with a model's suffix), or an http(s) URL for a served model."""
    if isinstance(path, str) and suffixes and re.match(r"^https?://", path):
        return
    if not isinstance(path, str) or not path.startswith("/") or "/../" in path + "/" or "\x00" in path \
            or (suffixes and not path.lower().endswith(suffixes)):
        what = f"a model file ({', '.join(suffixes)}) or a served model's http(s) URL" if suffixes else "a folder"
        raise HttpError(400, f"{key}: give the absolute path of {what}, without '..' (got "
                             f"{str(path)[:80]!r})")
