"""Zones files and sources files that once crashed or stalled the camera app (issue #24), shared by the parser
tests (tests/test_input_files.py) and the runs of apps/camera.py (tests/test_camera_analytics.py).

Each row: (what, file name, bytes, words of the one-line error). bytes None: the file is not created (its
name alone is the problem); b"FIFO": a named pipe nobody writes to; b"FOLDER": a folder.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import List, Optional, Tuple

Row = Tuple[str, str, Optional[bytes], str]
LONG_NAME = "z" * 300  # more than the 255 bytes a Linux file name takes


def alias_bomb() -> bytes:
    """500 bytes of YAML whose nested aliases stand for 9**9 numbers."""
    lines = ["a0: &a0 [1, 2, 3, 4, 5, 6, 7, 8, 9]"]
    lines += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 9)}]" for i in range(1, 9)]
    return ("\n".join(lines) + "\nlines: [{name: gate, points: *a8}]\n").encode()


def _line_to(x: object) -> bytes:
    return json.dumps({"lines": [{"name": "gate", "points": [[0, 0], [x, 10]]}]}).encode()


BAD_ZONES_FILES: List[Row] = [
    ("not UTF-8", "zones.json", b'{"lines": [{"name": "caf\xe9", "points": [[0, 0], [9, 9]]}]}',
     "line 1, column 25: byte 0xe9 is not UTF-8"),
    ("JSON nested 50,000 deep", "zones.json", b"[" * 50_000 + b"]" * 50_000, "nested more than"),
    ("YAML nested 20,000 deep", "zones.yaml", b"[" * 20_000 + b"]" * 20_000, "nested more than"),
    ("a class name that is a list", "zones.json",
     json.dumps({"lines": [{"name": "gate", "points": [[0, 0], [9, 9]], "classes": [["ellipse"]]}]}).encode(),
     "lines[0].classes[0]: give a class name"),
    ("YAML !!binary", "zones.yaml", b"lines:\n  - name: gate\n    points: !!binary aGVsbG8=\n",
     "line 3, column 13: the tag !!binary is not read"),
    ("YAML !!set", "zones.yaml", b"lines:\n  - name: gate\n    points: !!set {a, b}\n", "the tag !!set is not read"),
    ("a date as a polygon", "zones.yaml", b"zones:\n  - name: bay\n    polygon: 2024-05-01\n",
     "zones[0].polygon: give a list of [x, y] number pairs (got '2024-05-01')"),
    ("a 400-digit coordinate", "zones.json", _line_to(10 ** 399), "lines[0].points[1][0]: a number of 400 digits"),
    ("a coordinate of 1e300", "zones.json", _line_to(1e300), "lines[0].points[1][0]: pixel coordinates must be"),
    ("nested YAML aliases", "zones.yaml", alias_bomb(), "line 2, column 10: aliases (*a0) are not read"),
    ("a 300-character file name", LONG_NAME + ".json", None, "the file name is too long"),
    ("a folder", "zones.json", b"FOLDER", "is a folder, not a file"),
]

BAD_SOURCES_FILES: List[Row] = [
    ("not UTF-8", "sources.txt", b"door=a.mp4\nyard=caf\xe9.mp4\n", "line 2, column 9: byte 0xe9 is not UTF-8"),
    ("a 300-character file name", LONG_NAME + ".txt", None, "the file name is too long"),
    ("a FIFO", "sources.txt", b"FIFO", "not a regular file"),
    ("300 sources", "sources.txt", "".join(f"s{i}=v{i}.mp4\n" for i in range(300)).encode(), "more than 256"),
    ("a line of 10,000 characters", "sources.txt", b"# cameras\ndoor=" + b"x" * 10_000 + b"\n",
     "line 2: 10005 characters"),
    ("2 MB of comments", "sources.txt", b"# comment\n" * 200_000, "larger than"),
    ("a folder", "sources.txt", b"FOLDER", "is a folder, not a file"),
]


def write_row(folder: Path, row: Row) -> Path:
    """The row's file in ``folder`` (its path, whether or not a file could be made there)."""
    _, name, data, _ = row
    path = folder / name
    if data == b"FIFO":
        os.mkfifo(path)
    elif data == b"FOLDER":
        path.mkdir()
    elif data is not None:
        path.write_bytes(data)
    return path
