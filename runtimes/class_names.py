"""The class-names file, read one way everywhere: one name per line, blank lines ignored, a leading background
line (``background``, ``__background__``, ``bg``: the pytorch-ssd and jetson-inference convention) dropped.

The names end up in model metadata, tables and events, so the file must be text: bytes that are not UTF-8 or
control characters (what random or binary data gives) are refused, not printed as garbled names.
"""

from __future__ import annotations

import unicodedata
from pathlib import Path
from typing import List

from runtimes.errors import UserError
from runtimes.text_file import read_text_file

BACKGROUND_NAMES = ("background", "__background__", "bg")
MAX_FILE_BYTES = 1 << 20  # VOC's 20 names take 150 bytes; COCO's 80, 700


def read_class_names(path: "str | Path", flag: str = "") -> List[str]:
    """The class names in ``path``, background excluded; UserError (naming ``flag``) for a missing,
    unreadable, empty or binary file, or one that is not UTF-8 text."""
    label = f"{flag} {path}" if flag else str(path)
    fix = "give a UTF-8 text file with one class name per line"
    text = read_text_file(path, label, MAX_FILE_BYTES, fix)
    # Split at "\n" only: str.splitlines also splits at \x1c-\x1e, \x85 and \u2028, hiding those characters.
    lines = [line[:-1] if line.endswith("\r") else line for line in text.split("\n")]
    for number, line in enumerate(lines, start=1):
        if any(c != "\t" and unicodedata.category(c) in ("Cc", "Zl", "Zp") for c in line):
            raise UserError(f"{label}, line {number}: the line holds control characters (binary data?); {fix}")
    names = [line.strip() for line in lines if line.strip()]
    if names and names[0].lower() in BACKGROUND_NAMES:
        names = names[1:]
    if not names:
        raise UserError(f"{label}: the classes file lists no classes; put one class name per line")
    return names
