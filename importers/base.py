"""What an importer is and what it hands over; the weight loading every importer shares."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Dict, List, Optional

from runtimes.errors import UserError
from runtimes.metadata import ModelMetadata

if TYPE_CHECKING:  # torch is imported by the importers themselves: the command line parses without it
    import torch
    from torch import nn

StateDict = Dict[str, "torch.Tensor"]


@dataclass
class ImportOptions:
    """What the command line adds where a checkpoint cannot tell (each importer says which it needs)."""

    arch: Optional[str] = None  # --arch: a network name in the codebase's own vocabulary
    input_size: Optional[int] = None  # --input-size: the square input a codebase lets vary
    preset: Optional[str] = None  # --preset: a codebase's named configuration
    config: Optional[Path] = None  # --config: the codebase's own training configuration file


@dataclass
class Recognised:
    """What an importer made of a state dict: its codebase, the network (None when the keys belong to the
    codebase but to no network it knows), and what is missing to import it ("" when nothing is)."""

    codebase: str
    network: Optional[str]
    missing: str = ""


@dataclass
class ImportedModel:
    """A network ready for export and everything needed to run it.

    ``module`` takes ``images`` (B, 3, H, W) float32, resized and normalised as ``meta`` says, and returns
    ``bbox_regression`` (B, N, 4) offsets against the anchors of ``meta.anchors`` (in their order) and
    ``cls_logits`` (B, N, C) with the background at index 0. ``meta.class_names`` are placeholders
    (``class1`` ...) until the labels are known.
    """

    module: nn.Module
    meta: ModelMetadata


@dataclass
class Importer:
    """One codebase: ``recognise`` returns None for a state dict that is not its own; ``build`` imports a
    recognised one (UserError for options it needs and does not have)."""

    codebase: str
    recognise: Callable[[StateDict], Optional[Recognised]]
    build: Callable[[StateDict, Recognised, ImportOptions], ImportedModel]


def placeholder_names(num_classes: int) -> List[str]:
    """Class names until the labels file is read: the background, then ``class1`` ... (C - 1 names)."""
    return ["__background__"] + [f"class{i}" for i in range(1, num_classes)]


def head_classes(state: StateDict, cls_key: str, reg_key: str) -> int:
    """Classes (background included) of a head whose classification conv ``cls_key`` outputs anchors x
    classes channels and whose regression conv ``reg_key`` anchors x 4."""
    anchors = int(state[reg_key].shape[0]) // 4
    return int(state[cls_key].shape[0]) // max(anchors, 1)


def load_exact(module: nn.Module, state: StateDict, what: str) -> nn.Module:
    """``module`` (in eval mode) with the weights of ``state``, whose keys and shapes must be exactly the
    module's; UserError naming ``what`` and the first differences otherwise."""
    expected = module.state_dict()
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    wrong = [k for k in expected if k in state and tuple(state[k].shape) != tuple(expected[k].shape)]
    if missing or unexpected or wrong:
        parts = [f"{len(missing)} missing (e.g. {missing[0]})" if missing else "",
                 f"{len(unexpected)} unexpected (e.g. {unexpected[0]})" if unexpected else "",
                 f"{len(wrong)} of another shape (e.g. {wrong[0]} {tuple(state[wrong[0]].shape)}, expected "
                 f"{tuple(expected[wrong[0]].shape)})" if wrong else ""]
        raise UserError(f"recognised {what}, but its weights do not fit that network: "
                        f"{', '.join(p for p in parts if p)} tensors; is the checkpoint complete?")
    from export.checkpoint import check_values

    check_values(state, expected, what)
    module.load_state_dict({k: v.to(expected[k].dtype) for k, v in state.items()})
    return module.eval()
