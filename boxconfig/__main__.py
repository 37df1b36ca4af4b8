"""``python -m boxconfig check box.yaml``: check a configuration file without starting anything (exit 0 and a
one-line summary, or exit 2 with every problem on a line of its own);
``python -m boxconfig show box.yaml``: the configuration with every default, secrets redacted, as JSON;
``python -m boxconfig schema``: the JSON Schema, for an editor that checks the file as it is typed."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any, Dict, Optional, Sequence


def camera_defaults() -> Dict[str, Any]:
    """The camera flags' defaults, from the camera's own parser (the one home of each)."""
    from apps.camera import build_parser
    from boxconfig.defaults import flag_defaults

    return flag_defaults(build_parser())


def main(argv: Optional[Sequence[str]] = None) -> int:
    from boxconfig.config import to_data
    from boxconfig.loading import load_config
    from boxconfig.redaction import redacted
    from boxconfig.schema import box_schema

    parser = argparse.ArgumentParser(prog="python -m boxconfig", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("command", choices=("check", "show", "schema"))
    parser.add_argument("file", nargs="?", help="the configuration file (YAML or JSON)")
    args = parser.parse_args(argv)
    defaults = camera_defaults()
    if args.command == "schema":
        print(json.dumps(box_schema(defaults), indent=2))
        return 0
    if not args.file:
        parser.error(f"{args.command} needs the configuration file")
    config = load_config(args.file, defaults)
    if args.command == "show":
        print(json.dumps(redacted(to_data(config)), indent=2))
    else:
        print(f"{args.file}: OK: {len(config.models)} model(s), {len(config.streams)} stream(s)")
    return 0


if __name__ == "__main__":
    from runtimes.cli import run_cli

    sys.exit(run_cli(main))
