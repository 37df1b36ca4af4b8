"""Where a value is in a data file a user wrote, and a short description of any value: the two halves of a
one-line error such as ``--zones z.json: streams.door.zones[2].polygon[1][0]: give a number (got 'x')``."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from runtimes.errors import UserError

_PLAIN_KEY = re.compile(r"[A-Za-z0-9_-]+")


@dataclass(frozen=True)
class KeyPath:
    """Where a value is: the file (``--zones z.json``) and the key path in it (``zones[2].polygon[1]``)."""

    label: str
    path: str = ""

    def key(self, key: Any) -> "KeyPath":
        text = str(key)
        step = f".{text}" if _PLAIN_KEY.fullmatch(text) else f"[{describe(key)}]"
        return KeyPath(self.label, f"{self.path}{step}" if self.path else step.lstrip("."))

    def index(self, index: int) -> "KeyPath":
        return KeyPath(self.label, f"{self.path}[{index}]")

    def error(self, problem: str) -> UserError:
        return UserError(f"{self.label}: {self.path + ': ' if self.path else ''}{problem}")


def describe(value: Any) -> str:
    """A short, bounded description of any value, for a message."""
    if value is None or isinstance(value, bool):
        return {None: "null", True: "true", False: "false"}[value]
    if isinstance(value, int):
        if abs(value) < 10 ** 15:
            return str(value)
        return f"a number of {len(str(abs(value)))} digits" if value.bit_length() < 14000 else "a huge number"
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, str):
        return repr(value[:40]) + ("..." if len(value) > 40 else "")
    if isinstance(value, list):
        return f"a list of {len(value)} item{'' if len(value) == 1 else 's'}"
    if isinstance(value, dict):
        return "an object" + (f" with {len(value)} keys" if value else " with no keys")
    return f"a {type(value).__name__}"
