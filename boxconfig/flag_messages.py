"""A flag's checking code reused for a key of the file: its one-line message ("--pre-seconds -1: seconds must
be ...") said at the key's path instead (``box.yaml: recording.pre_seconds: seconds must be ...``)."""

from __future__ import annotations

from typing import Mapping

from boxconfig.problems import line
from runtimes.data_path import KeyPath


def at_key(at: KeyPath, text: str, keys: Mapping[str, str]) -> str:
    """``text`` (a UserError's, "--flag VALUE: problem", the flag one of ``keys``: {flag: key under ``at``}) as
    the line "key path: problem (got VALUE)"."""
    flag = text.split(" ", 1)[0]
    if flag not in keys or ": " not in text:
        return line(at, text)
    given, problem = text.split(": ", 1)
    value = given[len(flag):].strip()
    return line(at.key(keys[flag]), f"{problem} (got {value})" if value else problem)
