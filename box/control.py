"""What the control API can ask of a running box, and how a refusal is said.

The HTTP layer (webview/api.py) parses and bounds requests and calls a :class:`BoxControl`; the running box
(box/runner.py) implements it. Every body a method takes is plain JSON data in the configuration file's own
shapes (docs/configuration.md): a stream is one ``streams[]`` entry, a model one ``models`` entry. Every method
answers plain JSON data, or raises :class:`ControlError` with the HTTP status and one line saying what was
wrong and how to fix it; when it raises, nothing changed.
"""

from __future__ import annotations

from typing import Any, Dict, List, Protocol


class ControlError(Exception):
    """A request the box refused: ``status`` (400 bad data, 404 unknown name, 409 conflict, 422 a model that
    failed its checks, 503 not possible now) and one line."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = int(status)
        self.message = message


class BoxControl(Protocol):
    def config_data(self) -> Dict[str, Any]:
        """The effective configuration as plain data, secrets redacted (boxconfig.redaction)."""
        ...

    def list_streams(self) -> List[Dict[str, Any]]:
        """One entry a stream: its configuration (redacted) plus ``state``, ``frames``, ``fps``."""
        ...

    def add_stream(self, data: Dict[str, Any]) -> Dict[str, Any]:
        """Start the stream ``data`` (one ``streams[]`` entry) beside the running ones; its entry."""
        ...

    def remove_stream(self, name: str) -> Dict[str, Any]:
        """Stop stream ``name`` with its outputs finalised (video closed, JSON lines written); its summary."""
        ...

    def patch_stream(self, name: str, data: Dict[str, Any]) -> Dict[str, Any]:
        """Change ``zones``, ``score_threshold`` or ``keep_classes`` of a running stream; its new entry."""
        ...

    def swap_model(self, name: str, data: Dict[str, Any]) -> Dict[str, Any]:
        """Replace model ``name`` with ``data`` (a ``models`` entry, plus optional ``class_map`` {new: old} and
        ``max_map_drop`` with ``validation`` (an annotated folder)): loaded and checked first, swapped between
        batches; on any failure the old model keeps running and ControlError says why."""
        ...

    def reload(self) -> Dict[str, Any]:
        """Read the configuration file again and apply the difference (as SIGHUP does); what changed."""
        ...
