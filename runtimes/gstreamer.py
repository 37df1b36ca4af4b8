"""PyGObject's GStreamer, imported on first use, for the device code that drives GStreamer itself (the RTSP
output, recording, decoding plans): the rest of the toolkit, and a virtual environment without gi, work without
it."""

from __future__ import annotations

import importlib
from typing import Any, Optional, Tuple

from runtimes.errors import UserError

# The typelib versions the toolkit is written against (GLib needs none).
_VERSIONS = {"Gst": "1.0", "GstApp": "1.0", "GstPbutils": "1.0", "GstRtspServer": "1.0"}


def gi_modules(*names: str) -> Optional[Tuple[Any, ...]]:
    """The ``gi.repository`` modules ``names`` (e.g. "Gst", "GstRtspServer", "GLib"), in that order, with
    GStreamer initialised; None where PyGObject or one of the typelibs is missing."""
    try:
        import gi

        for name in names:
            if name in _VERSIONS:
                gi.require_version(name, _VERSIONS[name])
        modules = tuple(importlib.import_module(f"gi.repository.{name}") for name in names)
        gst = importlib.import_module("gi.repository.Gst")
    except (ImportError, ValueError):
        return None
    gst.init(None)
    return modules


def require_gi_modules(install_hint: str, *names: str) -> Tuple[Any, ...]:
    """:func:`gi_modules`, or :class:`UserError` saying what to install (``install_hint``, one line)."""
    modules = gi_modules(*names)
    if modules is None:
        raise UserError(install_hint)
    return modules
