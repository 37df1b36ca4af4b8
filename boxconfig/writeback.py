"""Writing the configuration back (``--config-writeback``): what was changed through the API is in the file, so
a restart comes back in the same state.

The file is replaced atomically (a temporary beside it, renamed over it: a power cut leaves the old file or the
new one, never half of either) and keeps its permissions: it holds the web view's token and the MQTT password,
and runtimes/atomic.py's outputs take the umask's mode (0644 for most), which would make them readable by all.
Only settings that differ from their defaults are written; comments in a YAML file are not kept.
"""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path
from typing import Any, Mapping, Union

from boxconfig.config import BoxConfig, to_data
from boxconfig.defaults import without_defaults
from boxconfig.loading import YAML_SUFFIXES
from boxconfig.schema import box_schema
from runtimes.atomic import check_output_path, temporary_beside

NEW_FILE_MODE = 0o600  # a new configuration holds secrets: the service's user only


def write_config(path: Union[str, Path], config: BoxConfig, defaults: Mapping[str, Any]) -> None:
    """``config`` as the file at ``path`` (YAML or JSON by the suffix), replacing it atomically."""
    data = without_defaults(to_data(config), box_schema(dict(defaults)))
    text = config_text(data, yaml=Path(path).suffix.lower() in YAML_SUFFIXES)
    replace_file(Path(path), text.encode("utf-8"))


def config_text(data: Any, yaml: bool) -> str:
    if not yaml:
        return json.dumps(data, indent=2) + "\n"
    import yaml as pyyaml

    return "# written by ssd-edge (--config-writeback); see docs/configuration.md\n" + pyyaml.safe_dump(
        data, sort_keys=False, default_flow_style=None, allow_unicode=True, width=120)


def replace_file(path: Path, data: bytes) -> None:
    """``data`` in place of the file at ``path`` (a link's target), with the file's mode, on disk before the
    rename (fsync), the rename itself on disk after it (the folder's fsync)."""
    target = check_output_path(path, "--config")
    try:
        mode = stat.S_IMODE(target.stat().st_mode)
    except FileNotFoundError:
        mode = NEW_FILE_MODE
    temp = temporary_beside(target)  # created 0600, so the secrets are never readable by others meanwhile
    try:
        with open(temp, "wb") as file:
            file.write(data)
            file.flush()
            os.fsync(file.fileno())
        os.chmod(temp, mode)
        os.replace(temp, target)
    except BaseException:
        temp.unlink(missing_ok=True)
        raise
    folder = os.open(str(target.parent), os.O_RDONLY)
    try:
        os.fsync(folder)
    finally:
        os.close(folder)
