"""The benchmark's plan: one row per runtime x precision available here, and the model file each row
measures, made through the toolkit's one build API (export.build), which keeps a model whose record says it
was made from the same inputs.

The runtimes are the registry's (runtimes/loader.py) that open a file a build makes, plus the benchmark's
own reference row, PyTorch eager at FP32; the precisions are runtimes.metadata.PRECISIONS.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

from runtimes.errors import UserError
from runtimes.metadata import PRECISIONS

REFERENCE = "pytorch"  # the row every speed-up is measured against; the benchmark runs it itself

__all__ = ["PRECISIONS", "REFERENCE", "PlanOptions", "benchmark_runtimes", "build_artifacts", "plan_rows",
           "unavailable_reason"]


@dataclass
class PlanOptions:
    """What apps/benchmark.py asks for: the rows, the model (a checkpoint, or the demo model), calibration."""

    runtimes: Sequence[str]
    precisions: Sequence[str] = PRECISIONS
    nms: str = "host"
    checkpoint: Optional[Path] = None
    arch: Optional[str] = None
    num_classes: Optional[int] = None
    classes: Optional[Path] = None
    calib_data: Optional[Path] = None
    calib_images: int = 300
    models: Sequence[str] = field(default_factory=tuple)
    input_size: Optional[int] = None  # what a checkpoint of another codebase cannot tell (importers/cli.py)
    preset: Optional[str] = None
    config: Optional[Path] = None


def build_target(runtime: str) -> Optional[str]:
    """The build target whose file ``runtime`` opens (None: it opens none, e.g. a server URL)."""
    from export.build_outputs import TARGET_SUFFIXES
    from runtimes.loader import registered_runtimes

    known = registered_runtimes()
    if runtime not in known:
        return None
    return next((target for target, suffix in TARGET_SUFFIXES.items() if known[runtime].matches(f"model{suffix}")),
                None)


def benchmark_runtimes() -> List[str]:
    """The reference row's runtime, then every registered runtime a build makes a file for."""
    from runtimes.loader import registered_runtimes

    return [REFERENCE] + [name for name in registered_runtimes() if build_target(name) is not None]


def unavailable_reason(runtime: str) -> Optional[str]:
    """Why ``runtime`` cannot run here (None when it can, or when only loading a model can tell: a server)."""
    modules = {"pytorch": "torch", "onnxruntime": "onnxruntime", "openvino": "openvino", "kserve": "tritonclient"}
    if runtime == "tensorrt":
        from runtimes.tensorrt_support import unavailable_reason as tensorrt_unavailable

        return tensorrt_unavailable()
    if runtime not in modules:
        return None
    try:
        __import__(modules[runtime])
    except ImportError:
        return f"{modules[runtime]} is not installed"
    return None


def plan_rows(options: PlanOptions) -> List[Dict[str, Any]]:
    """One dict per requested runtime x precision: what to build/load, or why it is skipped."""
    from runtimes.nms_options import NMS_OPS

    rows = []
    for runtime in options.runtimes:
        for precision in options.precisions:
            row: Dict[str, Any] = {"runtime": runtime, "precision": precision,
                                   "nms": options.nms if runtime in NMS_OPS else "host"}
            reason = unavailable_reason(runtime)
            if reason is None and runtime == REFERENCE and precision != "fp32":
                reason = "pytorch rows are FP32 (the reference)"
            if reason is None and runtime == REFERENCE and options.checkpoint is None and options.models:
                reason = "no checkpoint given (--models has no PyTorch weights)"
            if reason is None and runtime != REFERENCE and build_target(runtime) is None:
                reason = f"{runtime} opens no file a build makes (pass its URL with --models)"
            row["status"] = "planned" if reason is None else f"unavailable: {reason}"
            rows.append(row)
    return rows


def build_artifacts(rows: List[Dict[str, Any]], options: PlanOptions, output_dir: Path) -> None:
    """Give every planned row a model file, built or kept by export.build."""
    from export.build import build

    source, reference = _source(options, output_dir)
    for row in rows:
        if row["status"] != "planned":
            continue
        if row["runtime"] == REFERENCE:
            row.update(reference)
            continue
        print(f"{row['runtime']:<12}{row['precision']:<6}building or reusing its model ...", flush=True)
        try:
            result = build(model_request(row, options, source, output_dir), log=_quiet)
        except UserError as exc:
            row["status"] = f"build failed: {exc}"
            continue
        row["model"] = str(result.path)
        print(f"{'':<18}{'built' if result.built else 'reusing (built from the same inputs)'} {result.path.name}")


def model_request(row: Dict[str, Any], options: PlanOptions, source: Any, output_dir: Path) -> Any:
    """The build request for ``row``'s model: its runtime's target at its precision, kept when unchanged."""
    from export.build_request import BuildRequest, CalibrationSpec, ValidationSpec

    return BuildRequest(source, build_target(row["runtime"]) or "", row["precision"],
                        CalibrationSpec(options.calib_data, options.calib_images), ValidationSpec(judge=False),
                        nms=row["nms"], output=output_dir, reuse=True, progress=False)


def _source(options: PlanOptions, output_dir: Path) -> Tuple[Any, Dict[str, Any]]:
    """What every row is built from (a checkpoint is exported once, here) and the reference row's model."""
    from export.build_inputs import resolve_source
    from export.build_request import SourceSpec
    from export.demo_model import DEMO_ARCH, DEMO_CHECKPOINT
    from export.onnx_model import require_metadata

    spec = SourceSpec(options.checkpoint, options.arch, options.num_classes, options.classes,
                      input_size=options.input_size, preset=options.preset, config=options.config)
    resolved = resolve_source(spec, output_dir, dynamic_batch=False, log=_quiet)
    checkpoint, arch = (DEMO_CHECKPOINT, DEMO_ARCH) if spec.is_demo else (options.checkpoint, options.arch)
    importing = {"input_size": options.input_size, "preset": options.preset,
                 "config": str(options.config) if options.config is not None else None}
    reference = {"model": str(checkpoint), "arch": arch, "import_options": importing,
                 "class_names": require_metadata(resolved.onnx).class_names[1:]}
    return (spec if spec.is_demo else SourceSpec(onnx=resolved.onnx)), reference


def _quiet(line: str) -> None:
    """Where a row's build lines go: nowhere (the rows' own lines say what was built or kept)."""
