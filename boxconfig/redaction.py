"""The configuration as it may be shown: printed at start, served at /api/config. Secrets are replaced by
:data:`REDACTED`: the web view's token, the MQTT password, a password in any URL (a camera's
``rtsp://user:password@...``, a served model's) and the query values of URLs (a webhook's token goes there,
since analytics/webhook.py refuses credentials in its URL), and runtime options whose name says secret."""

from __future__ import annotations

import copy
import re
from typing import Any, Dict
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

REDACTED = "<redacted>"
_SECRET_NAME = re.compile(r"token|password|passwd|secret|credential|api_?key", re.IGNORECASE)


def redacted(data: Dict[str, Any]) -> Dict[str, Any]:
    """A copy of a configuration's data (:func:`boxconfig.config.to_data`) without its secrets."""
    data = copy.deepcopy(data)
    webview, mqtt = data.get("webview") or {}, (data.get("sinks") or {}).get("mqtt")
    if webview.get("token") is not None:
        webview["token"] = REDACTED
    if isinstance(mqtt, dict) and mqtt.get("password") is not None:
        mqtt["password"] = REDACTED
    sinks = data.get("sinks") or {}
    if isinstance(sinks.get("webhook"), str):
        sinks["webhook"] = redacted_url(sinks["webhook"])
    for stream in data.get("streams") or []:
        stream["source"] = redacted_url(stream["source"])
    for model in (data.get("models") or {}).values():
        model["path"] = redacted_url(model["path"])
        options = model.get("options") or {}
        for key in options:
            if _SECRET_NAME.search(key):
                options[key] = REDACTED
    return data


def redacted_url(text: str) -> str:
    """``text`` with a URL's password and query values replaced; anything else (a file, a GStreamer pipeline,
    whose URLs are in its ``location=`` properties) with each URL in it redacted the same way."""
    return re.sub(r"[A-Za-z][A-Za-z0-9+.-]*://[^\s!\"']+", lambda found: _one_url(found.group()), text)


def _one_url(url: str) -> str:
    try:
        parts = urlsplit(url)
        password = parts.password
    except ValueError:  # not parseable as a URL: shown as nothing at all, since it may still hold a secret
        return REDACTED
    netloc = parts.netloc
    if password is not None:
        netloc = f"{parts.username}:{REDACTED}@{netloc.rpartition('@')[2]}"
    elif parts.username:  # a user name alone may be a token (https://TOKEN@host/)
        netloc = f"{REDACTED}@{netloc.rpartition('@')[2]}"
    query = parts.query
    if query:
        query = urlencode([(key, REDACTED) for key, _ in parse_qsl(query, keep_blank_values=True)], safe="<>")
    return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))
