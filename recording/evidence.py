"""The recent recorded events, by id: what the web view lists and serves (webview/evidence.py).

An id is the recorder's own (``RUN-N``: a random prefix drawn once per run, then a counter), never a path:
a request names an id, this index gives the file the recorder wrote for it, so no part of a request reaches
the file system. Bounded: the newest ``size`` events; older ones are forgotten here, not removed from disk.
"""

from __future__ import annotations

import collections
import os
import secrets
import stat
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Deque, Dict, List, Optional

RECENT = 200


@dataclass(frozen=True)
class EvidenceEntry:
    """``event``: as the sinks got it (with ``clip`` and maybe ``snapshot``, relative to the record folder);
    ``files``: kind -> the file the recorder writes for it: "clip" (the MP4), "snapshot" (the full frame, box
    drawn), "thumb" (the crop); each exists once written (a clip after its post-roll, a snapshot after the
    event's window)."""

    id: str
    stream: str
    event: Dict[str, Any]
    files: Dict[str, Path]


class EvidenceIndex:
    def __init__(self, folder: Path, size: int = RECENT) -> None:
        self.folder = Path(folder).resolve()
        self._prefix = secrets.token_hex(3)
        self._count = 0
        self._entries: Deque[EvidenceEntry] = collections.deque(maxlen=size)
        self._by_id: Dict[str, EvidenceEntry] = {}
        self._lock = threading.Lock()

    def add(self, stream: str, event: Dict[str, Any], files: Dict[str, Path]) -> str:
        """Remember an event and its files; its id."""
        with self._lock:
            entry = EvidenceEntry(f"{self._prefix}-{self._count}", stream, dict(event), dict(files))
            self._count += 1
            if len(self._entries) == self._entries.maxlen:
                self._by_id.pop(self._entries[0].id, None)
            self._entries.append(entry)
            self._by_id[entry.id] = entry
        return entry.id

    def recent(self, limit: int) -> List[Dict[str, Any]]:
        """The newest ``limit`` events, newest first: ``id``, ``stream``, ``event`` and per kind whether its
        file is there yet (``clip``, ``snapshot``, ``thumb``: true/false; absent: the event has none)."""
        with self._lock:
            entries = list(self._entries)[::-1][:max(0, limit)]
        out = []
        for entry in entries:
            item: Dict[str, Any] = {"id": entry.id, "stream": entry.stream, "event": entry.event}
            item.update({kind: self.file(entry.id, kind) is not None for kind in entry.files})
            out.append(item)
        return out

    def file(self, evidence_id: str, kind: str) -> Optional[Path]:
        """The ``kind`` file of the event ``evidence_id`` when it is a regular file under the record folder
        now (written, not yet removed by retention); None otherwise."""
        with self._lock:
            entry = self._by_id.get(evidence_id)
        path = entry.files.get(kind) if entry is not None else None
        if path is None:
            return None
        try:
            mode = os.lstat(path).st_mode  # the recorder's file itself, never what a link points at
        except OSError:
            return None
        inside = os.path.commonpath([str(self.folder), os.path.realpath(path)]) == str(self.folder)
        return path if stat.S_ISREG(mode) and inside else None
