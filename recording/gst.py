"""PyGObject's GStreamer, imported on first use: the rest of the package (and its tests in a virtual
environment without gi) works without it."""

from __future__ import annotations

from typing import Any

from runtimes.gstreamer import require_gi_modules

INSTALL_HINT = ("--record needs GStreamer for Python: on Debian/Ubuntu apt install python3-gi "
                "gir1.2-gst-plugins-base-1.0 gstreamer1.0-plugins-good gstreamer1.0-plugins-bad "
                "gstreamer1.0-libav (on a Jetson: python3-gi with JetPack's GStreamer)")


def import_gst() -> Any:
    """Gst, initialised; UserError naming what to install when it is missing."""
    return require_gi_modules(INSTALL_HINT, "Gst")[0]


def has_element(name: str) -> bool:
    return import_gst().ElementFactory.find(name) is not None


def parser_for(caps: str) -> str:
    """The parser element for an encoded stream's caps string (video/x-h264 or video/x-h265)."""
    if caps.startswith("video/x-h264"):
        return "h264parse"
    if caps.startswith("video/x-h265"):
        return "h265parse"
    raise ValueError(f"not H.264 or H.265: {caps}")
