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


def run_to_end(launch: str, timeout_s: float, what: str) -> None:
    """Run the GStreamer launch line ``launch`` until its end of stream; :class:`UserError` naming ``what`` when
    it fails or has not ended after ``timeout_s`` (for finite sources: making a test video, say)."""
    gst = require_gi_modules("GStreamer for Python is missing: apt install python3-gi "
                             "gir1.2-gst-plugins-base-1.0", "Gst")[0]
    pipeline = gst.parse_launch(launch)
    pipeline.set_state(gst.State.PLAYING)
    try:
        message = pipeline.get_bus().timed_pop_filtered(int(timeout_s * gst.SECOND),
                                                        gst.MessageType.EOS | gst.MessageType.ERROR)
    finally:
        pipeline.set_state(gst.State.NULL)
    if message is None:
        raise UserError(f"{what}: GStreamer did not finish within {timeout_s:.0f} s")
    if message.type != gst.MessageType.EOS:
        raise UserError(f"{what}: {message.parse_error()[0].message}")
