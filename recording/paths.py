"""Where a clip and its companions go: FOLDER/STREAM/YYYY-MM-DD/HHMMSS-ID.mp4 with HHMMSS-ID.json (the
sidecar) and HHMMSS-ID-eSEQ.jpg / HHMMSS-ID-eSEQ-crop.jpg (an event's snapshots), local time of the clip's
first frame. A clip is written under a hidden temporary name carrying the writer's pid
(runtimes/atomic.py's ``.NAME.PID.XXXX.tmp.mp4``); :func:`remove_dead_temporaries` clears those of processes
killed while writing."""

from __future__ import annotations

import os
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import List
from urllib.parse import quote

from runtimes.atomic import is_running

TEMPORARY = re.compile(r"^\.(?P<name>.+)\.(?P<pid>\d+)\.[^.]+\.tmp(\..*)?$")


@dataclass(frozen=True)
class ClipPaths:
    """The files of one clip: ``video`` (.mp4), ``sidecar`` (.json), and :meth:`snapshot` per event."""

    video: Path
    sidecar: Path

    def snapshot(self, seq: int, crop: bool = False) -> Path:
        suffix = "-crop" if crop else ""
        return self.video.with_name(f"{self.video.stem}-e{seq}{suffix}.jpg")


def stream_folder(root: Path, stream: str) -> Path:
    """A stream's folder; its name made safe for a path (no separators, no leading dot)."""
    safe = quote(stream, safe="-_=+,@") or "stream"
    return root / (("%2E" + safe[1:]) if safe.startswith(".") else safe)


def new_clip_paths(root: Path, stream: str, wall_time: float, number: int) -> ClipPaths:
    """Fresh names for a clip starting at ``wall_time``, its date folder made; ``number`` is raised past
    names already on disk (a restart numbers clips from 0 again)."""
    local = time.localtime(wall_time)
    folder = stream_folder(root, stream) / time.strftime("%Y-%m-%d", local)
    folder.mkdir(parents=True, exist_ok=True)
    clock = time.strftime("%H%M%S", local)
    while True:
        video = folder / f"{clock}-{number}.mp4"
        if not video.exists() and not video.with_suffix(".json").exists():
            return ClipPaths(video, video.with_suffix(".json"))
        number += 1


def remove_dead_temporaries(root: Path) -> List[Path]:
    """Remove every temporary under ``root`` (any stream, any day) whose writer process is gone; the ones
    removed. Run when recording starts: a clip killed mid-write leaves its temporary behind, never a file
    under a final name."""
    removed = []
    for folder, _dirs, files in os.walk(root):
        for name in files:
            match = TEMPORARY.match(name)
            if match is None:
                continue
            pid = int(match.group("pid"))
            if pid != os.getpid() and not is_running(pid):
                path = Path(folder) / name
                try:
                    path.unlink()
                except FileNotFoundError:
                    continue
                removed.append(path)
    return removed
