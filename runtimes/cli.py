"""What every command-line tool shares: expected errors as one line and a non-zero exit."""

from __future__ import annotations

import sys
from typing import Callable, Optional, Sequence

from runtimes.errors import UserError

EXIT_USER_ERROR = 2
EXIT_INTERRUPTED = 130


def run_cli(main: Callable[[Optional[Sequence[str]]], int], argv: Optional[Sequence[str]] = None) -> int:
    """Run ``main``; a :class:`UserError` prints ``error: <message>`` on stderr and returns 2."""
    try:
        return int(main(argv) or 0)
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USER_ERROR
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
