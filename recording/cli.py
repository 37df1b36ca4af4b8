"""The camera app's recording flags and the :class:`~recording.recorder.Recording` they make.

    parser = argparse.ArgumentParser(); add_arguments(parser); args = parser.parse_args()
    check_at_start(args)                                       # before the model: numbers, triggers, the folder
    recording = from_args(args, ["cam0"], detector.class_names)  # None without --record; before streams open
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any, Callable, Dict, Optional, Sequence

from recording.options import RecordOptions, parse_record_options
from runtimes.errors import UserError

__all__ = ["add_arguments", "check_at_start", "from_args", "record_options"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The recording option group: --record DIR and what it records and keeps."""
    group = parser.add_argument_group("recording (evidence clips around events; docs/recording.md)")
    group.add_argument("--record", type=Path, metavar="DIR",
                       help="write an MP4 clip (the source's own video, not re-encoded), a JSON sidecar and "
                            "snapshots around every event to DIR/STREAM/YYYY-MM-DD/; events carry 'clip' and "
                            "'snapshot' (paths relative to DIR)")
    group.add_argument("--record-on", action="append", metavar="all|EVENT_TYPE|class:NAME",
                       help="what starts a clip: all (every event type but counts), an event type, or class:NAME "
                            "(any confirmed track of that class); repeatable, comma lists (default: all)")
    group.add_argument("--pre-seconds", type=float, metavar="S",
                       help=f"seconds of video before the first event of a clip (default: {RecordOptions.pre_s})")
    group.add_argument("--post-seconds", type=float, metavar="S",
                       help=f"seconds of video after the last event of a clip (default: {RecordOptions.post_s})")
    group.add_argument("--retain-days", type=float, metavar="D", help="remove clips older than D days (default: "
                                                                      "keep)")
    group.add_argument("--retain-gb", type=float, metavar="G", help="remove the oldest clips beyond G GB in DIR "
                                                                    "(default: keep)")


_FLAGS = ("--record-on", "--pre-seconds", "--post-seconds", "--retain-days", "--retain-gb")


def _or_default(value: Optional[float], default: float) -> float:
    return default if value is None else value


def record_options(args: argparse.Namespace, class_names: Optional[Sequence[str]]) -> Optional[RecordOptions]:
    """The checked options (None without --record); ``class_names`` None: before the model is loaded (the
    folder probed, not made; class triggers checked later)."""
    if args.record is None:
        given = [flag for flag in _FLAGS if getattr(args, flag[2:].replace("-", "_")) is not None]
        if given:
            raise UserError(f"{given[0]} needs --record DIR: give the folder the clips go to")
        return None
    return parse_record_options(args.record, args.record_on or ["all"],
                                _or_default(args.pre_seconds, RecordOptions.pre_s),
                                _or_default(args.post_seconds, RecordOptions.post_s),
                                args.retain_days, args.retain_gb, class_names)


def check_at_start(args: argparse.Namespace) -> None:
    """Everything but the class names, before the model or a stream is opened (one line each)."""
    record_options(args, None)


def from_args(args: argparse.Namespace, stream_names: Sequence[str], class_names: Sequence[str],
              log: Callable[[str], None] = print):
    """The :class:`Recording` for ``stream_names`` (None without --record): call before the streams open."""
    options = record_options(args, [name for name in class_names[1:] if name])
    if options is None:
        return None
    from recording.recorder import Recording

    recording = Recording(options, list(stream_names), log=log)
    log(f"recording: clips to {options.folder} ({options.pre_s:g} s before, {options.post_s:g} s after)")
    return recording


def tap_readers(recording: Any, timeout_s: float, log: Callable[[str], None] = print) -> Optional[Callable[..., Any]]:
    """The capture layer's ``reader_for`` with --record: file and rtsp:// streams read through
    :class:`~recording.tap.TapReader`, whose encoded units feed the stream's ring buffer (decoded once); None,
    with a line saying so, without GStreamer for Python (nothing is recorded then). A stream reopened (an RTSP
    source lost and back) gets a reader on the same :class:`~recording.tap.StreamClock`: its times go on."""
    from recording.gst import import_gst
    from recording.tap import StreamClock, TapReader, tappable

    try:
        import_gst()
    except UserError as exc:
        log(f"recording: streams are not recorded: {exc}")
        return None
    clocks: Dict[str, StreamClock] = {}

    def reader_for(name: str, spec: Any) -> Optional[TapReader]:
        if spec.folder is not None or not tappable(spec.text, spec.live):
            return None
        clock = clocks.setdefault(name, StreamClock())
        return TapReader(spec.text, recording.stream(name).on_unit, spec.live, timeout_s, clock)

    return reader_for
