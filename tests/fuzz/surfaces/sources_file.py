"""Sources files (``--sources``): ``stream_specs`` on edited copies of a valid listing (bytes damaged, lines
changed), random bytes, and hostile files (not UTF-8, a FIFO that would block a read, a folder, a name too
long for the file system, too many lines, lines too long, control characters, names given twice)."""

from __future__ import annotations

import os
import random
from pathlib import Path
from typing import Any, List, Optional, Tuple

from tests.fuzz.cases import Case, Parser, mutate, random_bytes

LISTING = ("# cameras at the door and in the yard\n"
           "door=rtsp://10.0.0.5/stream?a=b\n"
           "\n"
           "videotestsrc ! video/x-raw,width=64 ! appsink\n"
           "yard=/data/yard.mp4\n")
ODD_LINES = ["=", "a=", "=x.mp4", "a b=c", "cam0=x.mp4", "door=y.mp4", "x" * 5000, "\x01cam=x", "n\x00=x",
             "é=x.mp4", "a" * 65 + "=x", "  spaced  =  x.mp4  ", "#", "rtsp://h/s?x=1=2", "caf\u2028e=x"]


def _listing(rng: random.Random, index: int, folder: Path) -> Tuple[str, Path]:
    path = folder / "sources.txt"
    kind = index % 6
    if kind == 0:
        lines = LISTING.splitlines()
        for _ in range(rng.randint(1, 3)):
            lines.insert(rng.randrange(len(lines) + 1), rng.choice(ODD_LINES))
        path.write_text("\n".join(lines) + "\n", encoding="utf-8")
        return "odd lines inserted", path
    if kind == 1:
        what, data = mutate(LISTING.encode(), rng)
        path.write_bytes(data)
        return f"bytes: {what}", path
    if kind == 2:
        what, data = random_bytes(rng)
        path.write_bytes(data)
        return f"random: {what}", path
    if kind == 3:
        count = rng.choice([1, 255, 256, 257, 5000])
        path.write_text("".join(f"s{i}=v{i}.mp4\n" for i in range(count)))
        return f"{count} sources", path
    if kind == 4:
        return _hostile(rng, folder)
    path.write_text(LISTING)
    return "as written", path


def _hostile(rng: random.Random, folder: Path) -> Tuple[str, Path]:
    path = folder / "sources.txt"
    what = rng.choice(["a FIFO", "a folder", "a name too long", "not UTF-8", "a byte-order mark", "UTF-16",
                       "2 MB of comments", "no sources"])
    if what == "a FIFO":
        os.mkfifo(path)
    elif what == "a folder":
        path.mkdir()
    elif what == "a name too long":
        path = folder / ("s" * 300)
    elif what == "not UTF-8":
        path.write_bytes(LISTING.encode().replace(b"yard", b"y\xe9rd"))
    elif what == "a byte-order mark":
        path.write_bytes(b"\xef\xbb\xbf" + LISTING.encode())
    elif what == "UTF-16":
        path.write_bytes(LISTING.encode("utf-16"))
    elif what == "2 MB of comments":
        path.write_bytes(b"# comment\n" * 200_000 + LISTING.encode())
    else:
        path.write_text("# none yet\n\n")
    return what, path


def check_specs(specs: Any) -> Optional[str]:
    from streams.config import MAX_SOURCE_CHARS, MAX_STREAMS, NAME_PATTERN

    names: List[str] = [spec.name for spec in specs]
    if not 1 <= len(specs) <= MAX_STREAMS:
        return f"{len(specs)} streams"
    if len(set(names)) != len(names) or not all(NAME_PATTERN.fullmatch(n) for n in names):
        return f"names {names[:5]}"
    for spec in specs:
        if not 0 < len(spec.source) <= MAX_SOURCE_CHARS or any(ord(c) < 32 for c in spec.source):
            return f"source {spec.source[:40]!r}"
    return None


def make_sources(rng: random.Random, index: int, folder: Path, assets: Path) -> Case:
    from streams.config import stream_specs

    what, path = _listing(rng, index, folder)
    return Case(what, lambda: stream_specs([], path), check_specs)


PARSERS = [Parser("sources file", make_sources, ci_count=36, full_count=300)]
