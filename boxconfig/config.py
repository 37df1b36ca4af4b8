"""The configuration as the camera uses it: dataclasses made from the file's checked data with every default
filled in (:func:`boxconfig.loading.load_config`), and back (:func:`to_data`) for printing, serving and writing.

Relative paths in the file (models, zones files, outputs) are relative to the file's folder: a service's
working folder is ``/``, not where the file is. :meth:`BoxConfig.resolve` gives the path to open.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Union

ZonesValue = Union[None, str, Dict[str, Any]]  # none, a zones file's path, or its content


@dataclass(frozen=True)
class ModelConfig:
    path: str  # a file or a URL a runtime opens
    runtime: Optional[str]
    batch_size: Optional[int]
    async_depth: Optional[int]
    batch_timeout_ms: float
    score_threshold: Optional[float]  # None: the camera's default (streams/scores.py)
    options: Dict[str, Any] = field(default_factory=dict)  # load options passed to the runtime


@dataclass(frozen=True)
class TrackingConfig:
    enabled: bool
    high_score: float
    low_score: float
    new_score: float
    match_iou: float
    min_hits: int
    max_missed: int


@dataclass(frozen=True)
class MotionConfig:
    """The motion test's settings (streams/motion.py MotionOptions): off unless ``enabled``."""

    enabled: bool
    threshold: int
    max_skip: int
    mask: Optional[str]  # polygons "x,y x,y x,y; ..." in the stream's frame pixels, as --motion-mask


@dataclass(frozen=True)
class StreamConfig:
    name: str
    source: str
    model: str
    zones: ZonesValue
    score_threshold: Optional[float]  # None: the model's
    keep_classes: Optional[List[str]]  # None: every class
    tracking: TrackingConfig
    realtime: bool
    max_frames: int
    source_timeout_s: float
    max_wait_ms: float  # a live frame's wait for the detector before it is dropped as stale
    interval: int  # the detector sees every Nth frame (streams/gating.py)
    motion: MotionConfig
    record: bool  # recorded when the box records (recording.dir is set)

    @property
    def tracks(self) -> bool:
        """Whether this stream is tracked: asked for, or needed by its zones."""
        return self.tracking.enabled or self.zones is not None


@dataclass(frozen=True)
class MqttConfig:
    broker: str  # HOST[:PORT][/TOPIC], as --mqtt takes it
    username: Optional[str] = None
    password: Optional[str] = None


@dataclass(frozen=True)
class SinksConfig:
    events_file: Optional[str]
    webhook: Optional[str]
    mqtt: Optional[MqttConfig]
    counts_every_s: float
    queue: int


@dataclass(frozen=True)
class WebViewConfig:
    bind: str
    port: Optional[int]  # None: no web page
    token: Optional[str]
    header_timeout_s: float
    rtsp_out: Optional[str]


@dataclass(frozen=True)
class OutputsConfig:
    headless: bool
    video: Optional[str]
    json: Optional[str]


@dataclass(frozen=True)
class CsiConfig:
    sensor_mode: int
    width: int
    height: int
    fps: int
    flip: int


@dataclass(frozen=True)
class RecordingConfig:
    """Evidence clips around events (recording/, the --record flags): none without ``dir``."""

    dir: Optional[str]  # the folder clips go to (relative: to the file's folder)
    record_on: List[str]  # triggers, as --record-on takes them: all, an event type, class:NAME
    pre_seconds: float
    post_seconds: float
    retain_days: Optional[float]  # None: no limit
    retain_gb: Optional[float]


@dataclass(frozen=True)
class BoxConfig:
    models: Dict[str, ModelConfig]  # in the file's order
    streams: List[StreamConfig]
    zones: ZonesValue  # for any stream, by name (a zones file's format)
    sinks: SinksConfig
    webview: WebViewConfig
    outputs: OutputsConfig
    csi: CsiConfig
    recording: RecordingConfig
    base_dir: Path = field(default=Path("."), compare=False)  # the file's folder

    def stream(self, name: str) -> StreamConfig:
        return next(s for s in self.streams if s.name == name)

    def recorded(self, stream: StreamConfig) -> bool:
        """Whether ``stream``'s video is recorded around its events."""
        return self.recording.dir is not None and stream.record

    def streams_of(self, model: str) -> List[StreamConfig]:
        """The streams one detector (and its scheduler) serves."""
        return [s for s in self.streams if s.model == model]

    def resolve(self, path: str) -> str:
        """``path`` as the camera opens it: a URL or an absolute path as it is, else under the file's folder."""
        if "://" in path or Path(path).is_absolute():
            return path
        return str(self.base_dir / path)


def from_data(data: Dict[str, Any], base_dir: Path = Path(".")) -> BoxConfig:
    """The dataclasses of checked data with every default filled in (:func:`boxconfig.defaults.with_defaults`)."""
    models = {name: ModelConfig(**model) for name, model in data["models"].items()}
    only = next(iter(models)) if len(models) == 1 else None
    streams = [StreamConfig(**dict(s, model=s.get("model", only), tracking=TrackingConfig(**s["tracking"]),
                                   motion=MotionConfig(**s["motion"])))
               for s in data["streams"]]
    sinks = dict(data["sinks"])
    sinks["mqtt"] = MqttConfig(**sinks["mqtt"]) if sinks["mqtt"] is not None else None
    return BoxConfig(models, streams, data["zones"], SinksConfig(**sinks), WebViewConfig(**data["webview"]),
                     OutputsConfig(**data["outputs"]), CsiConfig(**data["csi"]),
                     RecordingConfig(**data["recording"]), base_dir)


def to_data(config: BoxConfig) -> Dict[str, Any]:
    """Plain data (JSON's types), every setting given: what :func:`from_data` reads back to an equal config."""
    data = {f.name: _plain(getattr(config, f.name)) for f in dataclasses.fields(config) if f.name != "base_dir"}
    return data


def _plain(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, dict):
        return {key: _plain(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_plain(item) for item in value]
    return value
