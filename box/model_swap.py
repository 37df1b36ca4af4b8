"""A running model's replacement, checked before it serves (``POST /api/models/NAME``): the same class names
or an explicit ``class_map`` {new name: old name} and the same input contract (read from the file before it
is compiled, and again once loaded), the batch its schedule uses and, with ``validation``, a mAP within
``max_map_drop`` of the running model's on that annotated folder. Any failure is
:class:`~box.control.ControlError` 422 with one line; the caller then closes the candidate and the old model
keeps running.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Dict, Optional, Sequence

import numpy as np

from box.control import ControlError
from runtimes.detections import Detections
from runtimes.errors import UserError

Relabel = Callable[[Detections], Detections]


@dataclass(frozen=True)
class SwapChecks:
    """What a swap asks beyond the model: ``class_map`` {new: old}, ``validation`` (a VOC root with a test
    split) and ``max_map_drop`` (mAP points, 0..1 scale, the candidate may lose; needs ``validation``)."""

    class_map: Optional[Dict[str, str]] = None
    validation: Optional[Path] = None
    max_map_drop: Optional[float] = None


def input_contract(meta: Any) -> Dict[str, Any]:
    """What the streams' frames are prepared for (runtimes/metadata.py ModelMetadata): the input size
    (decoding scales to it), layout, channel order and normalisation."""
    return {"size": [meta.input_width, meta.input_height], "layout": meta.inputs.layout,
            "channel_order": meta.inputs.channel_order, "mean": [round(float(v), 6) for v in meta.mean],
            "std": [round(float(v), 6) for v in meta.std]}


def file_metadata(path: str) -> Optional[Any]:
    """The metadata of an ONNX file or OpenVINO IR read without compiling it, so a model that cannot take the
    place is refused before the cost of loading it (None for other kinds: checked once loaded)."""
    from runtimes.metadata_io import ir_metadata, onnx_file_metadata

    suffix = Path(path).suffix.lower()
    if suffix == ".onnx":
        return onnx_file_metadata(path)
    if suffix == ".xml" and Path(path).is_file():
        import openvino as ov

        return ir_metadata(ov.Core().read_model(path), path)
    return None


def check_contract(name: str, old: Any, new: Any, class_map: Optional[Dict[str, str]]) -> Optional[Relabel]:
    """ControlError 422 unless a model of metadata ``new`` can take the place of model ``name`` (metadata
    ``old``): the same input contract, the same classes or a ``class_map``; the relabelling of its detections
    to the old class names (None: the same names)."""
    was, now = input_contract(old), input_contract(new)
    differ = [f"{key} {now[key]} (running: {was[key]})" for key in was if was[key] != now[key]]
    if differ:
        raise ControlError(422, f"model {name}: the new model's input differs: {'; '.join(differ)}; export it for "
                                "the same input or add it as a model of its own")
    return relabelling(name, old.class_names, new.class_names, class_map)


def check_batch(name: str, new: Any, batch: int) -> None:
    """ControlError 422 when the loaded ``new`` detector takes fewer frames a call than the schedule's ``batch``."""
    if new.max_batch < batch:
        raise ControlError(422, f"model {name}: the new model takes {new.max_batch} frame(s) per call, the schedule "
                                f"{batch}; build it with a batch of at least {batch}")


def relabelling(name: str, old: Sequence[str], new: Sequence[str], class_map: Optional[Dict[str, str]]
                ) -> Optional[Relabel]:
    """The labels of ``new`` classes as ``old`` ones (index 0 the background in both); ControlError 422 for
    other names without a map, or a map that leaves a class out or names one neither model has."""
    if list(old) == list(new) and not class_map:
        return None
    if not class_map:
        raise ControlError(422, f"model {name}: the new model's classes ({', '.join(new[1:8])}) are not the running "
                                f"model's ({', '.join(old[1:8])}); give class_map {{new: old}} for each class")
    unknown = sorted(set(class_map) - set(new[1:]))
    wrong = sorted(v for v in set(class_map.values()) if v not in old[1:])
    missing = [c for c in new[1:] if class_map.get(c, c) not in old[1:]]
    problem = (f"class_map names {', '.join(unknown)}, not classes of the new model" if unknown else
               f"class_map maps to {', '.join(wrong)}, not classes of the running model" if wrong else
               f"class_map gives no running model's class for {', '.join(missing)}" if missing else None)
    if problem is not None:
        raise ControlError(422, f"model {name}: {problem}; map every class of the new model to one of "
                                f"{', '.join(old[1:8])}")
    table = np.array([0] + [list(old).index(class_map.get(c, c)) for c in new[1:]], dtype=np.int64)
    old_names = list(old)
    new_names = list(new)

    def relabel(detections: Detections) -> Detections:
        if list(detections.class_names) != new_names:  # (the old model's, drained after the swap)
            return detections
        return Detections(detections.boxes, detections.scores, table[detections.labels], old_names)

    return relabel


class _Relabelled:
    """A detector whose detections carry the running model's class names (for the mAP comparison)."""

    def __init__(self, detector: Any, relabel: Optional[Relabel], class_names: Sequence[str]) -> None:
        self.detector, self.relabel, self.class_names = detector, relabel, list(class_names)

    def __call__(self, image: np.ndarray) -> Detections:
        found = self.detector(image)
        return self.relabel(found) if self.relabel is not None else found


def check_accuracy(name: str, reference: Any, new: Any, relabel: Optional[Relabel], checks: SwapChecks
                   ) -> Optional[Dict[str, float]]:
    """With ``checks.validation``: the VOC mAP on its test split of ``reference`` (the running model loaded
    again: the running detector's requests are the pipeline's) and of ``new``, at the camera's thresholds;
    422 when the new one's is more than ``max_map_drop`` below. None without a validation set."""
    if checks.validation is None:
        return None
    from calibration.evaluation import evaluate_detector
    from calibration.voc import VOCDataset

    try:
        dataset = VOCDataset(checks.validation, split="test", class_names=reference.class_names[1:])
        before = evaluate_detector(reference, dataset, show_progress=False).map
        relabelled: Any = _Relabelled(new, relabel, reference.class_names)  # (a Detector to the evaluation)
        after = evaluate_detector(relabelled, dataset, show_progress=False).map
    except UserError as exc:
        raise ControlError(422, f"model {name}: validation {checks.validation}: {exc}") from None
    figures = {"map_before": round(float(before), 4), "map_after": round(float(after), 4)}
    drop = checks.max_map_drop if checks.max_map_drop is not None else 0.0
    if after < before - drop:
        raise ControlError(422, f"model {name}: the new model's mAP {after:.4f} is {before - after:.4f} below the "
                                f"running model's {before:.4f} on {checks.validation}, more than max_map_drop "
                                f"{drop:g}; keep the running model or allow a larger drop")
    return figures


def parse_checks(data: Dict[str, Any], base: Callable[[str], str]) -> SwapChecks:
    """The swap's own keys of a request body (ControlError 400 for a wrong type); ``base`` resolves a path."""
    class_map = data.get("class_map")
    if class_map is not None and not (isinstance(class_map, dict) and all(
            isinstance(k, str) and isinstance(v, str) for k, v in class_map.items())):
        raise ControlError(400, "class_map: give an object of new class name -> running model's class name")
    validation = data.get("validation")
    if validation is not None and not isinstance(validation, str):
        raise ControlError(400, "validation: give the path of an annotated folder (VOC layout, a test split)")
    drop = data.get("max_map_drop")
    if drop is not None and (isinstance(drop, bool) or not isinstance(drop, (int, float)) or not 0 <= drop <= 1):
        raise ControlError(400, f"max_map_drop: give a number from 0 to 1 (mAP's scale), got {drop!r}")
    if drop is not None and validation is None:
        raise ControlError(400, "max_map_drop needs validation: the annotated folder both models are scored on")
    if validation is not None and not Path(base(validation)).is_dir():
        raise ControlError(400, f"validation: {validation} is not a folder; give an annotated folder (VOC layout)")
    return SwapChecks(class_map, Path(base(validation)) if validation is not None else None,
                      float(drop) if drop is not None else None)
