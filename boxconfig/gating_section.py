"""A stream's ``interval`` and ``motion`` (which frames the detector sees, streams/gating.py): checked by the
code that checks ``--interval`` and ``--motion*`` (streams/gating.py, streams/motion.py), and made into the
:class:`~streams.gating.GateOptions` of a model's pipeline."""

from __future__ import annotations

from typing import Any, Dict, List, Mapping, Sequence

from boxconfig.config import StreamConfig
from boxconfig.fields import MOTION, fields_of
from boxconfig.flag_messages import at_key
from runtimes.data_path import KeyPath
from runtimes.errors import UserError
from streams.gating import GateOptions, motion_options

_KEYS = dict({field.flag: field.key for field in fields_of(MOTION)}, **{"--interval": "interval"})


def gating_problems(data: Dict[str, Any], label: str, defaults: Mapping[str, Any]) -> List[str]:
    """One line per interval or motion setting of a stream that the flags' checks refuse (each motion key
    checked with the others at their defaults, so every problem is found at once; wrong types: the schema's)."""
    streams = data.get("streams")
    problems: List[str] = []
    for index, stream in enumerate(streams if isinstance(streams, list) else []):
        if not isinstance(stream, dict):
            continue
        at = KeyPath(label).key("streams").index(index)
        interval = stream.get("interval", GateOptions.interval)
        try:
            if _whole(interval):
                GateOptions(interval)
        except UserError as exc:
            problems.append(at_key(at, str(exc), _KEYS))
        motion = stream.get("motion", {})
        values = {f.key: defaults[f.dest] for f in fields_of(MOTION)}
        for key, value in (motion.items() if isinstance(motion, dict) else ()):
            typed = isinstance(value, (str, type(None))) if key == "mask" else _whole(value)
            if key not in values or key == "enabled" or not typed:
                continue
            settings = dict(values, **{key: value})
            try:
                motion_options(True, settings["threshold"], settings["max_skip"], settings["mask"])
            except UserError as exc:
                problems.append(at_key(at.key("motion"), str(exc), _KEYS))
    return problems


def gate_options(streams: Sequence[StreamConfig]) -> GateOptions:
    """The pipeline's gating for ``streams`` (of one model): each stream's interval and motion test."""
    motion = tuple((s.name, motion_options(True, s.motion.threshold, s.motion.max_skip, s.motion.mask))
                   for s in streams if s.motion.enabled)
    return GateOptions(per_stream=tuple((s.name, s.interval) for s in streams), motion_of=motion)


def _whole(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)
