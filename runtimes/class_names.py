"""The class-names file, read one way everywhere: one name per line, blank lines ignored, a leading background
line (``background``, ``__background__``, ``bg``: the pytorch-ssd and jetson-inference convention) dropped."""

from __future__ import annotations

from pathlib import Path
from typing import List

from runtimes.errors import UserError

BACKGROUND_NAMES = ("background", "__background__", "bg")


def read_class_names(path: "str | Path") -> List[str]:
    """The class names in ``path``, background excluded; UserError for a missing, unreadable or empty file."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except FileNotFoundError:
        raise UserError(f"{path}: no such classes file (one class name per line)") from None
    except OSError as exc:
        raise UserError(f"{path}: cannot read the classes file ({exc.strerror})") from None
    names = [line.strip() for line in text.splitlines() if line.strip()]
    if names and names[0].lower() in BACKGROUND_NAMES:
        names = names[1:]
    if not names:
        raise UserError(f"{path}: the classes file lists no classes; put one class name per line")
    return names
