"""One build API for every target: ``build(BuildRequest(...)) -> BuildResult``.

    from export.build import BuildRequest, build
    result = build(BuildRequest(target="openvino", precision="int8"))  # the demo model, calibrated on its data
    print(result.path, "built" if result.built else "reused")

The request (export/build_request.py) says what to build from, for which target, at which precision,
calibrated and judged on what, with NMS where, at which batch, into which folder. :func:`build` checks it
whole before any work, resolves the source ONNX (export/build_inputs.py) and hands over to the target's
module in export/targets/; where outputs go and when an earlier one is kept is export/build_outputs.py.
The command line (export/build_engine.py) and the benchmark (benchmarking/plan.py) both build through here.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable, Dict

from export.build_inputs import BuildContext, resolve_source
from export.build_request import TARGETS, BuildRequest, BuildResult
from export.targets.onnx_file import build_onnx_file
from export.targets.openvino_ir import build_openvino_ir
from export.targets.tensorrt_engine import build_tensorrt_engine
from export.targets.triton_repository import build_triton_repository
from runtimes.errors import UserError
from runtimes.metadata import PRECISIONS
from runtimes.nms_options import NMS_MODES

__all__ = ["BuildRequest", "BuildResult", "build"]

_MODEL_TARGETS: Dict[str, Callable[[BuildContext], BuildResult]] = {
    "onnx": build_onnx_file, "openvino": build_openvino_ir, "tensorrt": build_tensorrt_engine}


def build(request: BuildRequest, log: Callable[[str], None] = print) -> BuildResult:
    """Build (or, with ``request.reuse``, keep) what ``request`` asks for; progress lines go to ``log``."""
    _check_request(request)
    output_dir = _output_folder(Path(request.output))
    target = choose_target(request.target, log)
    _check_int8_options(request, target)
    if target == "triton":
        return build_triton_repository(request, output_dir, log)
    from export.onnx_model import require_metadata

    source = resolve_source(request.source, output_dir, request.batch is not None, log)
    meta = require_metadata(source.onnx)
    log(f"source: {source.description}: {meta.arch}, {meta.input_width}x{meta.input_height}, "
        f"{meta.num_classes - 1} classes")
    return _MODEL_TARGETS[target](BuildContext(request, source, meta, output_dir, log))


def choose_target(requested: str, log: Callable[[str], None] = print) -> str:
    """``requested``, or for "auto" TensorRT where TensorRT and a CUDA GPU are found, else OpenVINO."""
    if requested != "auto":
        return requested
    from runtimes.tensorrt_support import unavailable_reason

    reason = unavailable_reason()
    if reason is None:
        log("target: tensorrt (TensorRT and a CUDA GPU found; --target picks another)")
        return "tensorrt"
    log(f"target: openvino ({reason}; --target picks another)")
    return "openvino"


def _check_request(request: BuildRequest) -> None:
    """What can be told from the request alone, before anything is written."""
    for name, value, choices in (("target", request.target, TARGETS), ("precision", request.precision, PRECISIONS),
                                 ("nms", request.nms, NMS_MODES)):
        if value not in choices:
            raise UserError(f"unknown {name} '{value}': choose one of {', '.join(choices)}")
    given = request.source.given()
    if request.target == "triton" and len(given) > 1:
        raise UserError("--target triton serves one model: pass one of --engine, --ir, --onnx, --checkpoint")
    if request.target == "triton" and request.precision != "fp32" and not given:
        raise UserError("--target triton packages a built model: build it first (python export/build_engine.py "
                        "--target openvino --int8, or --target tensorrt on the device) and pass --ir or --engine")


def _output_folder(folder: Path) -> Path:
    if folder.exists() and not folder.is_dir():
        raise UserError(f"{folder}: --output must be a folder")
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UserError(f"{folder}: cannot create the output folder ({exc.strerror}); "
                        "choose another --output") from None
    return folder


def _check_int8_options(request: BuildRequest, target: str) -> None:
    """--max-map-drop and --int8-report: INT8 on OpenVINO or the Q/DQ route (--target onnx, TensorRT's explicit
    route), a budget of 0 or more, a validation split to judge it on."""
    int8 = request.int8
    asked = [flag for flag, given in (("--max-map-drop", int8.max_map_drop is not None), ("--int8-report", int8.report))
             if given]
    if not asked:
        return
    if request.precision != "int8":
        raise UserError(f"{asked[0]} applies to INT8: add --int8")
    if int8.max_map_drop is not None and int8.max_map_drop < 0:
        raise UserError(f"--max-map-drop must be 0 or more (the VOC07 mAP points INT8 may lose), "
                        f"got {int8.max_map_drop}")
    if int8.max_float_layers < 1:
        raise UserError(f"--max-float-layers must be at least 1, got {int8.max_float_layers}")
    if target not in ("onnx", "openvino", "tensorrt"):
        raise UserError(f"{asked[0]} applies to --target onnx, openvino or tensorrt")
    if target == "tensorrt" and _tensorrt_int8_route(request) != "explicit":
        raise UserError(f"{asked[0]} with TensorRT covers the explicit INT8 route (the Q/DQ model), not the "
                        f"implicit calibrator this build uses: add --int8-route explicit")
    if int8.max_map_drop is not None and request.validation.data is None and not request.source.is_demo:
        raise UserError("--max-map-drop needs a validation split: pass --val-data (a VOC root)")


def _tensorrt_int8_route(request: BuildRequest) -> str:
    route = request.tensorrt.int8_route
    if route != "auto":
        return route
    from runtimes.tensorrt_support import Capabilities, parse_version, require_tensorrt

    return Capabilities(parse_version(require_tensorrt())).default_int8_route()
