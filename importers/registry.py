"""Finding the importer of a state dict: every module of this package with an ``IMPORTER`` is asked in
turn; a checkpoint nobody recognises, or whose network its codebase's importer does not know, is one line
saying what was recognised and what is missing."""

from __future__ import annotations

import importlib
import pkgutil
from collections import Counter
from typing import List, Tuple

import importers
from importers.base import ImportedModel, Importer, ImportOptions, Recognised, StateDict
from runtimes.errors import UserError


def all_importers() -> List[Importer]:
    """The importers of this package, by module name."""
    found = []
    for info in sorted(pkgutil.iter_modules(importers.__path__), key=lambda m: m.name):
        module = importlib.import_module(f"importers.{info.name}")
        importer = getattr(module, "IMPORTER", None)
        if isinstance(importer, Importer):
            found.append(importer)
    return found


def key_prefixes(state: StateDict, limit: int = 6) -> str:
    """The state dict's top-level key prefixes, most frequent first: ``base_net.* (81), extras.* (16)``."""
    counts = Counter(key.split(".")[0] for key in state)
    return ", ".join(f"{prefix}.* ({n})" for prefix, n in counts.most_common(limit))


def recognise(state: StateDict) -> Tuple[Importer, Recognised]:
    """The importer that recognises ``state`` and what it recognised; UserError when none does, or when the
    codebase is known but its network is not. An importer that knows the network wins over one that knows
    only the keys (UltraFace's are pytorch-ssd's module names on networks pytorch-ssd does not build)."""
    candidates = all_importers()
    partial = None
    for importer in candidates:
        recognised = importer.recognise(state)
        if recognised is None:
            continue
        if recognised.network is None or recognised.missing:
            partial = partial or recognised
            continue
        return importer, recognised
    if partial is not None:
        raise UserError(f"recognised a {partial.codebase} checkpoint, but {partial.missing}")
    codebases = ", ".join(i.codebase for i in candidates)
    raise UserError(f"no codebase this toolkit imports ({codebases}) has these keys ({key_prefixes(state)}); "
                    "docs/checkpoints.md lists what each is recognised by")


def import_state_dict(state: StateDict, options: ImportOptions) -> ImportedModel:
    """The network of ``state``, recognised and built by its codebase's importer."""
    importer, recognised = recognise(state)
    return importer.build(state, recognised, options)
