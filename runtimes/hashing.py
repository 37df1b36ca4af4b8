"""Content hashes: what caches and built models record about their inputs."""

from __future__ import annotations

import hashlib
from pathlib import Path


def sha256_file(path: "str | Path") -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()
