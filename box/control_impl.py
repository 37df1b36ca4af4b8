"""The running box's side of the control API: :class:`BoxController` implements :class:`box.control.BoxControl`
over a :class:`box.runner.BoxRunner`. Every change is checked first by building the whole new configuration
through boxconfig (every problem at once: ControlError 400), then applied; the configuration the box runs is
replaced only once the change has been made, so a refusal changes nothing.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional

from box.control import ControlError
from box.model_swap import check_accuracy, check_batch, check_contract, file_metadata, parse_checks
from box.runner import BoxRunner, ModelGroup
from boxconfig.changes import config_changes
from boxconfig.config import BoxConfig, StreamConfig, to_data
from boxconfig.loading import check_config, read_config_data
from boxconfig.problems import ConfigError
from boxconfig.redaction import redacted
from boxconfig.zone_sections import zones_of_model
from runtimes.errors import UserError

PATCHABLE = ("zones", "score_threshold", "keep_classes")  # what changes in a running stream's analytics and filters
SWAP_KEYS = ("class_map", "validation", "max_map_drop")  # a swap's own keys, beside the model's


class BoxController:
    """Control of ``runner`` (opened and running on another thread). ``defaults``: the camera flags' defaults
    (boxconfig.defaults.flag_defaults); ``path``: the configuration file, read again by :meth:`reload`."""

    def __init__(self, runner: BoxRunner, defaults: Mapping[str, Any], path: Optional[Path] = None) -> None:
        self.runner, self.defaults, self.path = runner, dict(defaults), path

    # -- reading -------------------------------------------------------------------------------------

    def config_data(self) -> Dict[str, Any]:
        return redacted(to_data(self.runner.config))

    def list_streams(self) -> List[Dict[str, Any]]:
        statuses = self.runner.statuses()
        return [self._entry(s.name, statuses) for s in self.runner.config.streams]

    def _entry(self, name: str, statuses: Optional[Dict[str, Dict[str, Any]]] = None) -> Dict[str, Any]:
        data = redacted({"streams": [to_data(self.runner.config)["streams"][self._index(name)]]})["streams"][0]
        status = (statuses if statuses is not None else self.runner.statuses()).get(name, {})
        data.update(state=status.get("state", "opening"), frames=status.get("frames", 0), fps=status.get("fps", 0.0))
        return data

    def _index(self, name: str) -> int:
        names = [s.name for s in self.runner.config.streams]
        if name not in names:
            raise ControlError(404, f"no stream is named {name!r}; the streams are {', '.join(names) or 'none'}")
        return names.index(name)

    # -- changes -------------------------------------------------------------------------------------

    def add_stream(self, data: Dict[str, Any]) -> Dict[str, Any]:
        if not isinstance(data, dict):
            raise ControlError(400, "give one stream as an object (a streams[] entry of the configuration)")
        name = _safe_name(data.get("name"))
        with self.runner.lock:  # (checked and made under one hold: two requests for one name cannot both pass)
            if any(s.name == name for s in self.runner.config.streams):
                raise ControlError(409, f"stream {name} is running; remove it first or give another name")
            whole = to_data(self.runner.config)
            whole["streams"].append(data)
            new = self._checked(whole)
            try:
                self.runner.add_stream(new.stream(name), new)
            except UserError as exc:
                raise ControlError(400, _one_line(exc)) from None
            self.runner.config = dataclasses.replace(self.runner.config, streams=self.runner.config.streams
                                                     + [new.stream(name)])
        return self._entry(name)

    def remove_stream(self, name: str) -> Dict[str, Any]:
        with self.runner.lock:
            self._index(_safe_name(name))
            try:
                summary = self.runner.remove_stream(name)
            except UserError as exc:
                raise ControlError(503, _one_line(exc)) from None
            self.runner.config = dataclasses.replace(self.runner.config, streams=[
                s for s in self.runner.config.streams if s.name != name])
        return dict(summary, name=name)

    def patch_stream(self, name: str, data: Dict[str, Any]) -> Dict[str, Any]:
        self._index(_safe_name(name))
        if not isinstance(data, dict) or not data:
            raise ControlError(400, f"give an object with any of {', '.join(PATCHABLE)}")
        other = sorted(set(data) - set(PATCHABLE))
        if other:
            raise ControlError(400, f"{other[0]}: a running stream changes only {', '.join(PATCHABLE)}; remove the "
                                    "stream and add it again to change the rest")
        with self.runner.lock:
            whole = to_data(self.runner.config)
            whole["streams"][self._index(name)].update(data)
            new = self._checked(whole)
            stream = new.stream(name)
            group = self.runner.groups[stream.model]
            zones = self._zones(new, group, stream)
            self.runner.configure_stream(group, stream, zones)
            self.runner.config = dataclasses.replace(self.runner.config, streams=[
                stream if s.name == name else s for s in self.runner.config.streams])
        return self._entry(name)

    def swap_model(self, name: str, data: Dict[str, Any]) -> Dict[str, Any]:
        if name not in self.runner.config.models:
            raise ControlError(404, f"no model is named {name!r}; the models are "
                                    f"{', '.join(self.runner.config.models)}")
        if not isinstance(data, dict):
            raise ControlError(400, "give the model as an object (a models entry of the configuration)")
        checks = parse_checks(data, self.runner.config.resolve)
        whole = to_data(self.runner.config)
        whole["models"][name] = {k: v for k, v in data.items() if k not in SWAP_KEYS}
        new = self._checked(whole)
        with self.runner.lock:
            group = self.runner.groups[name]
            figures = self._swap(group, new, checks)
            self.runner.config = dataclasses.replace(self.runner.config, models=dict(self.runner.config.models,
                                                                                     **{name: new.models[name]}))
        return {"model": name, "path": redacted(whole)["models"][name]["path"],
                "describe": group.detector.describe(), **(figures or {})}

    def _swap(self, group: ModelGroup, new: BoxConfig, checks: Any) -> Optional[Dict[str, float]]:
        """Check the candidate's metadata, load it, check it again, swap it in; on any failure it is closed
        and nothing changed."""
        model = new.models[group.name]
        try:
            meta = file_metadata(new.resolve(model.path))
            if meta is not None:
                check_contract(group.name, group.detector.meta, meta, checks.class_map)
            candidate = self.runner.load_candidate(group.name, model)
        except UserError as exc:
            raise ControlError(422, f"model {group.name}: {_one_line(exc)}") from None
        try:
            relabel = check_contract(group.name, group.detector.meta, candidate.meta, checks.class_map)
            check_batch(group.name, candidate, group.schedule.batch)
            figures = None
            if checks.validation is not None:
                reference = self.runner.load_candidate(group.name, group.config)
                try:
                    figures = check_accuracy(group.name, reference, candidate, relabel, checks)
                finally:
                    reference.close()
            old = group.pipeline.swap_detector(candidate, relabel)
        except BaseException:
            candidate.close()
            raise
        group.detector, group.config = candidate, model
        old.close()
        self.runner.log(f"model {group.name}: swapped to {candidate.describe()}")
        return figures

    def reload(self) -> Dict[str, Any]:
        """The file read again and checked; streams removed, added, changed (re-filtered in place when only
        their zones, thresholds or classes changed, else restarted) and models swapped (same checks, no
        class map); sections that need a restart are named, not applied."""
        if self.path is None:
            raise ControlError(409, "this box was started without a configuration file; nothing to reload")
        try:
            new = self.read_config()
        except UserError as exc:
            raise ControlError(400, _one_line(exc)) from None
        old = self.runner.config
        changes = config_changes(old, new)
        unsupported = changes.models_added + changes.models_removed
        if unsupported:
            raise ControlError(409, f"models added or removed ({', '.join(unsupported)}): restart the box to apply")
        # Streams otherwise unchanged whose zones may have: the top-level zones changed, or a zones file (read
        # again). Checked before anything changes.
        kept = [s for s in new.streams if s.name not in changes.streams_added + changes.streams_changed]
        rezoned = [(s, self._zones(new, self.runner.groups[s.model], s)) for s in kept
                   if changes.zones_changed or isinstance(s.zones, str) or isinstance(new.zones, str)]
        for name in changes.models_changed:
            self.swap_model(name, to_data(new)["models"][name])
        for name in changes.streams_removed:
            self.remove_stream(name)
        for name in changes.streams_changed:
            self._apply_stream(old.stream(name), new.stream(name))
        for name in changes.streams_added:
            self.add_stream(_stream_data(new, name))
        with self.runner.lock:
            for stream, zones in rezoned:
                self.runner.configure_stream(self.runner.groups[stream.model], stream, zones)
            self.runner.config = dataclasses.replace(new, sinks=old.sinks, webview=old.webview, outputs=old.outputs,
                                                     csi=old.csi, recording=old.recording)
        return {"changes": changes.summary(), "restart_needed": list(changes.restart_sections)}

    def read_config(self) -> BoxConfig:
        """The configuration file read and checked (box/app.py puts the command line's flags over it, as at
        start, so a reload does not drop them)."""
        assert self.path is not None
        return check_config(read_config_data(self.path), str(self.path), self.defaults, self.path.parent)

    def _apply_stream(self, old: StreamConfig, new: StreamConfig) -> None:
        data = _stream_data_of(new)
        if dataclasses.replace(old, zones=new.zones, score_threshold=new.score_threshold,
                               keep_classes=new.keep_classes) == new:
            self.patch_stream(new.name, {key: data[key] for key in PATCHABLE})
        else:
            self.remove_stream(old.name)
            self.add_stream(data)

    # -- checks --------------------------------------------------------------------------------------

    def _checked(self, data: Dict[str, Any]) -> BoxConfig:
        """``data`` (a whole configuration) checked as the file is: ControlError 400 with every problem."""
        try:
            return check_config(data, "request", self.defaults, self.runner.config.base_dir)
        except ConfigError as exc:
            raise ControlError(400, "; ".join(exc.lines)) from None

    def _zones(self, config: BoxConfig, group: ModelGroup, stream: StreamConfig) -> Any:
        """The stream's zones checked with its model's classes (ControlError 400)."""
        try:
            return zones_of_model(config, group.name, group.detector.class_names, "request").get(stream.name)
        except ConfigError as exc:
            raise ControlError(400, "; ".join(exc.lines)) from None


def _safe_name(name: Any) -> str:
    if not isinstance(name, str) or not name:
        raise ControlError(400, "name: give the stream's name (letters, digits, '_', '.', '-')")
    if "/" in name or ".." in name or "\\" in name:
        raise ControlError(400, f"name {name!r}: no '/' or '..' in a stream's name; it names files and URLs")
    return name


def _one_line(exc: Exception) -> str:
    return " ".join(str(exc).split("\n"))


def _stream_data(config: BoxConfig, name: str) -> Dict[str, Any]:
    return _stream_data_of(config.stream(name))


def _stream_data_of(stream: StreamConfig) -> Dict[str, Any]:
    """A stream's plain data, as a ``streams[]`` entry."""
    return dataclasses.asdict(stream)
