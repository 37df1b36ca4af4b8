"""torchvision's SSDs (and the toolkit's SSD512 built from its blocks), recognised without ``--arch``:
the state dict's keys are exactly those of one of export/architectures.py's networks.

SSD300 and SSD512 on VGG16 share every key and shape (the same weights at two input sizes): keys cannot
tell them apart, so such a checkpoint needs ``--arch ssd300_vgg16`` or ``--arch ssd512_vgg16``.
"""

from __future__ import annotations

from typing import Optional

from export.architectures import ARCHITECTURES, RawHeadOutputs, build_model, describe
from export.checkpoint import class_count, model_from_state
from importers.base import ImportedModel, Importer, ImportOptions, Recognised, StateDict, placeholder_names

CODEBASE = "torchvision"


def recognise(state: StateDict) -> Optional[Recognised]:
    keys = set(state)
    if {key.split(".")[0] for key in keys} != {"backbone", "head"}:  # every network's; building them is slow
        return None
    fits = [arch for arch in ARCHITECTURES if set(build_model(arch, 2).state_dict()) == keys]
    if not fits:
        return None
    if len(fits) > 1:
        choices = " or ".join(f"--arch {arch}" for arch in fits)
        return Recognised(CODEBASE, None, f"its keys and shapes fit {' and '.join(fits)} alike (the same weights "
                                          f"at another input size): pass {choices}")
    return Recognised(CODEBASE, fits[0])


def build_model_of(state: StateDict, recognised: Recognised, options: ImportOptions) -> ImportedModel:
    arch = str(recognised.network)
    num_classes = class_count(state, arch) or 2
    model = model_from_state(state, arch, num_classes, f"a {CODEBASE} {arch} checkpoint")
    return ImportedModel(RawHeadOutputs(model), describe(model, arch, placeholder_names(num_classes)[1:]))


IMPORTER = Importer(CODEBASE, recognise, build_model_of)
