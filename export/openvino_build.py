"""ONNX -> OpenVINO IR in FP32, FP16 (compressed weights) or INT8 (NNCF post-training quantization).

INT8 is calibrated on the shared calibration stream. With ``max_map_drop`` it is accuracy-aware: FP32 and
INT8 are evaluated on a validation split and, while the mAP drop exceeds the budget, the layers whose
quantization hurts most are kept in floating point (NNCF's ``quantize_with_accuracy_control``); the
layers kept and the final drop are reported and recorded in the IR.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional

from calibration.stream import CalibrationSet, CalibrationStream
from calibration.voc import VOCDataset
from export.openvino_nms import SCOPE, append_multiclass_nms, decoded_openvino_model
from runtimes.atomic import atomic_folder_outputs, check_output_dir
from runtimes.errors import UserError
from runtimes.hashing import sha256_file
from runtimes.metadata import METADATA_KEY, PRECISIONS, InputSpec, ModelMetadata
from runtimes.metadata_io import WEIGHTS_KEY
from runtimes.openvino_runner import OpenVINODetector, fold_normalisation
from runtimes.preprocess import Preprocessor

# NNCF settings, recorded in the IR. MIXED: symmetric weights, asymmetric activations (the CPU plugin's
# fast path); fast bias correction is NNCF's default and cheap.
NNCF_SETTINGS = {"preset": "mixed", "fast_bias_correction": True, "model_type": None}
# Bumped whenever the same inputs would build a different IR, so that older builds are not reused.
# 2: the normalisation is folded into the graph before quantization. 3: metadata schema 2 (typed input
# contract) and the .bin's size and hash recorded in the .xml.
RECIPE = 3


@dataclass
class BuildReport:
    path: Path
    precision: str
    seconds: float
    record: Dict[str, Any] = field(default_factory=dict)
    lines: List[str] = field(default_factory=list)


def save_ir(model: Any, xml: Path, compress_to_fp16: bool) -> None:
    """Write ``xml`` + ``bin`` atomically, the ``.xml`` recording the size and sha256 of its ``.bin``
    (checked on load: runtimes/metadata_io.check_ir_weights): both are written to a temporary folder beside
    them, then the ``.bin`` and last the ``.xml`` are renamed into place."""
    import openvino as ov

    xml = Path(xml)
    bin_path = xml.with_suffix(".bin")
    with atomic_folder_outputs(bin_path, xml) as folder:
        # Saved twice: the weights' hash is known only once they are written, and it goes into the .xml.
        ov.save_model(model, str(folder / xml.name), compress_to_fp16=compress_to_fp16)
        weights = {"size": (folder / bin_path.name).stat().st_size, "sha256": sha256_file(folder / bin_path.name)}
        model.set_rt_info(json.dumps(weights, sort_keys=True), [WEIGHTS_KEY])
        ov.save_model(model, str(folder / xml.name), compress_to_fp16=compress_to_fp16)
        if sha256_file(folder / bin_path.name) != weights["sha256"]:
            raise RuntimeError("internal error: OpenVINO wrote different weights for the same model twice")


def _nncf_dataset(images: CalibrationSet, meta: ModelMetadata):
    """The calibration stream's frames as the deployed graph takes them (``meta.input``: resized pixels,
    the graph normalises), read one at a time as NNCF iterates (it makes several passes)."""
    import nncf

    stream = CalibrationStream(images, Preprocessor(meta))
    return nncf.Dataset(stream.paths, stream.load)


class _IgnoredScopeChatter(logging.Filter):
    """Drops NNCF's line-per-node notes on the post-processing nodes it was told to leave alone."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        return SCOPE not in message and "ignored nodes were found" not in message


def _ignored_scope(meta: ModelMetadata):
    """What NNCF leaves in floating point: the in-graph post-processing, if any (boxes and scores)."""
    import nncf

    if meta.output_format != "nms":
        return nncf.IgnoredScope()
    chatter = logging.getLogger("nncf")
    if not any(isinstance(f, _IgnoredScopeChatter) for f in chatter.filters):
        chatter.addFilter(_IgnoredScopeChatter())
    return nncf.IgnoredScope(patterns=[SCOPE + ".*"])


def _quantize(model: Any, images: CalibrationSet, meta: ModelMetadata):
    import nncf

    return nncf.quantize(model, _nncf_dataset(images, meta), preset=nncf.QuantizationPreset.MIXED,
                         subset_size=len(images.paths), ignored_scope=_ignored_scope(meta),
                         fast_bias_correction=NNCF_SETTINGS["fast_bias_correction"])


def _accuracy_aware(model: Any, images: CalibrationSet, meta: ModelMetadata, validation: VOCDataset,
                    max_map_drop: float):
    """NNCF's accuracy control: quantize, then return the most sensitive layers to FP until the mAP drop
    (VOC07, in points) fits ``max_map_drop``."""
    import nncf

    from calibration.evaluation import ground_truth
    from calibration.images import read_image
    from calibration.voc_map import ImageDetections, evaluate

    truth = ground_truth(validation)

    def validate(compiled, samples) -> float:
        detector = OpenVINODetector.from_compiled(compiled, meta)
        found = {}
        for sample in samples:
            dets = detector(read_image(sample.image_path)[0])
            found[sample.image_id] = ImageDetections(dets.boxes, dets.scores, dets.names)
        return 100.0 * evaluate({k: truth[k] for k in found}, found, validation.class_names).map

    val_dataset = nncf.Dataset(validation.samples)  # validate() reads and prepares each sample itself
    return nncf.quantize_with_accuracy_control(
        model, calibration_dataset=_nncf_dataset(images, meta), validation_dataset=val_dataset,
        validation_fn=validate, max_drop=max_map_drop, drop_type=nncf.DropType.ABSOLUTE,
        preset=nncf.QuantizationPreset.MIXED, subset_size=len(images.paths), ignored_scope=_ignored_scope(meta))


def float_layers(model: Any) -> List[str]:
    """Convolutions whose input is not quantized (no FakeQuantize feeding them): the layers in FP."""
    names = []
    for op in model.get_ordered_ops():
        if op.get_type_name() in ("Convolution", "GroupConvolution", "MatMul"):
            source = op.input_value(0).get_node()
            while source.get_type_name() in ("Transpose", "Reshape", "Convert"):  # layout, not arithmetic
                source = source.input_value(0).get_node()
            if source.get_type_name() != "FakeQuantize":
                names.append(op.get_friendly_name())
    return names


def build_openvino(onnx_path: Path, meta: ModelMetadata, precision: str, output: Path,
                   calibration: Optional[CalibrationSet] = None, validation: Optional[VOCDataset] = None,
                   max_map_drop: Optional[float] = None, log: Callable[[str], None] = print,
                   in_graph_nms: bool = False) -> BuildReport:
    """Build ``output`` (an ``.xml``) from ``onnx_path`` at ``precision``; see the module docstring.
    ``in_graph_nms`` appends decoding and OpenVINO's MulticlassNms (export/openvino_nms.py)."""
    try:
        import openvino as ov
    except ImportError:
        raise UserError("OpenVINO is not installed: pip install openvino nncf") from None
    if precision not in PRECISIONS:
        raise UserError(f"unknown precision '{precision}': choose one of {', '.join(PRECISIONS)}")
    check_output_dir(output)
    started = time.monotonic()
    # The normalisation goes into the graph before anything else, so that NNCF calibrates and validates
    # the very graph the runner deploys (judged on another input path, INT8 mAP differed by 0.06 here).
    if in_graph_nms:
        model = fold_normalisation(decoded_openvino_model(onnx_path, meta), meta)
        model, meta = append_multiclass_nms(model, meta)
    else:
        model = fold_normalisation(ov.convert_model(str(onnx_path)), meta)
    # What the IR file takes: resized pixels in the model's channel order, NHWC; the graph normalises (the
    # runner adds the BGR swap when it compiles it).
    meta = meta.replace(input=InputSpec(layout="NHWC", channel_order=meta.channel_order,
                                        normalisation_in_graph=True, batch=meta.inputs.batch),
                        precision=precision, quantization="nncf" if precision == "int8" else "none")
    record: Dict[str, Any] = {"runtime": f"openvino {ov.__version__}", "source_onnx_sha256": sha256_file(onnx_path),
                              "nms": "engine" if in_graph_nms else "host", "recipe": RECIPE}
    if precision == "int8":
        if calibration is None:
            raise UserError("INT8 needs calibration images: pass --calib-data")
        try:
            import nncf
        except ImportError:
            raise UserError("INT8 for OpenVINO needs NNCF: pip install nncf") from None
        log(f"quantizing with NNCF {nncf.__version__} on {calibration.describe()}")
        record["calibration"] = calibration.record()
        record["nncf"] = dict(NNCF_SETTINGS, version=nncf.__version__)
        if max_map_drop is not None:
            if validation is None:
                raise UserError("--max-map-drop needs a validation split (--val-data/--val-split)")
            model = _accuracy_aware(model, calibration, meta, validation, max_map_drop)
            record["nncf"]["accuracy_control"] = {"max_map_drop": max_map_drop, "metric": "voc07",
                                                  "validation_images": len(validation)}
        else:
            model = _quantize(model, calibration, meta)
    meta = meta.replace(extra=dict(meta.extra, build=record))
    model.set_rt_info(meta.to_json(), [METADATA_KEY])
    save_ir(model, Path(output), compress_to_fp16=(precision == "fp16"))
    return BuildReport(Path(output), precision, time.monotonic() - started, record)

