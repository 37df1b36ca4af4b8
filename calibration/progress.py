"""Progress bars for long work: tqdm when installed (and the output is a terminal or forced), else a
line every few seconds, so logs of non-interactive runs (CI, ssh, systemd) stay readable."""

from __future__ import annotations

import sys
import time
from typing import Callable, Iterable, Iterator, Optional, TypeVar

T = TypeVar("T")


def progress(items: Iterable[T], total: Optional[int] = None, desc: str = "", enabled: bool = True,
             every_s: float = 5.0) -> Iterator[T]:
    if not enabled:
        yield from items
        return
    if sys.stderr.isatty():
        try:
            from tqdm import tqdm

            yield from tqdm(items, total=total, desc=desc, unit="img", leave=False)
            return
        except ImportError:
            pass
    start = last = time.monotonic()
    done = 0
    for item in items:
        yield item
        done += 1
        now = time.monotonic()
        if now - last >= every_s:
            last = now
            of = f"/{total}" if total else ""
            print(f"  {desc}: {done}{of} ({done / (now - start):.1f}/s)", file=sys.stderr, flush=True)


def progress_line(desc: str, unit: str, every_s: float = 5.0) -> Callable[[int, int], None]:
    """A ``(done, total)`` callback for work driven from elsewhere (TensorRT pulling calibration batches):
    prints a line every ``every_s`` seconds and at the end."""
    start = time.monotonic()
    last = [start]

    def report(done: int, total: int) -> None:
        now = time.monotonic()
        if now - last[0] >= every_s or done == total:
            last[0] = now
            print(f"  {desc}: {done}/{total} {unit} ({now - start:.0f} s)", file=sys.stderr, flush=True)

    return report
