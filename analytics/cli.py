"""The camera app's analytics options and the :class:`Analytics` they make.

    parser = argparse.ArgumentParser(); add_arguments(parser); args = parser.parse_args()
    analytics = from_args(args, ["cam0"], detector.class_names)   # None when no option asked for it
    ...; analytics.process("cam0", record, detections, frame)     # per frame, on the output thread
    summary = analytics.close(timeout_s=5)
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

from analytics.pipeline import Analytics
from runtimes.errors import UserError

__all__ = ["DEFAULT_EVENTS_FILE", "Analytics", "add_arguments", "check_at_start", "from_args"]

DEFAULT_EVENTS_FILE = "events.jsonl"
# (option, ByteTracker keyword, type, default, help)
_TRACKER_OPTIONS = (
    ("--track-high-score", "high_score", float, 0.5, "detections scoring at least this are matched first and can "
                                                      "start tracks"),
    ("--track-low-score", "low_score", float, 0.1, "lower-scoring detections are ignored; those between this and "
                                                   "--track-high-score only continue tracks"),
    ("--track-new-score", "new_track_score", float, 0.6, "minimum score of a detection that starts a track"),
    ("--track-match-iou", "match_iou", float, 0.2, "minimum IoU of a track and a high-score detection to match"),
    ("--track-min-hits", "min_hits", int, 3, "consecutive matches before a track is confirmed (reported)"),
    ("--track-max-missed", "max_missed", int, 30, "frames a track survives unmatched (occlusions) before removal"),
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The analytics option group: --track and its thresholds, --zones, --events, --webhook, --mqtt."""
    group = parser.add_argument_group("tracking, zones and events")
    group.add_argument("--track", action="store_true",
                       help="track objects across frames (ByteTrack): ids in the JSON lines and on the overlay")
    for flag, _, kind, default, text in _TRACKER_OPTIONS:
        group.add_argument(flag, type=kind, default=default, metavar="N" if kind is int else "X",
                           help=f"{text} (default: %(default)s)")
    group.add_argument("--zones", type=Path, metavar="FILE",
                       help="zones and counting lines per stream, JSON or YAML (see docs/analytics.md); implies "
                            "--track")
    group.add_argument("--events", type=Path, metavar="FILE",
                       help=f"write events as JSON lines to FILE (default with --zones: ./{DEFAULT_EVENTS_FILE}); "
                            "events other sinks could not deliver are kept there too")
    group.add_argument("--webhook", metavar="URL", help="POST each event as JSON to this http(s) URL, with retries")
    group.add_argument("--mqtt", metavar="HOST:PORT/TOPIC",
                       help="publish each event with QoS 1 to TOPIC/<stream> on this MQTT broker")
    group.add_argument("--counts-every", type=float, default=60.0, metavar="SECONDS",
                       help="a 'counts' event per stream every SECONDS of stream time; 0: never (default: %(default)s)")
    group.add_argument("--sink-queue", type=int, default=1000, metavar="N",
                       help="events each sink holds while its endpoint is slow or down; more are counted as "
                            "failed and kept in the events file (default: %(default)s)")


def from_args(args: argparse.Namespace, stream_names: List[str], class_names: Sequence[str],
              log=print, recording: Any = None) -> Optional[Analytics]:
    """An :class:`Analytics` for the options in ``args`` (None when none was given); a UserError when one is wrong.
    ``recording`` (recording.recorder.Recording, --record): events get their clip and snapshot before the sinks.

    Checks, each failing with one line: the zone file (polygons, stream and class names), the webhook URL
    (http or https), the MQTT broker (connected to now, so a wrong address fails at start, not silently later).
    """
    from analytics.sinks import check_webhook_url, open_sinks, parse_mqtt_address
    from analytics.zone_file import load_zone_file

    zones_path = getattr(args, "zones", None)
    network = [flag for flag, value in (("--webhook", args.webhook), ("--mqtt", args.mqtt),
                                        ("--events", args.events)) if value]
    if not (tracking(args) or network):
        return None
    if network and not zones_path:
        raise UserError(f"{network[0]} needs --zones: events come from zones and lines; give a zone file "
                        "(see docs/analytics.md)")
    options = tracker_options(args)
    if args.counts_every < 0:
        raise UserError(f"--counts-every {args.counts_every}: give 0 (never) or a positive number of seconds")
    if args.sink_queue < 1:
        raise UserError(f"--sink-queue {args.sink_queue}: give a positive number of events")
    zones = load_zone_file(zones_path, stream_names, class_names) if zones_path else None
    if args.webhook:
        check_webhook_url(args.webhook)
    mqtt_address = parse_mqtt_address(args.mqtt) if args.mqtt else None

    sinks, events_file = open_sinks(events_path(args) or Path(DEFAULT_EVENTS_FILE) if zones_path else None,
                                    mqtt_address, args.webhook, args.sink_queue,
                                    recording.on_snapshot if recording is not None else None)
    analytics = Analytics(stream_names, class_names, zones, sinks, events_file, options,
                          counts_every_s=args.counts_every,
                          evidence=recording.stream if recording is not None else None)
    counted = sum(len(z.zones) + len(z.lines) for z in (zones or {}).values())
    where = ", ".join(s.name for s in sinks) or "no sink"
    log(f"analytics: tracking {len(stream_names)} stream(s)"
        + (f", {counted} zone(s)/line(s), events to {where}" if zones else ""))
    return analytics


def events_path(args: argparse.Namespace) -> Optional[Path]:
    """Where the events file goes: --events, or ./events.jsonl with --zones; None without either."""
    return args.events or (Path(DEFAULT_EVENTS_FILE) if getattr(args, "zones", None) else None)


def check_at_start(args: argparse.Namespace) -> None:
    """What needs neither the model nor the streams, checked before either is opened (one line each): the
    events file's path (not a folder, FIFO or device; runtimes/atomic.py), the webhook's URL, and the zone
    file's text (its content needs the model's classes: :func:`from_args`)."""
    from analytics.webhook import check_webhook_url
    from analytics.zone_file import read_zone_data
    from runtimes.atomic import check_output_path

    if getattr(args, "zones", None):
        read_zone_data(args.zones)
    path = events_path(args)
    if path is not None:
        check_output_path(path, "--events")
    if args.webhook:
        check_webhook_url(args.webhook)


def tracking(args: argparse.Namespace) -> bool:
    """Whether the options ask for tracking (--track, or --zones or --record, which imply it: recording's
    class triggers and snapshots follow tracks)."""
    return bool(args.track or getattr(args, "zones", None) or getattr(args, "record", None))


def tracker_options(args: argparse.Namespace) -> Dict[str, Any]:
    """ByteTracker keywords from the --track-* options, checked (UserError naming the option)."""
    options = {key: getattr(args, flag[2:].replace("-", "_")) for flag, key, _, _, _ in _TRACKER_OPTIONS}
    for flag, key, _, _, _ in _TRACKER_OPTIONS:
        value = options[key]
        if key in ("high_score", "low_score", "new_track_score", "match_iou") and not 0.0 <= value <= 1.0:
            raise UserError(f"{flag} {value}: give a number between 0 and 1")
        if key == "min_hits" and value < 1:
            raise UserError(f"{flag} {value}: give at least 1")
        if key == "max_missed" and value < 0:
            raise UserError(f"{flag} {value}: give 0 or more")
    if options["low_score"] > options["high_score"]:
        raise UserError(f"--track-low-score {options['low_score']} is above --track-high-score "
                        f"{options['high_score']}; the low threshold must be the lower one")
    return options
