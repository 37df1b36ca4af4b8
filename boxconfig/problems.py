"""Many problems reported at once: :class:`ConfigError` carries one line per problem, each naming the file
and the key path (``box.yaml: streams[2].zones.lines[0].points: ...``)."""

from __future__ import annotations

import difflib
from typing import Any, Iterable, Sequence

from runtimes.data_path import KeyPath
from runtimes.errors import UserError

MAX_LINES = 50  # a file wrong throughout (a list where the streams go, pasted twice) says so in a screenful


class ConfigError(UserError):
    """Every problem found in a configuration, one line each (``lines``). Its text is the lines joined so that
    runtimes/cli.py, which prints ``error: <message>``, prints ``error:`` before each of them."""

    def __init__(self, lines: Sequence[str]) -> None:
        shown = list(lines[:MAX_LINES])
        if len(lines) > MAX_LINES:
            shown.append(f"{len(lines) - MAX_LINES} more problems not shown; fix these first")
        self.lines = shown
        super().__init__("\nerror: ".join(shown))


def raise_if_any(lines: Iterable[str]) -> None:
    unique = list(dict.fromkeys(lines))  # (several rules can say the same thing of one value)
    if unique:
        raise ConfigError(unique)


def line(at: KeyPath, problem: str) -> str:
    return str(at.error(problem))


def path_of(label: str, steps: Iterable[Any]) -> KeyPath:
    """A KeyPath from a list of keys and indices (jsonschema's ``absolute_path``)."""
    at = KeyPath(label)
    for step in steps:
        at = at.index(step) if isinstance(step, int) else at.key(step)
    return at


def did_you_mean(word: str, choices: Sequence[str]) -> str:
    """"; did you mean 'streams'?" for a near miss (difflib's ratio of at least 0.6), else the choices there
    are."""
    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    if close:
        return f"; did you mean {close[0]!r}?"
    return f" (expected one of {', '.join(choices)})" if choices else ""
