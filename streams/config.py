"""Which streams to run: ``--source`` (repeatable) and ``--sources FILE``, each with a unique name."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import List, Optional, Sequence

from runtimes.errors import UserError
from runtimes.text_file import read_text_file

NAME_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
# Far more streams than one box decodes in real time; the bound keeps a wrong file (a log, a list of images)
# from starting thousands of grab threads.
MAX_STREAMS = 256
MAX_SOURCE_CHARS = 4096  # a source text: a URL or a GStreamer pipeline
MAX_SOURCES_FILE_BYTES = 1024 * 1024


@dataclass(frozen=True)
class StreamSpec:
    """A stream: its ``name`` (in JSON lines, file names, metrics, URLs) and its ``source`` text, as
    ``--source`` takes it (camera index, /dev/videoN, csi://N, URL, GStreamer pipeline, file, folder)."""

    name: str
    source: str


def read_sources_file(path: Path) -> List[StreamSpec]:
    """One source per line, ``SOURCE`` or ``NAME=SOURCE``; blank lines and lines starting with ``#`` are
    skipped. A line that cannot be used is a UserError naming it."""
    text = read_text_file(path, f"--sources {path}", MAX_SOURCES_FILE_BYTES,
                          "give a UTF-8 text file, one source per line (optionally NAME=SOURCE)")
    specs: List[StreamSpec] = []
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if len(line) > MAX_SOURCE_CHARS:
            raise UserError(f"--sources {path}, line {number}: {len(line)} characters, more than the "
                            f"{MAX_SOURCE_CHARS} a source takes; one source per line")
        if len(specs) == MAX_STREAMS:
            raise UserError(f"--sources {path}, line {number}: more than {MAX_STREAMS} sources; run several "
                            "camera apps for more streams")
        name: Optional[str] = None
        head, sep, tail = line.partition("=")
        # NAME=SOURCE, unless the '=' belongs to the source itself (a GStreamer pipeline, a URL query).
        if sep and NAME_PATTERN.fullmatch(head.strip()) and "!" not in head and "://" not in head:
            name, line = head.strip(), tail.strip()
        if not line:
            raise UserError(f"--sources {path}, line {number}: '{raw.strip()}' names a stream but gives no source "
                            "(write NAME=SOURCE)")
        if "\x00" in line or any(ord(c) < 32 for c in line):
            raise UserError(f"--sources {path}, line {number}: the line holds control characters; write one "
                            "source per line as plain text")
        specs.append(StreamSpec(name or "", line))
    if not specs:
        raise UserError(f"--sources {path}: lists no sources (one per line, optionally NAME=SOURCE)")
    return specs


def stream_specs(sources: Sequence[str], sources_file: Optional[Path] = None) -> List[StreamSpec]:
    """The streams of ``--source`` values then ``--sources`` lines, unnamed ones called ``cam0``, ``cam1``...
    by position; duplicate or malformed names are refused."""
    specs = [StreamSpec("", s) for s in sources]
    if sources_file is not None:
        specs += read_sources_file(sources_file)
    if not specs:
        specs = [StreamSpec("", "0")]  # the first camera, as a single --source defaults to
    if len(specs) > MAX_STREAMS:
        raise UserError(f"{len(specs)} streams (--source and --sources together), more than {MAX_STREAMS}; run "
                        "several camera apps for more streams")
    named: List[StreamSpec] = []
    for index, spec in enumerate(specs):
        name = spec.name or f"cam{index}"
        if not NAME_PATTERN.fullmatch(name):
            raise UserError(f"stream name '{name}': use letters, digits, '_', '.', '-' (up to 64, starting with a "
                            "letter or digit)")
        named.append(StreamSpec(name, spec.source))
    seen = set()
    for spec in named:
        if spec.name in seen:
            raise UserError(f"stream name '{spec.name}' is given twice; every stream needs its own name "
                            "(NAME=SOURCE in --sources)")
        seen.add(spec.name)
    return named
