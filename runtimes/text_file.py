"""Reading a small text file a user names (a zones file, a sources file): bounded, never blocking, UTF-8.

Every way it can fail is one :class:`UserError` line that starts with ``label`` (e.g. ``--zones z.json``)
and ends with ``fix``: no such file, a name too long for the file system, a folder, a FIFO or a device
(reading one would wait for a writer or never end), a file larger than ``max_bytes``, bytes that are not
UTF-8 (with the line and column of the first).
"""

from __future__ import annotations

import codecs
import errno
import os
import stat
from pathlib import Path
from typing import Tuple, Union

from runtimes.errors import UserError


def read_text_file(path: Union[str, Path], label: str, max_bytes: int, fix: str) -> str:
    """The file's text (a UTF-8 byte-order mark dropped), or a UserError naming the problem and ``fix``."""
    data = _read_bytes(Path(path), label, max_bytes, fix)
    if data.startswith(codecs.BOM_UTF8):
        data = data[len(codecs.BOM_UTF8):]
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        before = data[:exc.start].decode("utf-8")  # valid up to the first bad byte
        line, column = line_and_column(before, len(before))
        raise UserError(f"{label}, line {line}, column {column}: byte 0x{data[exc.start]:02x} is not UTF-8; "
                        f"save the file as UTF-8 text") from None


def line_and_column(text: str, offset: int) -> Tuple[int, int]:
    """1-based line and column (in characters) of ``offset`` in ``text``."""
    return text.count("\n", 0, offset) + 1, offset - (text.rfind("\n", 0, offset) + 1) + 1


def _read_bytes(path: Path, label: str, max_bytes: int, fix: str) -> bytes:
    try:
        # O_NONBLOCK: opening a FIFO for reading would otherwise wait for a writer.
        fd = os.open(str(path), os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    except OSError as exc:
        raise UserError(f"{label}: {_open_problem(exc)}; {fix}") from None
    try:
        mode = os.fstat(fd).st_mode
        if stat.S_ISDIR(mode):
            raise UserError(f"{label}: is a folder, not a file; {fix}")
        if not stat.S_ISREG(mode):
            raise UserError(f"{label}: is not a regular file (a FIFO, socket or device); {fix}")
        data = _read_at_most(fd, max_bytes + 1)  # not the size from stat: the file may grow meanwhile
    except OSError as exc:
        raise UserError(f"{label}: cannot read it ({exc.strerror or exc}); {fix}") from None
    finally:
        os.close(fd)
    if len(data) > max_bytes:
        raise UserError(f"{label}: larger than {max_bytes // 1024} KiB, too large for this kind of file; {fix}")
    return data


def _read_at_most(fd: int, size: int) -> bytes:
    chunks = []
    while size > 0:
        chunk = os.read(fd, min(size, 1 << 16))
        if not chunk:
            break
        chunks.append(chunk)
        size -= len(chunk)
    return b"".join(chunks)


def _open_problem(exc: OSError) -> str:
    if exc.errno == errno.ENOENT:
        return "no such file"
    if exc.errno == errno.ENAMETOOLONG:
        return "the file name is too long for the file system (at most 255 bytes a name)"
    if exc.errno in (errno.EACCES, errno.EPERM):
        return "permission denied"
    if exc.errno == errno.ENOTDIR:
        return "a folder on its path is a file"
    return f"cannot open it ({exc.strerror or exc})"
