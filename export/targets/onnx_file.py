"""``--target onnx``: the ONNX to take to a device: FP32 as exported (checked on ONNX Runtime), the Q/DQ INT8
model or the FP16 model (what TensorRT 11 builds FP16 from), optionally with EfficientNMS_TRT appended."""

from __future__ import annotations

from export import build_outputs
from export.build_inputs import BuildContext
from export.build_request import BuildResult
from export.targets.onnx_variants import fp16_model, fp32_copy, verify_onnx, with_efficient_nms
from export.targets.qdq_model import qdq_model, qdq_settings


def build_onnx_file(context: BuildContext) -> BuildResult:
    request, source = context.request, context.source
    precision, engine_nms = request.precision, request.nms == "engine"
    final = build_outputs.onnx_variant(context.output_dir, source.stem, precision)
    if engine_nms:
        final = build_outputs.with_nms(final, context.output_dir)
    quantizing = precision == "int8" and context.meta.quantization != "qdq"
    settings = {"qdq": qdq_settings(context)} if quantizing else {}
    record = build_outputs.made_from(source.onnx, "onnx", precision, request.nms,
                                     context.calibration() if quantizing else None, **settings)
    if build_outputs.reusable(final, record, request.reuse, context.log):
        return BuildResult(final, [final], context.meta, False, "onnx")
    meta = build_outputs.stamped(context.meta, record)
    if precision == "int8":
        path = qdq_model(context, meta)
    elif precision == "fp16":
        path = fp16_model(context, meta)
    else:
        path = fp32_copy(context, meta)
        verify_onnx(context, path)
    files = [path]
    if engine_nms:
        path = with_efficient_nms(context, path)
        files.append(path)
        context.log("note: ONNX Runtime and OpenVINO cannot run EfficientNMS_TRT; this file is for TensorRT")
    context.log(f"wrote {path}")
    return BuildResult(path, files, meta, True, "onnx")
