"""What stays on disk: clips (with their sidecars and snapshots) older than ``max_age_s`` are removed, then
the oldest go until all of them take at most ``max_bytes``. Oldest first, by the time the clip was written."""

from __future__ import annotations

import contextlib
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional

# a clip's files: HHMMSS-ID.mp4, HHMMSS-ID.json, HHMMSS-ID-eSEQ.jpg, HHMMSS-ID-eSEQ-crop.jpg
CLIP_FILE = re.compile(r"^(?P<stem>\d{6}-\d+)(-e\d+(-crop)?)?\.(mp4|json|jpg)$")
DAY = 86400.0
GB = 1 << 30


@dataclass(frozen=True)
class RetentionLimits:
    max_age_s: Optional[float] = None
    max_bytes: Optional[int] = None

    @classmethod
    def of(cls, days: Optional[float], gb: Optional[float]) -> "RetentionLimits":
        return cls(None if days is None else days * DAY, None if gb is None else int(gb * GB))


@dataclass
class ClipFiles:
    """The files of one clip; ``time``: the oldest modification time among them; ``bytes``: their sizes."""

    files: List[Path] = field(default_factory=list)
    time: float = float("inf")
    bytes: int = 0


def clips_on_disk(root: Path) -> List[ClipFiles]:
    """Every clip under ``root`` (STREAM/DAY/...), oldest first; temporaries are not clips."""
    groups: Dict[Path, ClipFiles] = {}
    for folder, _dirs, names in os.walk(root):
        for name in names:
            match = CLIP_FILE.match(name)
            if match is None:
                continue
            path = Path(folder) / name
            try:
                stat = path.stat()
            except FileNotFoundError:
                continue
            group = groups.setdefault(Path(folder) / match.group("stem"), ClipFiles())
            group.files.append(path)
            group.time = min(group.time, stat.st_mtime)
            group.bytes += stat.st_size
    return sorted(groups.values(), key=lambda g: g.time)


def enforce(root: Path, limits: RetentionLimits, now: float) -> List[ClipFiles]:
    """Remove clips beyond ``limits`` (oldest first); the ones removed."""
    clips = clips_on_disk(root)
    total = sum(clip.bytes for clip in clips)
    removed = []
    for clip in clips:
        too_old = limits.max_age_s is not None and now - clip.time > limits.max_age_s
        too_much = limits.max_bytes is not None and total > limits.max_bytes
        if not too_old and not too_much:
            break  # oldest first: the rest are younger, and the total is within the limit
        for path in clip.files:
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
        total -= clip.bytes
        removed.append(clip)
    for folder in {path.parent for clip in removed for path in clip.files}:
        with contextlib.suppress(OSError):
            folder.rmdir()  # a day's folder left empty
    return removed
