"""Reading image files defensively: one function that returns BGR uint8 or says exactly what is wrong.

OpenCV decodes a truncated JPEG without raising (it fills the rest with grey and warns on stderr), so the
file's end-of-image marker is checked first. The pixel count the header declares is read before decoding,
so a decompression bomb (a small file declaring 30000 x 30000 pixels, 2.7 GB once decoded) is refused
without being decoded. Files that decode but are not what their name says (grayscale, CMYK, a PNG named
.jpg) are converted to 3-channel BGR and reported as a note.
"""

from __future__ import annotations

import struct
from pathlib import Path
from typing import Optional, Tuple

import cv2
import numpy as np

from runtimes.errors import UserError

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp")
# The largest image read: 100 megapixels (an 8K frame is 33), 300 MB as BGR.
MAX_PIXELS = 100_000_000


class UnreadableImage(UserError):
    """The file cannot be used; the message says why (missing, empty, truncated, not an image, too large).
    A :class:`UserError`, so that a tool that does not skip the file prints the one line."""


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


def _jpeg_size(data: bytes) -> Optional[Tuple[int, int]]:
    """(width, height) from the first start-of-frame marker, walking the segments; None if there is none."""
    pos = 2
    while pos + 4 <= len(data):
        if data[pos] != 0xFF:
            return None
        marker = data[pos + 1]
        if marker == 0xFF:  # fill byte
            pos += 1
            continue
        if marker in (0xD8, 0x01) or 0xD0 <= marker <= 0xD7:  # markers without a length
            pos += 2
            continue
        (length,) = struct.unpack(">H", data[pos + 2:pos + 4])
        # SOF0..SOF15 except DHT (C4), JPG (C8) and DAC (CC): precision, height, width follow the length.
        if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):
            if pos + 9 > len(data):
                return None
            height, width = struct.unpack(">HH", data[pos + 5:pos + 9])
            return width, height
        if length < 2:
            return None
        pos += 2 + length
    return None


def declared_size(data: bytes, kind: str) -> Optional[Tuple[int, int]]:
    """(width, height) the file's header declares, without decoding it; None when the header does not say
    (OpenCV then decides, and fails on a broken header)."""
    try:
        if kind == "png" and data[12:16] == b"IHDR":
            return struct.unpack(">II", data[16:24])
        if kind == "jpeg":
            return _jpeg_size(data)
        if kind == "bmp":
            width, height = struct.unpack("<ii", data[18:26])
            return abs(width), abs(height)  # a negative height means top-down rows
        if kind == "webp":
            chunk = data[12:16]
            if chunk == b"VP8X":
                return (1 + int.from_bytes(data[24:27], "little"), 1 + int.from_bytes(data[27:30], "little"))
            if chunk == b"VP8L":
                bits = int.from_bytes(data[21:25], "little")
                return 1 + (bits & 0x3FFF), 1 + ((bits >> 14) & 0x3FFF)
            if chunk == b"VP8 ":
                width, height = struct.unpack("<HH", data[26:30])
                return width & 0x3FFF, height & 0x3FFF
    except struct.error:  # a header cut short
        return None
    return None


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
    size = declared_size(data, kind)
    if size is not None and size[0] * size[1] > MAX_PIXELS:
        raise UnreadableImage(f"{kind} declares {size[0]} x {size[1]} pixels, more than the "
                              f"{MAX_PIXELS // 1_000_000} megapixels read (a decompression bomb, or resize it first)")
    if size is not None and min(size) == 0:
        raise UnreadableImage(f"{kind} declares {size[0]} x {size[1]} pixels: no image")
    try:
        raw = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
    except cv2.error as exc:  # OpenCV raises on some damaged headers instead of returning None
        raise UnreadableImage(f"corrupt {kind} data ({str(exc).strip().splitlines()[-1][:80]})") from None
    if raw is None or raw.size == 0:
        raise UnreadableImage(f"corrupt {kind} data")
    notes = []
    named = path.suffix.lower().lstrip(".").replace("jpg", "jpeg")
    if named and named != kind:
        notes.append(f"{kind} named .{path.suffix.lstrip('.')}")
    if raw.dtype != np.uint8:
        raw = cv2.convertScaleAbs(raw, alpha=255.0 / max(1.0, float(raw.max())))
        notes.append("16-bit, scaled to 8-bit")
    if raw.ndim == 3 and raw.shape[2] == 1:
        raw = raw[:, :, 0]
    if raw.ndim == 2:
        raw = cv2.cvtColor(raw, cv2.COLOR_GRAY2BGR)
        notes.append("grayscale, converted to BGR")
    elif raw.shape[2] == 2:  # gray + alpha
        raw = cv2.cvtColor(np.ascontiguousarray(raw[:, :, 0]), cv2.COLOR_GRAY2BGR)
        notes.append("grayscale with alpha, converted to BGR")
    elif raw.shape[2] == 4:
        # 4-channel JPEG is CMYK (OpenCV only decodes it as such with IMREAD_COLOR); PNG is BGRA.
        if kind == "jpeg":
            raw = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
            if raw is None:
                raise UnreadableImage("corrupt jpeg data (CMYK)")
            notes.append("CMYK, converted to BGR")
        else:
            raw = cv2.cvtColor(raw, cv2.COLOR_BGRA2BGR)
            notes.append("alpha channel dropped")
    return np.ascontiguousarray(raw), ("; ".join(notes) or None)
