"""The settings the configuration file shares with the camera's flags: where each one is in the file, which
flag sets it, and what values it takes. One row a setting, so the file's defaults are the flags' defaults (read
from the camera's argument parser, :mod:`boxconfig.defaults`) and a flag given on the command line overrides
the same setting (:mod:`boxconfig.flags`).

Settings with no flag of the same shape (a stream's name and source, a model's path, the web view's address)
are declared in :mod:`boxconfig.schema` only.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Dict, Tuple

from recording.options import RecordOptions
from streams.motion import MotionOptions

# The sections a row belongs to: "models.NAME", "streams[i]", "streams[i].tracking", "streams[i].motion", and
# the top-level ones.
MODEL, STREAM, TRACKING, MOTION = "model", "stream", "tracking", "motion"
SINKS, WEBVIEW, OUTPUTS, CSI, RECORDING = "sinks", "webview", "outputs", "csi", "recording"
FLAG_DEFAULT = object()  # a row's file default is its flag's

_FRACTION = {"type": "number", "minimum": 0, "maximum": 1}
_OPTIONAL_PATH = {"type": ["string", "null"], "minLength": 1, "maxLength": 4096}


@dataclass(frozen=True)
class Field:
    """A setting: its ``section`` and ``key`` in the file, the camera flag's ``dest`` (its argparse name) and
    the JSON Schema of its values (the default is added from the flag). ``default``: the file's default where
    the flag's is None meaning "the library's default" (recording's seconds, motion's numbers): that default,
    read from the library's options dataclass. Ranges are checked by the library's own code where it has them
    (boxconfig/recording_section.py, boxconfig/gating_section.py), so the schema gives only the types there."""

    section: str
    key: str
    dest: str
    schema: Dict[str, Any]
    default: Any = FLAG_DEFAULT

    @property
    def flag(self) -> str:
        return "--" + self.dest.replace("_", "-")


FIELDS: Tuple[Field, ...] = (
    Field(MODEL, "runtime", "runtime", {"type": ["string", "null"], "pattern": "^[a-z][a-z0-9_-]{0,31}$"}),
    Field(MODEL, "batch_size", "batch_size", {"type": ["integer", "null"], "minimum": 1, "maximum": 256}),
    Field(MODEL, "async_depth", "async_depth", {"type": ["integer", "null"], "minimum": 0, "maximum": 64}),
    Field(MODEL, "batch_timeout_ms", "batch_timeout", {"type": "number", "exclusiveMinimum": 0, "maximum": 60000}),
    Field(MODEL, "score_threshold", "score_threshold", {"type": ["number", "null"], "minimum": 0, "maximum": 1}),
    Field(STREAM, "score_threshold", "score_threshold", {"type": ["number", "null"], "minimum": 0, "maximum": 1}),
    Field(STREAM, "realtime", "realtime", {"type": "boolean"}),
    Field(STREAM, "max_frames", "max_frames", {"type": "integer", "minimum": 0}),
    Field(STREAM, "source_timeout_s", "source_timeout", {"type": "number", "exclusiveMinimum": 0, "maximum": 3600}),
    Field(STREAM, "max_wait_ms", "max_wait", {"type": "number", "minimum": 0, "maximum": 10000}),
    Field(TRACKING, "enabled", "track", {"type": "boolean"}),
    Field(TRACKING, "high_score", "track_high_score", _FRACTION),
    Field(TRACKING, "low_score", "track_low_score", _FRACTION),
    Field(TRACKING, "new_score", "track_new_score", _FRACTION),
    Field(TRACKING, "match_iou", "track_match_iou", _FRACTION),
    Field(TRACKING, "min_hits", "track_min_hits", {"type": "integer", "minimum": 1}),
    Field(TRACKING, "max_missed", "track_max_missed", {"type": "integer", "minimum": 0}),
    Field(SINKS, "events_file", "events", _OPTIONAL_PATH),
    Field(SINKS, "webhook", "webhook", {"type": ["string", "null"], "minLength": 1, "maxLength": 4096}),
    Field(SINKS, "counts_every_s", "counts_every", {"type": "number", "minimum": 0}),
    Field(SINKS, "queue", "sink_queue", {"type": "integer", "minimum": 1}),
    Field(WEBVIEW, "token", "serve_token", {"type": ["string", "null"], "minLength": 1, "maxLength": 1024,
                                            "pattern": "\\S", "x-message": "give a token that is not blank"}),
    Field(WEBVIEW, "header_timeout_s", "serve_header_timeout", {"type": "number", "exclusiveMinimum": 0,
                                                                "maximum": 600}),
    Field(WEBVIEW, "rtsp_out", "rtsp_out", {"type": ["string", "null"], "minLength": 1, "maxLength": 256}),
    Field(OUTPUTS, "headless", "headless", {"type": "boolean"}),
    Field(OUTPUTS, "video", "output", _OPTIONAL_PATH),
    Field(OUTPUTS, "json", "json", _OPTIONAL_PATH),
    Field(CSI, "sensor_mode", "csi_sensor_mode", {"type": "integer", "minimum": -1}),
    Field(CSI, "width", "csi_width", {"type": "integer", "minimum": 1, "maximum": 16384}),
    Field(CSI, "height", "csi_height", {"type": "integer", "minimum": 1, "maximum": 16384}),
    Field(CSI, "fps", "csi_fps", {"type": "integer", "minimum": 1, "maximum": 1000}),
    Field(CSI, "flip", "csi_flip", {"type": "integer", "minimum": 0, "maximum": 7}),
    Field(MOTION, "enabled", "motion", {"type": "boolean"}),
    Field(MOTION, "threshold", "motion_threshold", {"type": "integer"}, MotionOptions.threshold),
    Field(MOTION, "max_skip", "motion_max_skip", {"type": "integer"}, MotionOptions.max_skip),
    Field(MOTION, "mask", "motion_mask", {"type": ["string", "null"], "minLength": 1, "maxLength": 4096}),
    Field(RECORDING, "dir", "record", _OPTIONAL_PATH),
    Field(RECORDING, "record_on", "record_on", {"type": "array", "minItems": 1, "maxItems": 64,
                                                "items": {"type": "string", "minLength": 1, "maxLength": 256}},
          ["all"]),
    Field(RECORDING, "pre_seconds", "pre_seconds", {"type": "number"}, RecordOptions.pre_s),
    Field(RECORDING, "post_seconds", "post_seconds", {"type": "number"}, RecordOptions.post_s),
    Field(RECORDING, "retain_days", "retain_days", {"type": ["number", "null"]}),
    Field(RECORDING, "retain_gb", "retain_gb", {"type": ["number", "null"]}),
)


def fields_of(section: str) -> Tuple[Field, ...]:
    return tuple(f for f in FIELDS if f.section == section)
