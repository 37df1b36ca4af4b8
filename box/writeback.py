"""``--config-writeback``: each change made through the control API is written to the configuration file, so a
restart comes back in the same state.

:class:`WritebackControl` wraps the running box's :class:`~box.control.BoxControl`. After a change the box
accepted, the same change is made to the file's own data (as it was read: flags given on the command line
stay flags and are not written into the file), checked like the file (boxconfig.loading.check_config), and
written atomically (boxconfig.writeback.write_config). Changes are made one at a time, so the file always
holds the last one. A reload reads the file again: it is then the truth.
"""

from __future__ import annotations

import copy
import threading
from pathlib import Path
from typing import Any, Callable, Dict, List, Mapping, Optional

from box.control import BoxControl
from box.control_impl import SWAP_KEYS  # how a swap is checked, not part of the model


class WritebackControl:
    """A BoxControl that writes ``path`` after each change ``control`` made; ``file_data`` is the file's data
    as read (boxconfig.loading.read_config_data), ``defaults`` the camera flags' (boxconfig.defaults)."""

    def __init__(self, control: BoxControl, path: Path, file_data: Dict[str, Any], defaults: Mapping[str, Any],
                 log: Callable[[str], None] = print) -> None:
        self._control, self._path, self._defaults, self._log = control, Path(path), defaults, log
        self._data = copy.deepcopy(file_data)
        self._lock = threading.Lock()  # one change at a time: the file holds the last one

    def config_data(self) -> Dict[str, Any]:
        return self._control.config_data()

    def list_streams(self) -> List[Dict[str, Any]]:
        return self._control.list_streams()

    def add_stream(self, data: Dict[str, Any]) -> Dict[str, Any]:
        return self._change(lambda: self._control.add_stream(data),
                            lambda file: file["streams"].append(copy.deepcopy(data)),
                            f"stream {data.get('name')} added")

    def remove_stream(self, name: str) -> Dict[str, Any]:
        return self._change(lambda: self._control.remove_stream(name),
                            lambda file: file.update(streams=[s for s in file["streams"] if s.get("name") != name]),
                            f"stream {name} removed")

    def patch_stream(self, name: str, data: Dict[str, Any]) -> Dict[str, Any]:
        return self._change(lambda: self._control.patch_stream(name, data),
                            lambda file: _stream_entry(file, name).update(copy.deepcopy(data)),
                            f"stream {name} changed")

    def swap_model(self, name: str, data: Dict[str, Any]) -> Dict[str, Any]:
        model = {key: copy.deepcopy(value) for key, value in data.items() if key not in SWAP_KEYS}
        return self._change(lambda: self._control.swap_model(name, data),
                            lambda file: file["models"].__setitem__(name, model), f"model {name} swapped")

    def reload(self) -> Dict[str, Any]:
        from boxconfig.loading import read_config_data

        with self._lock:
            answer = self._control.reload()
            self._data = read_config_data(self._path)  # (the box checked it before applying it)
            return answer

    def _change(self, call: Callable[[], Dict[str, Any]], edit: Callable[[Dict[str, Any]], None], what: str
                ) -> Dict[str, Any]:
        """``call`` the box (a ControlError goes to the caller, the file untouched), then write the file."""
        with self._lock:
            answer = call()
            self._write(edit, what)
            return answer

    def _write(self, edit: Callable[[Dict[str, Any]], None], what: str) -> None:
        """The file with ``edit`` made to its data, written; a failure is logged, the box keeps the change."""
        from boxconfig.loading import check_config
        from boxconfig.writeback import write_config
        from runtimes.errors import UserError

        data = copy.deepcopy(self._data)
        try:
            edit(data)
            config = check_config(data, str(self._path), self._defaults, self._path.parent)
            write_config(self._path, config, self._defaults)
        except (UserError, OSError, LookupError) as exc:
            self._log(f"config writeback: {what}, but {self._path} was not written: {_one_line(exc)}")
            return
        self._data = data
        self._log(f"config writeback: {what}; {self._path} written")


def _stream_entry(data: Dict[str, Any], name: str) -> Dict[str, Any]:
    found: Optional[Dict[str, Any]] = next((s for s in data["streams"] if s.get("name") == name), None)
    if found is None:
        raise LookupError(f"stream {name} is not in the file (it was given by a flag)")
    return found


def _one_line(exc: BaseException) -> str:
    return " / ".join(str(exc).splitlines()) or type(exc).__name__
