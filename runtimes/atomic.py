"""Write-then-rename, so a crash never leaves a half-written model, engine or cache where a good one is
expected: outputs are written to temporary names in the destination folder and renamed into place only
when all of them are complete.

Every output path is checked before any work (:func:`check_output_path`): a folder, a FIFO, a device or
anything else that is not a regular file is refused, since a rename onto it would destroy it (a FIFO, or as
root ``/dev/full``); a symbolic link is followed, so its target is replaced and the link stays.

Temporary names are hidden and carry the writer's process id (``.NAME.PID.XXXX.tmp``): a process killed
before it could clean up (SIGKILL, power loss) leaves its temporaries behind, and the next write of the same
output removes those whose process is gone.
"""

from __future__ import annotations

import contextlib
import glob
import json
import os
import shutil
import stat
import tempfile
import threading
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional, Sequence

from runtimes.errors import UserError

_NOT_REGULAR = ((stat.S_ISDIR, "a folder"), (stat.S_ISFIFO, "a FIFO (named pipe)"),
                (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket"))


def check_output_path(path: "str | Path", flag: str = "") -> Path:
    """The file an output written to ``path`` replaces, checked before any work: ``path`` itself, or the file a
    symbolic link there points to (the link stays; its target is replaced). UserError, in one line naming
    ``flag``, for a folder, a FIFO, a device or anything else that is not a regular file (a temporary renamed
    onto it would destroy it, and writing into it is not what an output is), and for a folder that is missing
    or not writable."""
    where = f"{flag} {path}" if flag else str(path)
    target = Path(os.path.realpath(path))
    if os.path.islink(path):
        where += f" (a link to {target})"
    try:
        mode: Optional[int] = target.stat().st_mode
    except FileNotFoundError:
        mode = None
    except OSError as exc:  # a loop of links, a path through a file
        raise UserError(f"{where}: cannot be an output ({exc.strerror}); choose another path") from None
    if mode is not None and not stat.S_ISREG(mode):
        kind = next((name for test, name in _NOT_REGULAR if test(mode)), "not a regular file")
        raise UserError(f"{where}: {kind}; give the path of a regular file (outputs are written to a temporary "
                        "file and renamed into place)")
    folder = target.parent
    if not folder.is_dir():
        raise UserError(f"{where}: the output folder {folder} does not exist; create it or choose another path")
    if not os.access(folder, os.W_OK):
        raise UserError(f"{where}: cannot write to {folder} (permission denied); choose another output path")
    return target


check_output_dir = check_output_path  # the name the export steps use


@contextlib.contextmanager
def atomic_outputs(*paths: "str | Path") -> Iterator[List[Path]]:
    """Yield temporary paths beside ``paths``; on success rename them all into place, on error remove them."""
    finals = [check_output_path(p) for p in paths]
    temps: List[Path] = []
    try:
        for final in finals:
            temps.append(temporary_beside(final))
        yield temps
        move_into_place(temps, finals)
    finally:
        for temp in temps:
            with contextlib.suppress(FileNotFoundError):
                temp.unlink()


@contextlib.contextmanager
def atomic_folder_outputs(*paths: "str | Path") -> Iterator[Path]:
    """For tools that name their own outputs (an OpenVINO ``.xml`` and its ``.bin``): yield a temporary
    folder beside ``paths``, in which the caller writes files of the same names; on success they are renamed
    into place in the order given (so the file that describes the others goes last), on error removed."""
    finals = [check_output_path(p) for p in paths]
    remove_dead_temporaries(finals[-1])
    folder = Path(tempfile.mkdtemp(prefix=f".{finals[-1].name}.{os.getpid()}.", suffix=".tmp",
                                   dir=finals[-1].parent))
    try:
        yield folder
        move_into_place([folder / Path(p).name for p in paths], finals)
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def temporary_beside(final: Path) -> Path:
    """A new empty file in ``final``'s folder, hidden, named after it: where ``final`` is written before
    :func:`move_into_place` (for outputs written over a whole run, such as a video). Beside the target of a
    symbolic link, which is what :func:`move_into_place` replaces."""
    final = Path(os.path.realpath(final))
    remove_dead_temporaries(final)
    fd, name = tempfile.mkstemp(prefix=f".{final.name}.{os.getpid()}.", suffix=".tmp" + final.suffix,
                                dir=final.parent)
    os.close(fd)
    return Path(name)


def remove_dead_temporaries(final: Path) -> None:
    """Remove the temporaries of ``final`` left by processes that no longer run."""
    prefix = f".{final.name}."
    for stale in final.parent.glob(f"{glob.escape(prefix)}*.tmp*"):
        pid_text = stale.name[len(prefix):].split(".", 1)[0]
        if not pid_text.isdigit() or int(pid_text) == os.getpid() or is_running(int(pid_text)):
            continue
        if stale.is_dir() and not stale.is_symlink():
            shutil.rmtree(stale, ignore_errors=True)
        else:
            with contextlib.suppress(FileNotFoundError):
                stale.unlink()


def replace_folder(staging: Path, final: Path) -> None:
    """Put the complete folder ``staging`` (a sibling of ``final``) at ``final``, replacing what is there:
    the old folder is renamed aside first and removed after, so ``final`` never holds a mix of both and is
    missing only between two renames."""
    retired = None
    if final.exists():
        retired = Path(tempfile.mkdtemp(prefix=f".{final.name}.old.", dir=final.parent))
        os.replace(final, retired / final.name)
    os.replace(staging, final)
    if retired is not None:
        shutil.rmtree(retired, ignore_errors=True)


def is_running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process: alive
        return True
    return True


def move_into_place(temps: Sequence[Path], finals: Sequence[Path]) -> None:
    """Rename each complete temporary file onto its final name (a link's target), in order, with an ordinary
    file's mode; UserError, before any rename, when a final path became something else than a regular file."""
    for temp, final in zip(temps, finals):
        if not temp.is_file() or temp.stat().st_size == 0:
            raise RuntimeError(f"internal error: {final.name} was not written")
    targets = [check_output_path(final) for final in finals]
    for temp, target in zip(temps, targets):
        _rename_into_place(temp, target)


def _rename_into_place(temp: Path, target: Path) -> None:
    os.chmod(temp, default_mode())  # mkstemp creates 0600; a model file is as readable as any other
    os.replace(temp, target)


def default_mode(full: int = 0o666) -> int:
    """``full`` less the process umask: the mode ``open()`` (0666) or ``mkdir`` (0777) would have given."""
    mask = os.umask(0)
    os.umask(mask)
    return full & ~mask


def atomic_write_bytes(path: "str | Path", data: bytes) -> None:
    with atomic_outputs(path) as (temp,):
        temp.write_bytes(data)


def atomic_write_text(path: "str | Path", text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


class JsonLines:
    """One JSON object per line, from any thread, written to a temporary beside ``path`` and renamed into place
    by :meth:`close` (the camera's ``--json``, the analytics' events file)."""

    def __init__(self, path: Path) -> None:
        self._target = check_output_path(path)
        self.path = path
        self._temp = temporary_beside(path)
        self._file = open(self._temp, "w", encoding="utf-8")
        self._lock = threading.Lock()
        self.lines = 0

    def write(self, record: Dict[str, Any]) -> None:
        line = json.dumps(record) + "\n"
        with self._lock:
            self._file.write(line)
            self.lines += 1

    def flush(self) -> None:
        """Whole lines so far visible in the temporary (for readers that tail it)."""
        with self._lock:
            self._file.flush()

    def close(self) -> None:
        with self._lock:
            if self._file.closed:
                return
            self._file.close()
            if self.lines:
                move_into_place([self._temp], [self._target])
            else:  # a run without frames: an empty file, renamed into place all the same
                _rename_into_place(self._temp, check_output_path(self._target))
