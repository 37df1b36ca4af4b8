"""PyGObject's GStreamer, imported on first use: the rest of the package (and its tests in a virtual
environment without gi) works without it."""

from __future__ import annotations

from typing import Any

from runtimes.errors import UserError

INSTALL_HINT = ("--record needs GStreamer for Python: on Debian/Ubuntu apt install python3-gi "
                "gir1.2-gst-plugins-base-1.0 gstreamer1.0-plugins-good gstreamer1.0-plugins-bad "
                "gstreamer1.0-libav (on a Jetson: python3-gi with JetPack's GStreamer)")


def import_gst() -> Any:
    """Gst, initialised; UserError naming what to install when it is missing."""
    try:
        import gi

        gi.require_version("Gst", "1.0")
        from gi.repository import Gst
    except (ImportError, ValueError):
        raise UserError(INSTALL_HINT) from None
    Gst.init(None)
    return Gst


def has_element(name: str) -> bool:
    return import_gst().ElementFactory.find(name) is not None


def parser_for(caps: str) -> str:
    """The parser element for an encoded stream's caps string (video/x-h264 or video/x-h265)."""
    if caps.startswith("video/x-h264"):
        return "h264parse"
    if caps.startswith("video/x-h265"):
        return "h265parse"
    raise ValueError(f"not H.264 or H.265: {caps}")
