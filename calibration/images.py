"""Reading image files defensively: one function that returns BGR uint8 or says exactly what is wrong.

OpenCV decodes a truncated JPEG without raising (it fills the rest with grey and warns on stderr), so the
file's end-of-image marker is checked first. Files that decode but are not what their name says
(grayscale, CMYK, a PNG named .jpg) are converted to 3-channel BGR and reported as a note.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional, Tuple

import cv2
import numpy as np

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp")


class UnreadableImage(Exception):
    """The file cannot be used; the message says why (missing, empty, truncated, not an image)."""


def _sniff(data: bytes) -> str:
    if data[:3] == b"\xff\xd8\xff":
        return "jpeg"
    if data[:8] == b"\x89PNG\r\n\x1a\n":
        return "png"
    if data[:2] == b"BM":
        return "bmp"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "webp"
    return "unknown"


def _jpeg_is_complete(data: bytes) -> bool:
    # The EOI marker ends every complete JPEG; some writers pad a few bytes after it.
    return b"\xff\xd9" in data[-32:]


def read_image(path: Path) -> Tuple[np.ndarray, Optional[str]]:
    """Read ``path`` as (H, W, 3) uint8 BGR.

    Returns the image and a note (None when the file is an ordinary colour image of the type its name
    says). Raises :class:`UnreadableImage` when the file cannot be used.
    """
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise UnreadableImage(f"cannot read ({exc.strerror})") from None
    if not data:
        raise UnreadableImage("empty file")
    kind = _sniff(data)
    if kind == "unknown":
        raise UnreadableImage("not an image file")
    if kind == "jpeg" and not _jpeg_is_complete(data):
        raise UnreadableImage("truncated JPEG (no end-of-image marker)")
    raw = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
    if raw is None:
        raise UnreadableImage(f"corrupt {kind} data")
    notes = []
    named = path.suffix.lower().lstrip(".").replace("jpg", "jpeg")
    if named and named != kind:
        notes.append(f"{kind} named .{path.suffix.lstrip('.')}")
    if raw.dtype != np.uint8:
        raw = cv2.convertScaleAbs(raw, alpha=255.0 / max(1.0, float(raw.max())))
        notes.append("16-bit, scaled to 8-bit")
    if raw.ndim == 2:
        raw = cv2.cvtColor(raw, cv2.COLOR_GRAY2BGR)
        notes.append("grayscale, converted to BGR")
    elif raw.shape[2] == 4:
        # 4-channel JPEG is CMYK (OpenCV only decodes it as such with IMREAD_COLOR); PNG is BGRA.
        if kind == "jpeg":
            raw = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
            notes.append("CMYK, converted to BGR")
        else:
            raw = cv2.cvtColor(raw, cv2.COLOR_BGRA2BGR)
            notes.append("alpha channel dropped")
    return np.ascontiguousarray(raw), ("; ".join(notes) or None)
