"""Files published together as one set (the benchmark's report: .md, .json, .csv and the plot): a process
killed at any moment leaves the previous set or the new one in the folder, never a mix of both.

One rename replaces one file, so the files a reader opens are symbolic links through one more link, and that
one link is what a new set switches:

    benchmark.md        -> .benchmark.current/benchmark.md
    benchmark.json      -> .benchmark.current/benchmark.json
    .benchmark.current  -> .benchmark.set.PID.XXXX          (the folder holding the whole set)

A new set is written into a new hidden set folder; renaming a new link onto ``.benchmark.current`` (one
``os.replace``) then switches every file at once; the old set folder is removed after. Regular files under
the set's names (a folder written before this scheme, or files copied in) are first taken into the current
set without changing what they read: hard-linked into its folder, then each replaced by a link to itself.

Copy such a folder's files with ``cp -L`` (or ``cp benchmark.*``, which follows links given by name) where
regular files are wanted, e.g. before committing a report to git.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import tempfile
from pathlib import Path
from typing import Iterator, Sequence

from runtimes.atomic import check_output_path, default_mode, is_running, remove_dead_temporaries
from runtimes.errors import UserError


def current_link(folder: Path, stem: str) -> Path:
    return folder / f".{stem}.current"


def check_file_set(folder: Path, names: Sequence[str], stem: str, flag: str) -> None:
    """UserError (one line naming ``flag``) unless the set can be published in ``folder``: each name absent, a
    regular file or this scheme's link; ``folder`` writable."""
    current = current_link(folder, stem)
    if os.path.lexists(current) and not current.is_symlink():
        raise UserError(f"{flag} {folder}: {current.name} is not a link (this report's own); remove it")
    for name in names:
        path = folder / name
        ours = f"{current.name}/{name}"
        if path.is_symlink() and os.readlink(path) != ours:
            raise UserError(f"{flag} {folder}: {name} is a link to {os.readlink(path)}, not to {ours}; remove "
                            f"it or choose another {flag}")
        if not path.is_symlink():
            check_output_path(path, flag)


@contextlib.contextmanager
def file_set(folder: Path, names: Sequence[str], stem: str, flag: str = "") -> Iterator[Path]:
    """Yield a new hidden folder in ``folder``; the caller writes (some of) ``names`` into it. On success they
    are published as ``folder/NAME`` in one switch (a name the new set lacks goes); on error the folder is
    removed and the previous set stays."""
    check_file_set(folder, names, stem, flag)
    staging = _new_set_folder(folder, stem)
    try:
        yield staging
        written = [name for name in names if (staging / name).is_file()]
        if not written:
            raise RuntimeError(f"internal error: no file of the set {stem} was written")
        current = current_link(folder, stem)
        _take_over(folder, current, names, stem)
        _point(current, staging.name)  # the switch: every file of the set at once
        for name in names:
            if name in written and not (folder / name).is_symlink():
                _point(folder / name, f"{current.name}/{name}")
            elif name not in written and (folder / name).is_symlink():
                (folder / name).unlink()  # the previous set had it, this one does not
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    _remove_old_sets(folder, stem, keep=staging.name)


def _take_over(folder: Path, current: Path, names: Sequence[str], stem: str) -> None:
    """Make every name in ``folder`` a link through ``current`` without changing what any of them reads."""
    if not current.is_symlink():
        _point(current, _new_set_folder(folder, stem).name)
    set_folder = folder / os.readlink(current)
    for name in names:
        visible = folder / name
        if visible.is_symlink() or not visible.is_file():
            continue
        copy = set_folder / f".{name}.{os.getpid()}.tmp"
        try:
            os.link(visible, copy)  # the same bytes, without copying them
        except OSError:  # a file system without hard links
            shutil.copy2(visible, copy)
        os.replace(copy, set_folder / name)
        _point(visible, f"{current.name}/{name}")


def _new_set_folder(folder: Path, stem: str) -> Path:
    made = Path(tempfile.mkdtemp(prefix=f".{stem}.set.{os.getpid()}.", dir=folder))
    os.chmod(made, default_mode(0o777))  # mkdtemp's 0700 would hide the report from other users
    return made


def _point(link: Path, target: str) -> None:
    """Make ``link`` a symbolic link to ``target`` in one rename (a new link renamed over the old name)."""
    remove_dead_temporaries(link)
    temporary = link.parent / f".{link.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp"
    os.symlink(target, temporary)
    try:
        os.replace(temporary, link)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            temporary.unlink()
        raise


def _remove_old_sets(folder: Path, stem: str, keep: str) -> None:
    """Set folders other than ``keep``: those this process made, or whose writer is gone (killed mid-set)."""
    prefix = f".{stem}.set."
    current = current_link(folder, stem)
    keep_too = os.readlink(current) if current.is_symlink() else keep  # another run may have switched since
    for old in folder.glob(f"{prefix}*"):
        pid_text = old.name[len(prefix):].split(".", 1)[0]
        if old.name in (keep, keep_too) or old.is_symlink() or not pid_text.isdigit():
            continue
        if int(pid_text) == os.getpid() or not is_running(int(pid_text)):
            shutil.rmtree(old, ignore_errors=True)
