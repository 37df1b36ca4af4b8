"""``--target openvino``: the OpenVINO IR (export/openvino_build.py) in FP32, FP16 or INT8 (NNCF, optionally
accuracy-aware), decoding and MulticlassNms inside with ``--nms engine``; for INT8 the layers left in
floating point, the accuracy against FP32 and the per-layer report when asked."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Dict, Optional

from export import build_outputs
from export.build_inputs import BuildContext
from export.build_request import BuildResult
from export.targets.accuracy import compare_with_fp32, int8_report


def build_openvino_ir(context: BuildContext) -> BuildResult:
    from export.openvino_build import NNCF_SETTINGS, RECIPE, build_openvino

    request, source, meta = context.request, context.source, context.meta
    precision, in_graph_nms = request.precision, request.nms == "engine"
    out = build_outputs.model_file(context.output_dir, source.stem, precision, request.nms, "openvino")
    int8 = precision == "int8"
    calibration = context.calibration() if int8 else None
    settings: Dict[str, Any] = {"recipe": RECIPE}
    if int8:
        settings.update(nncf=NNCF_SETTINGS, max_map_drop=request.int8.max_map_drop)
    record = build_outputs.made_from(source.onnx, "openvino", precision, request.nms, calibration, **settings)
    files = [out, out.with_suffix(".bin")]
    if build_outputs.reusable(out, record, request.reuse, context.log):
        return BuildResult(out, files, meta, False, "openvino")
    validation = context.validation() if int8 else None
    report = build_openvino(source.onnx, build_outputs.stamped(meta, record), precision, out, calibration,
                            validation, request.int8.max_map_drop, log=context.log, in_graph_nms=in_graph_nms)
    context.log(f"built OpenVINO {precision.upper()} IR in {report.seconds:.1f} s: {out} (+ .bin)"
                + (f"; decoding and MulticlassNms inside (score > {meta.score_threshold}, IoU {meta.iou_threshold}, "
                   f"{meta.max_detections} detections)" if in_graph_nms else ""))
    if int8:
        _int8_findings(context, out, calibration, validation)
    return BuildResult(out, files, meta, True, "openvino")


def _int8_findings(context: BuildContext, xml: Path, calibration: Any, validation: Optional[Any]) -> None:
    """What INT8 left in float, what it cost against FP32, and the per-layer report when asked."""
    import openvino as ov

    from export.openvino_build import float_layers

    request, source = context.request, context.source
    kept = float_layers(ov.Core().read_model(str(xml)))
    shown = f" ({', '.join(kept[:6])}{', ...' if len(kept) > 6 else ''})" if kept else ""
    context.log(f"layers left in floating point: {len(kept)}{shown}")
    if validation is not None:
        compare_with_fp32(context, xml, validation)
    if request.int8.report:
        from quantization.int8_report import openvino_report

        if request.int8.max_map_drop is not None or request.nms == "engine":
            context.log("note: the INT8 report analyses NNCF's plain quantization of the network (host NMS), "
                        "not the accuracy-aware or in-graph-NMS IR written")
        int8_report(context, lambda folder: openvino_report(source.onnx, context.meta, calibration, folder,
                                                            validation, log=context.log))
