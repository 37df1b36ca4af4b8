"""What a reload applies (SIGHUP, or a configuration posted to the API): the difference of two configurations.

Streams are added, removed or restarted one by one; a model whose settings changed is loaded again with its
streams; a change elsewhere (sinks, web view, outputs, CSI, recording) needs the app restarted.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import List, Tuple

from boxconfig.config import BoxConfig

RESTART_SECTIONS = ("sinks", "webview", "outputs", "csi", "recording")


@dataclass(frozen=True)
class ConfigChanges:
    streams_added: Tuple[str, ...]
    streams_removed: Tuple[str, ...]
    streams_changed: Tuple[str, ...]  # source, model, zones, thresholds, tracking, capture options
    models_added: Tuple[str, ...]
    models_removed: Tuple[str, ...]
    models_changed: Tuple[str, ...]  # loaded again; their streams restart with them
    zones_changed: bool  # the top-level zones (any stream's)
    restart_sections: Tuple[str, ...]  # sections a reload cannot apply

    @property
    def empty(self) -> bool:
        return not any((self.streams_added, self.streams_removed, self.streams_changed, self.models_added,
                        self.models_removed, self.models_changed, self.zones_changed, self.restart_sections))

    def summary(self) -> str:
        """One line for the log: ``streams +yard -door ~gate; models ~shapes; restart needed: webview``."""
        parts = []
        for what, added, removed, changed in (("streams", self.streams_added, self.streams_removed,
                                               self.streams_changed),
                                              ("models", self.models_added, self.models_removed, self.models_changed)):
            names = [f"+{n}" for n in added] + [f"-{n}" for n in removed] + [f"~{n}" for n in changed]
            if names:
                parts.append(f"{what} {' '.join(names)}")
        if self.zones_changed:
            parts.append("top-level zones changed")
        if self.restart_sections:
            parts.append(f"restart needed: {', '.join(self.restart_sections)}")
        return "; ".join(parts) or "no change"


def config_changes(old: BoxConfig, new: BoxConfig) -> ConfigChanges:
    old_streams, new_streams = {s.name: s for s in old.streams}, {s.name: s for s in new.streams}
    models_changed = _changed(old.models, new.models)
    streams_changed = [name for name in _changed(old_streams, new_streams)]
    # A model loaded again takes its streams with it; say so, so the caller restarts them.
    streams_changed += [name for name, s in new_streams.items()
                        if s.model in models_changed and name in old_streams and name not in streams_changed]
    return ConfigChanges(
        _only_in(new_streams, old_streams), _only_in(old_streams, new_streams), tuple(streams_changed),
        _only_in(new.models, old.models), _only_in(old.models, new.models), tuple(models_changed),
        old.zones != new.zones,
        tuple(section for section in RESTART_SECTIONS if getattr(old, section) != getattr(new, section)))


def _only_in(these: dict, others: dict) -> Tuple[str, ...]:
    return tuple(name for name in these if name not in others)


def _changed(old: dict, new: dict) -> List[str]:
    return [name for name in new if name in old and old[name] != new[name]]
