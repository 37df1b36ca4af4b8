"""The command-line flags that say what a checkpoint cannot tell (:class:`importers.base.ImportOptions`),
one group shared by export_onnx.py, build_engine.py and apps/benchmark.py."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any, Optional

from importers.base import ImportOptions


def add_import_arguments(group: Any) -> None:
    """--input-size, --preset and --config on ``group`` (a parser or an argument group; --arch is each
    tool's own, its help differs)."""
    group.add_argument("--input-size", type=int, help="the square input size a codebase lets vary "
                                                      "(jetson-inference's --resolution for pytorch-ssd's mb1-ssd; "
                                                      "default 300)")
    group.add_argument("--preset", help="a codebase's named configuration where the checkpoint cannot tell it "
                                        "(ssd.pytorch: voc | coco; docs/checkpoints.md)")
    group.add_argument("--config", type=Path, help="the codebase's own training config file, read as data "
                                                   "(MMDetection's Python config, never executed; lufficc/SSD's "
                                                   "YAML)")


def import_options(args: argparse.Namespace, arch: Optional[str] = None) -> ImportOptions:
    """The flags of :func:`add_import_arguments` (and ``arch``) as ImportOptions."""
    return ImportOptions(arch=arch, input_size=args.input_size, preset=args.preset, config=args.config)
