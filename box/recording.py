"""The box's recording (``recording`` in its configuration): one :class:`~recording.recorder.Recording` for
every recorded stream of every model, their file and rtsp:// sources read through its tap (the encoded video
kept, decoded once), streams added while the box runs recorded too."""

from __future__ import annotations

from typing import Any, Callable, Optional, Sequence

from boxconfig.config import BoxConfig, StreamConfig
from boxconfig.recording_section import check_trigger_classes, record_options


class BoxRecording:
    """``recording``: the Recording (for the web view's component and the MQTT snapshots); :meth:`evidence`
    what analytics/pipeline.py records a stream's events with."""

    def __init__(self, config: BoxConfig, label: str, log: Callable[[str], None] = print) -> None:
        from recording.recorder import Recording

        self.label, self.log = label, log
        options = record_options(config, label)
        self.names = {s.name for s in config.streams if config.recorded(s)}
        self.recording = Recording(options, sorted(self.names), log=log)
        log(f"recording: clips of {', '.join(sorted(self.names)) or 'no stream'} to {options.folder} "
            f"({options.pre_s:g} s before, {options.post_s:g} s after)")

    @classmethod
    def of(cls, config: BoxConfig, label: str, log: Callable[[str], None] = print) -> Optional["BoxRecording"]:
        """None when ``config`` records nothing (no ``recording.dir``)."""
        return cls(config, label, log) if config.recording.dir is not None else None

    def check_classes(self, config: BoxConfig, class_names: Sequence[Sequence[str]]) -> None:
        """Each ``class:NAME`` trigger names a class of one of the models (``class_names``: each model's,
        background first); a ConfigError with the key path."""
        check_trigger_classes(config, self.label, sorted({n for names in class_names for n in names[1:] if n}))

    def records(self, name: str) -> bool:
        return name in self.names

    def evidence(self, name: str) -> Any:
        return self.recording.stream(name)

    def add(self, stream: StreamConfig, config: BoxConfig) -> None:
        """Record ``stream`` (being added to the running box) when ``config`` says so."""
        if config.recorded(stream):
            self.recording.add_stream(stream.name)
            self.names = self.names | {stream.name}

    def reader_for(self, stream: StreamConfig) -> Optional[Callable[..., Any]]:
        """The capture's ``reader_for`` of a recorded stream (its source through the tap); None for the others."""
        from recording.cli import tap_readers

        if not self.records(stream.name):
            return None
        return tap_readers(self.recording, stream.source_timeout_s, self.log)

    def close(self) -> None:
        self.recording.close()
