"""The ONNX models a build makes on the way or as its result: the FP32 copy, the FP16 model (what TensorRT 11
builds FP16 from) and a model with decoding and EfficientNMS_TRT appended (``--nms engine``). The Q/DQ INT8
model is export/targets/qdq_model.py."""

from __future__ import annotations

from pathlib import Path

from export import build_outputs
from export.build_inputs import BuildContext
from runtimes.metadata import ModelMetadata


def fp32_copy(context: BuildContext, meta: ModelMetadata) -> Path:
    """The source model in the output folder, carrying ``meta`` (its record of what it was made from);
    the source itself when it is already there."""
    from export.onnx_model import load_onnx, save_checked, write_metadata

    out = build_outputs.onnx_variant(context.output_dir, context.source.stem, "fp32")
    if context.source.onnx.resolve() == out.resolve():
        return out
    model = load_onnx(context.source.onnx)
    write_metadata(model, meta)
    save_checked(model, out)
    return out


def verify_onnx(context: BuildContext, path: Path) -> None:
    """Run ``path`` once on ONNX Runtime (a grey frame), so a model that cannot run fails here."""
    import numpy as np

    from runtimes.loader import load_detector

    dets = load_detector(path)(np.full((480, 640, 3), 114, np.uint8))
    context.log(f"verified with ONNX Runtime: runs, {len(dets)} detections on a grey frame")


def fp16_model(context: BuildContext, meta: ModelMetadata) -> Path:
    """The FP16 ONNX, its accuracy against FP32 logged when a validation split exists."""
    from export.fp16_onnx import build_fp16_onnx
    from export.targets.accuracy import compare_with_fp32

    out = build_outputs.onnx_variant(context.output_dir, context.source.stem, "fp16")
    seconds = build_fp16_onnx(context.source.onnx, meta, out)
    context.log(f"built the FP16 ONNX in {seconds:.1f} s: {out}")
    validation = context.validation()
    if validation is not None:
        compare_with_fp32(context, out, validation, runtimes=("openvino",), label="FP16")
    return out


def with_efficient_nms(context: BuildContext, onnx_path: Path) -> Path:
    """``onnx_path`` with decoding and EfficientNMS_TRT appended (``--nms engine``)."""
    from export.efficient_nms import append_efficient_nms, save_with_plugin
    from export.onnx_model import load_onnx, require_metadata, write_metadata

    model = load_onnx(onnx_path)
    with_nms, nms_meta = append_efficient_nms(model, require_metadata(onnx_path))
    write_metadata(with_nms, nms_meta)
    out = build_outputs.with_nms(onnx_path, context.output_dir)
    save_with_plugin(with_nms, out)
    context.log(f"appended decoding and EfficientNMS_TRT (score > {nms_meta.score_threshold}, IoU "
                f"{nms_meta.iou_threshold}, {nms_meta.max_detections} detections): {out}")
    return out
