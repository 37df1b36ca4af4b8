"""``--target tensorrt``: the engine and its record (export/tensorrt_build.py) for the installed TensorRT
(8.5/8.6, 10.x, 11): the plan for the version decides the ONNX variant it parses (as exported, Q/DQ INT8,
FP16) and the calibrator; the trtexec command that does the same is logged. Device side: Python 3.8."""

from __future__ import annotations

import shlex
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Dict, Optional

from export import build_outputs
from export.build_inputs import BuildContext
from export.build_request import BuildResult


@dataclass
class _Setup:
    """The installed TensorRT and GPU, and what the build does on them."""

    version: str
    gpu: Any
    options: Any  # TensorRTOptions
    plan: Any  # BuildPlan


def build_tensorrt_engine(context: BuildContext) -> BuildResult:
    from export.onnx_model import require_metadata
    from export.tensorrt_build import build_engine, timing_cache_name, trtexec_command

    request, source, output_dir = context.request, context.source, context.output_dir
    setup = _setup(context)
    precision, plan = setup.options.precision, setup.plan
    out = build_outputs.model_file(output_dir, source.stem, precision, request.nms, "tensorrt")
    calibration = context.calibration() if plan.int8_route == "implicit" or plan.onnx_variant == "qdq" else None
    record = build_outputs.made_from(source.onnx, "tensorrt", precision, request.nms, calibration,
                                     **_settings(context, setup))
    files = [out, out.with_name(out.name + ".json")]
    if build_outputs.reusable(out, record, request.reuse, context.log):
        return BuildResult(out, files, context.meta, False, "tensorrt")
    onnx_path = _network(context, setup, build_outputs.stamped(context.meta, record))
    build_meta = build_outputs.stamped(require_metadata(onnx_path), record)
    timing = request.tensorrt.timing_cache or output_dir / timing_cache_name(setup.version, setup.gpu)
    calib_cache = request.tensorrt.calib_cache or build_outputs.calibration_cache(output_dir, source.stem)
    engine_record: Dict[str, Any] = {"source": source.description, "source_onnx_sha256": record["source_onnx_sha256"],
                                     "command": list(request.command)}
    implicit = calibration if plan.int8_route == "implicit" else None
    if implicit is not None:
        engine_record["calibration"] = implicit.record()
    result = build_engine(onnx_path, build_meta, out, setup.options, plan, calibration=implicit,
                          calib_cache=calib_cache, timing_cache=timing, rebuild_command=_rebuild_command(context),
                          record=engine_record)
    context.log(f"built TensorRT {precision.upper()} engine in {result.seconds:.1f} s: {out} (+ {out.name}.json)")
    context.log("trtexec equivalent: " + trtexec_command(onnx_path, out, context.meta, setup.options, plan, timing,
                                                         result.profile, result.calib_table))
    return BuildResult(out, files, build_meta, True, "tensorrt")


def _setup(context: BuildContext) -> _Setup:
    """TensorRT, the GPU, the options and the plan; a Q/DQ source builds INT8 whatever was asked."""
    from export.tensorrt_build import TensorRTOptions, has_qdq, plan_build
    from runtimes.tensorrt_support import Capabilities, GPUIdentity, import_cuda, parse_version, require_tensorrt

    request, spec = context.request, context.request.tensorrt
    version = require_tensorrt()
    gpu = GPUIdentity.of_device(import_cuda(), 0)
    precision = request.precision
    if has_qdq(context.meta) and precision != "int8":
        context.log(f"{context.source.onnx} is a Q/DQ model: building INT8")
        precision = "int8"
    options = TensorRTOptions(precision, spec.int8_route, spec.calib_algorithm, spec.calib_batch, spec.workspace_mib,
                              request.batch, spec.dla_core, request.nms)
    plan = plan_build(Capabilities(parse_version(version)), options, has_qdq(context.meta))
    context.log(f"TensorRT {version}: {precision.upper()}"
                + (f", INT8 route {plan.int8_route}" if plan.int8_route else "")
                + "".join(f"; {note}" for note in plan.notes))
    return _Setup(version, gpu, options, plan)


def _settings(context: BuildContext, setup: _Setup) -> Dict[str, Any]:
    """What shapes the engine besides source, precision, NMS and images."""
    from export.targets.qdq_model import qdq_settings

    settings = {"tensorrt": setup.version, "gpu": f"{setup.gpu.name} sm{setup.gpu.compute_capability}",
                "builder": asdict(setup.options), "onnx_variant": setup.plan.onnx_variant}
    if setup.plan.onnx_variant == "qdq":
        settings["qdq"] = qdq_settings(context)
    return settings


def _network(context: BuildContext, setup: _Setup, meta: Any) -> Path:
    """The ONNX TensorRT parses: the source, its Q/DQ or FP16 variant, EfficientNMS_TRT appended if asked."""
    from export.targets.onnx_variants import fp16_model, with_efficient_nms
    from export.targets.qdq_model import qdq_model

    onnx_path = context.source.onnx
    if setup.plan.onnx_variant == "qdq":
        onnx_path = qdq_model(context, meta)
    elif setup.plan.onnx_variant == "fp16":
        onnx_path = fp16_model(context, meta)
    if context.request.nms == "engine":
        onnx_path = with_efficient_nms(context, onnx_path)
    return onnx_path


def _rebuild_command(context: BuildContext) -> str:
    """The engine's rebuild command: the command line that asked, or one that builds the same."""
    command: Optional[str] = shlex.join(context.request.command) if context.request.command else None
    if command is None:
        request = context.request
        flags = ["--target", "tensorrt", "--onnx", str(context.source.onnx), "--nms", request.nms]
        flags += [f"--{request.precision}"] if request.precision != "fp32" else []
        command = shlex.join(flags)
    return "python export/build_engine.py " + command
