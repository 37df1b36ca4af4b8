"""The explicit INT8 route's Q/DQ ONNX (``--target onnx --int8``, TensorRT's explicit route): plain, or
accuracy-gated within ``--max-map-drop`` (quantization of the layers that cost most left out), with the
per-layer report when asked; the --onnx given when it already is one."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from typing import Any, Dict, List

from export import build_outputs
from export.build_inputs import BuildContext
from export.targets.accuracy import compare_with_fp32, int8_report
from runtimes.errors import UserError
from runtimes.metadata import ModelMetadata


def qdq_settings(context: BuildContext) -> Dict[str, Any]:
    """What shapes a Q/DQ model besides its source and images, for the record of what it was made from."""
    from quantization.qdq_onnx import QDQ_SETTINGS

    int8 = context.request.int8
    return {"method": int8.qdq_method, "max_map_drop": int8.max_map_drop, "max_float_layers": int8.max_float_layers,
            "recipe": QDQ_SETTINGS["recipe"]}


def qdq_model(context: BuildContext, meta: ModelMetadata) -> Path:
    """The Q/DQ model of the source, carrying ``meta``; its accuracy against FP32 logged when a validation
    split exists."""
    source, int8 = context.source, context.request.int8
    if context.meta.quantization == "qdq":
        if int8.max_map_drop is not None or int8.report:
            raise UserError(f"{source.onnx} is already a Q/DQ model: --max-map-drop and --int8-report start from "
                            "the FP32 ONNX; pass that to --onnx")
        context.log(f"INT8: {source.onnx} is already a Q/DQ model; building it as is")
        return source.onnx
    out = build_outputs.onnx_variant(context.output_dir, source.stem, "int8")
    images, validation = context.calibration(), context.validation()
    # Ranges calibrated once, shared by the gate's mixes and the report's variants (which differ only in the
    # layers kept in float); removed with the folder, whatever happens.
    work = Path(tempfile.mkdtemp(prefix=f".{source.stem}.qdq.", dir=context.output_dir))
    try:
        ranges, kept = work / "ranges.json", []
        if int8.max_map_drop is None:
            _plain(context, meta, images, validation, out, ranges)
        else:
            kept = _gated(context, meta, images, validation, out, work)
        if int8.report:
            from quantization.int8_report import qdq_report

            int8_report(context, lambda folder: qdq_report(source.onnx, meta, images, folder, validation,
                                                           int8.qdq_method, keep_in_float=kept, ranges_cache=ranges,
                                                           log=context.log, show_progress=context.request.progress))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return out


def _plain(context: BuildContext, meta: ModelMetadata, images: Any, validation: Any, out: Path, ranges: Path) -> None:
    from quantization.qdq_onnx import build_qdq_onnx

    report = build_qdq_onnx(context.source.onnx, meta, images, out, context.request.int8.qdq_method,
                            show_progress=context.request.progress, ranges_cache=ranges)
    context.log(f"built the Q/DQ INT8 ONNX in {report.seconds:.1f} s: {out}")
    if validation is not None:
        compare_with_fp32(context, out, validation, runtimes=("onnxruntime", "openvino"))


def _gated(context: BuildContext, meta: ModelMetadata, images: Any, validation: Any, out: Path,
           work: Path) -> List[str]:
    """The Q/DQ model within --max-map-drop (quantization/qdq_gate.py), its cost in speed and a second opinion on
    the split the gate did not see logged; returns the layers kept in float."""
    from export.onnx_model import load_onnx
    from quantization.int8_sensitivity import quantized_convs
    from quantization.qdq_gate import gate_qdq, other_split
    from quantization.qdq_onnx import build_qdq_onnx

    int8, log, ranges = context.request.int8, context.log, work / "ranges.json"
    assert int8.max_map_drop is not None and validation is not None  # checked before the build started
    gate = gate_qdq(context.source.onnx, meta, images, validation, out, int8.max_map_drop, int8.qdq_method,
                    int8.max_float_layers, ranges_cache=ranges, log=log, show_progress=context.request.progress)
    plain = build_qdq_onnx(context.source.onnx, meta, images, work / "plain.onnx", int8.qdq_method,
                           show_progress=False, ranges_cache=ranges).path
    total = len(quantized_convs(load_onnx(plain)))
    log(f"built the accuracy-gated Q/DQ INT8 ONNX in {gate.seconds:.0f} s: {out}")
    log(f"layers kept in float: {len(gate.kept)} of {total} Conv layers" + "".join(f"\n  {n}" for n in gate.kept))
    log(f"final drop (ONNX Runtime, {validation.year_dir.name}/{validation.split}): {gate.drop:.2f} points "
        f"(budget {int8.max_map_drop}; plain Q/DQ {gate.steps[0].drop(gate.fp32_map):.2f})")
    _log_cost_in_speed(context, plain, out, bool(gate.kept))
    compare_with_fp32(context, out, validation, runtimes=("openvino",), label="gated INT8")
    other = other_split(validation)
    if other is not None:
        log("on the split the gate did not see:")
        compare_with_fp32(context, out, other, runtimes=("onnxruntime", "openvino"), label="gated INT8",
                          show_budget=False)
    return gate.kept


def _log_cost_in_speed(context: BuildContext, plain: Path, gated: Path, kept_any: bool) -> None:
    from quantization.qdq_gate import openvino_latency_ms

    if not kept_any:
        context.log("nothing kept in float: the plain Q/DQ model meets the budget (no cost in speed)")
        return
    plain_ms, gated_ms = openvino_latency_ms([plain, gated])
    context.log(f"cost in speed (OpenVINO CPU latency of the Q/DQ model, alternated in this run): plain "
                f"{plain_ms:.2f} ms, gated {gated_ms:.2f} ms ({gated_ms / plain_ms:.2f}x)")
