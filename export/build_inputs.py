"""What a build starts from: the ONNX model (exported now, the demo model's, or given), its calibration
images and its validation split, gathered once per build in a :class:`BuildContext` the targets share."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Dict, Optional

from export.build_request import BuildRequest, SourceSpec
from runtimes.errors import UserError
from runtimes.metadata import ModelMetadata

if TYPE_CHECKING:
    from calibration.stream import CalibrationSet
    from calibration.voc import VOCDataset


@dataclass
class ModelSource:
    """The simplified ONNX a build starts from; ``stem`` names its outputs."""

    onnx: Path
    stem: str
    description: str
    is_demo: bool


def resolve_source(spec: SourceSpec, output_dir: Path, dynamic_batch: bool,
                   log: Callable[[str], None] = print) -> ModelSource:
    """The ONNX model of ``spec``: the given ``onnx``, the ``checkpoint`` exported into ``output_dir`` now,
    or the embedded demo model (with a dynamic batch axis when ``dynamic_batch``)."""
    from export.export_onnx import export_checkpoint

    if spec.onnx is not None:
        if spec.checkpoint is not None:
            raise UserError("pass either --onnx or --checkpoint, not both")
        return ModelSource(Path(spec.onnx), Path(spec.onnx).stem, f"ONNX {spec.onnx}", False)
    if spec.checkpoint is None:
        from export.demo_model import DEMO_CHECKPOINT, demo_onnx

        log(f"model: the embedded demo model {DEMO_CHECKPOINT.relative_to(DEMO_CHECKPOINT.parents[1])} "
            "(pass --checkpoint or --onnx for your own)")
        return ModelSource(demo_onnx(dynamic_batch=dynamic_batch), "ssdlite320_shapes", "demo model", True)
    out = output_dir / f"{Path(spec.checkpoint).stem}.onnx"
    from importers.base import ImportOptions

    options = ImportOptions(spec.arch, spec.input_size, spec.preset, spec.config)
    export_checkpoint(spec.checkpoint, spec.arch, out, spec.num_classes, spec.classes,
                      allow_pickle=spec.allow_pickle, dynamic_batch=dynamic_batch, options=options)
    return ModelSource(out, out.stem, f"checkpoint {spec.checkpoint} ({spec.arch or 'recognised'})", False)


@dataclass
class BuildContext:
    """One build under way: the request, its source model and metadata, the output folder, where progress
    lines go, and the calibration set (drawn once, on first use)."""

    request: BuildRequest
    source: ModelSource
    meta: ModelMetadata
    output_dir: Path
    log: Callable[[str], None] = print
    _drawn: Dict[str, Any] = field(default_factory=dict)

    def calibration(self) -> "CalibrationSet":
        """The INT8 calibration images (the notes on skipped images logged the first time)."""
        if "calibration" not in self._drawn:
            self._drawn["calibration"] = self._draw_calibration()
        return self._drawn["calibration"]

    def _draw_calibration(self) -> "CalibrationSet":
        from calibration.stream import calibration_images

        spec = self.request.calibration
        images = calibration_images(spec.data, spec.count, spec.seed, spec.year, spec.split,
                                    demo=self.source.is_demo, verbose=self.request.progress)
        self.log(f"calibration: {images.describe()}")
        for line in images.skipped.lines() + images.notes.lines():
            self.log(f"  {line}")
        if len(images.paths) < spec.count:
            self.log(f"warning: only {len(images.paths)} usable calibration images (asked for {spec.count}); "
                     f"calibrating on {len(images.paths)}")
        return images

    def validation(self) -> Optional["VOCDataset"]:
        """The split reduced precision is judged on, or None where there is none or none is wanted."""
        from calibration.synthetic import ensure_demo_dataset
        from calibration.voc import VOCDataset

        spec, int8 = self.request.validation, self.request.int8
        if not (spec.judge or int8.max_map_drop is not None or int8.report):
            return None
        root = spec.data or (ensure_demo_dataset() if self.source.is_demo else None)
        if root is None:
            return None
        return VOCDataset(Path(root), spec.year, spec.split, list(self.meta.class_names[1:]))
