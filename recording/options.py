"""The recording flags as one checked dataclass: every bad value is one :class:`UserError` line naming the
flag and the fix, raised by :func:`parse_record_options` before any stream is opened or model loaded."""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import FrozenSet, Iterable, Optional, Sequence, Set

from analytics.events import EVENT_TYPES
from runtimes.errors import UserError

# "counts" is a periodic report of the live counts, not something that happened: "all" leaves it out (it
# would record every stream all the time); name it in --record-on to record it anyway.
TRIGGERING_EVENTS = tuple(t for t in EVENT_TYPES if t != "counts")
CLASS_PREFIX = "class:"


@dataclass(frozen=True)
class Triggers:
    """What starts or extends a clip: events of ``event_types``; any confirmed track of ``classes``."""

    event_types: FrozenSet[str]
    classes: FrozenSet[str]

    def fires_on(self, event_type: str) -> bool:
        return event_type in self.event_types


@dataclass(frozen=True)
class RecordOptions:
    """``folder``: where clips go (FOLDER/STREAM/YYYY-MM-DD/HHMMSS-ID.mp4); ``pre_s``/``post_s``: seconds kept
    before the first and after the last event of a clip; ``retain_days``/``retain_gb``: limits on what stays
    (None: no limit); ``min_free_mb``: below this much free space recording pauses; ``ring_mb``: the most
    encoded video a stream keeps in memory; ``retention_interval_s``: how often retention and free space are
    checked."""

    folder: Path
    triggers: Triggers
    pre_s: float = 5.0
    post_s: float = 5.0
    retain_days: Optional[float] = None
    retain_gb: Optional[float] = None
    min_free_mb: float = 64.0
    ring_mb: float = 64.0
    retention_interval_s: float = 60.0


def parse_triggers(values: Sequence[str], class_names: Optional[Iterable[str]]) -> Triggers:
    """``--record-on`` values (each may be comma-separated): "all", event types, "class:NAME" (the name
    checked against ``class_names``; None: not yet, before the model is loaded)."""
    known = None if class_names is None else set(class_names)
    events: Set[str] = set()
    classes: Set[str] = set()
    for value in (v.strip() for text in (values or ["all"]) for v in text.split(",")):
        if value == "all":
            events.update(TRIGGERING_EVENTS)
        elif value in EVENT_TYPES:
            events.add(value)
        elif value.startswith(CLASS_PREFIX):
            name = value[len(CLASS_PREFIX):]
            if known is not None and name not in known:
                raise UserError(f"--record-on {value}: the model has no class {name!r}; "
                                f"use one of {', '.join(sorted(known)) or '(none)'}")
            classes.add(name)
        else:
            raise UserError(f"--record-on {value!r}: not a trigger; use all, an event type "
                            f"({', '.join(EVENT_TYPES)}) or class:NAME")
    return Triggers(frozenset(events), frozenset(classes))


def _seconds(flag: str, value: float) -> float:
    if not math.isfinite(value) or value < 0:
        raise UserError(f"{flag} {value}: seconds must be a finite number >= 0; give e.g. {flag} 5")
    return float(value)


def _limit(flag: str, value: Optional[float], unit: str) -> Optional[float]:
    if value is None:
        return None
    if not math.isfinite(value) or value <= 0:
        raise UserError(f"{flag} {value}: a retention limit must be more than 0 {unit}; "
                        f"leave {flag} out for no limit")
    return float(value)


def check_folder(folder: "str | Path") -> Path:
    """``folder`` made if missing; UserError when it is something else or cannot be written."""
    path = Path(folder)
    try:
        path.mkdir(parents=True, exist_ok=True)
    except FileExistsError:
        raise UserError(f"--record {folder}: exists and is not a folder; give a folder for the clips") from None
    except OSError as exc:
        raise UserError(f"--record {folder}: cannot be made ({exc.strerror}); choose another folder") from None
    if not path.is_dir():
        raise UserError(f"--record {folder}: exists and is not a folder; give a folder for the clips")
    if not os.access(path, os.W_OK | os.X_OK):
        raise UserError(f"--record {folder}: cannot write there (permission denied); choose another folder")
    return path


def probe_folder(folder: "str | Path") -> None:
    """What :func:`check_folder` refuses, found without making anything: the folder, or the nearest folder
    above it that exists, must be a writable folder."""
    path = Path(folder).absolute()
    while not path.exists() and path != path.parent:
        path = path.parent
    if not path.is_dir():
        raise UserError(f"--record {folder}: {path} exists and is not a folder; give a folder for the clips")
    if not os.access(path, os.W_OK | os.X_OK):
        raise UserError(f"--record {folder}: cannot write in {path} (permission denied); choose another folder")


def parse_record_options(folder: "str | Path", record_on: Sequence[str], pre_s: float, post_s: float,
                         retain_days: Optional[float], retain_gb: Optional[float],
                         class_names: Optional[Iterable[str]], **more: float) -> RecordOptions:
    """The checked options (``more``: the other fields of :class:`RecordOptions`, checked as numbers > 0).
    ``class_names`` None: the checks that need neither the model nor a change on disk (the folder probed,
    not made; class triggers not matched against the model's classes)."""
    for key, value in more.items():
        if not math.isfinite(value) or value <= 0:
            raise UserError(f"recording option {key} = {value}: must be a number > 0")
    pre, post = _seconds("--pre-seconds", pre_s), _seconds("--post-seconds", post_s)
    days, gb = _limit("--retain-days", retain_days, "days"), _limit("--retain-gb", retain_gb, "GB")
    triggers = parse_triggers(record_on, class_names)
    # the folder last: it is made when missing, which only a run that goes ahead should do
    if class_names is None:
        probe_folder(folder)
    path = Path(folder) if class_names is None else check_folder(folder)
    return RecordOptions(folder=path, triggers=triggers, pre_s=pre, post_s=post,
                         retain_days=days, retain_gb=gb, **more)
