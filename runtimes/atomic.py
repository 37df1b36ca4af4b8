"""Write-then-rename, so a crash never leaves a half-written model, engine or cache where a good one is
expected: outputs are written to temporary names in the destination folder and renamed into place only
when all of them are complete."""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path
from typing import Iterator, List, Sequence

from runtimes.errors import UserError


def check_output_dir(path: Path) -> None:
    """UserError unless ``path``'s folder exists and is writable."""
    folder = Path(path).resolve().parent
    if not folder.is_dir():
        raise UserError(f"{path}: the output folder {folder} does not exist; create it or choose another path")
    if not os.access(folder, os.W_OK):
        raise UserError(f"{path}: cannot write to {folder} (permission denied); choose another output path")


@contextlib.contextmanager
def atomic_outputs(*paths: "str | Path") -> Iterator[List[Path]]:
    """Yield temporary paths beside ``paths``; on success rename them all into place, on error remove them."""
    finals = [Path(p) for p in paths]
    for final in finals:
        check_output_dir(final)
    temps: List[Path] = []
    try:
        for final in finals:
            fd, name = tempfile.mkstemp(prefix=f".{final.name}.", suffix=".tmp" + final.suffix, dir=final.parent)
            os.close(fd)
            temps.append(Path(name))
        yield temps
        for temp, final in zip(temps, finals):
            if not temp.is_file() or temp.stat().st_size == 0:
                raise RuntimeError(f"internal error: {final.name} was not written")
        mode = _default_file_mode()
        for temp, final in zip(temps, finals):
            os.chmod(temp, mode)  # mkstemp creates 0600; a model file is as readable as any other
            os.replace(temp, final)
    finally:
        for temp in temps:
            with contextlib.suppress(FileNotFoundError):
                temp.unlink()


def _default_file_mode() -> int:
    """0666 less the process umask: the mode ``open()`` would have given a new file."""
    mask = os.umask(0)
    os.umask(mask)
    return 0o666 & ~mask


def atomic_write_bytes(path: "str | Path", data: bytes) -> None:
    with atomic_outputs(path) as (temp,):
        temp.write_bytes(data)


def atomic_write_text(path: "str | Path", text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def remove_all(paths: Sequence[Path]) -> None:
    for path in paths:
        with contextlib.suppress(FileNotFoundError):
            Path(path).unlink()
