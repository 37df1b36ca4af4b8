"""Accuracy-gated Q/DQ INT8: keep the most sensitive Conv layers in float until the mAP drop fits a budget.

FP32 and the plain Q/DQ model are judged on a validation split with ONNX Runtime (VOC07 mAP, points). While
the drop exceeds ``max_map_drop``, layers are kept in float one more at a time, most sensitive first (the
rise of the network outputs' SQNR with that layer alone in float, quantization/int8_sensitivity.py), each mix
quantized by ONNX Runtime with ``nodes_to_exclude`` from ranges calibrated once. The first mix that fits is
written, with the budget, the layers kept and the measured drop in its metadata; when none within
``max_float_layers`` fits, the best reached is reported in the error and nothing is written.
"""

from __future__ import annotations

import shutil
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence

from calibration.stream import CalibrationSet
from calibration.voc import VOCDataset
from runtimes.atomic import check_output_dir
from runtimes.errors import UserError
from runtimes.metadata import ModelMetadata

DEFAULT_MAX_FLOAT_LAYERS = 8
DEFAULT_SENSITIVITY_FRAMES = 8


@dataclass
class GateStep:
    kept: List[str]
    map: float  # VOC07 mAP in [0, 1], ONNX Runtime

    def drop(self, fp32_map: float) -> float:
        return 100.0 * (fp32_map - self.map)


@dataclass
class GateResult:
    path: Path
    max_map_drop: float
    fp32_map: float
    steps: List[GateStep] = field(default_factory=list)  # steps[0]: the plain Q/DQ model
    seconds: float = 0.0

    @property
    def final(self) -> GateStep:
        return self.steps[-1]

    @property
    def kept(self) -> List[str]:
        return self.final.kept

    @property
    def drop(self) -> float:
        return self.final.drop(self.fp32_map)

    def record(self, validation: VOCDataset) -> Dict[str, Any]:
        """The accuracy gate's entry in the model's quantization record."""
        return {"max_map_drop": self.max_map_drop, "kept_in_float": self.kept, "map_drop": round(self.drop, 3),
                "fp32_map": round(100 * self.fp32_map, 3), "int8_map": round(100 * self.final.map, 3),
                "plain_map_drop": round(self.steps[0].drop(self.fp32_map), 3), "metric": "voc07",
                "judged_with": "onnxruntime", "ranked_by": "output SQNR gain with the layer alone in float",
                "validation": f"{validation.year_dir.name}/{validation.split}", "validation_images": len(validation)}


def _map(path: Path, validation: VOCDataset) -> float:
    from calibration.evaluation import evaluate_detector
    from runtimes.loader import load_detector

    return evaluate_detector(load_detector(path, "onnxruntime"), validation, show_progress=False).map


def gate_qdq(source: Path, meta: ModelMetadata, images: CalibrationSet, validation: VOCDataset, output: Path,
             max_map_drop: float, method: str = "minmax", max_float_layers: int = DEFAULT_MAX_FLOAT_LAYERS,
             sensitivity_frames: int = DEFAULT_SENSITIVITY_FRAMES, ranges_cache: Optional[Path] = None,
             log: Callable[[str], None] = print, show_progress: bool = True) -> GateResult:
    """Write to ``output`` the Q/DQ model of ``source`` with the fewest layers kept in float (ranked by
    their own error, at most ``max_float_layers``) whose mAP drop on ``validation`` is at most
    ``max_map_drop`` points; UserError, and nothing written, when no such mix exists. ``ranges_cache``:
    calibrated ranges to reuse or write (quantization/qdq_onnx.py; default: calibrated here and discarded)."""
    from quantization.int8_sensitivity import layer_errors
    from quantization.int8_sensitivity import sensitivity_frames as frames_of
    from quantization.qdq_onnx import build_qdq_onnx

    if max_map_drop < 0:
        raise UserError(f"--max-map-drop must be 0 or more (the mAP points INT8 may lose), got {max_map_drop}")
    check_output_dir(output)
    started = time.monotonic()
    work = Path(tempfile.mkdtemp(prefix=f".{Path(output).stem}.gate.", dir=Path(output).parent))
    try:
        ranges = Path(ranges_cache) if ranges_cache is not None else work / "ranges.json"

        def quantize(kept: Sequence[str], path: Path) -> Path:
            return build_qdq_onnx(source, meta, images, path, method, show_progress=show_progress,
                                  keep_in_float=kept, ranges_cache=ranges).path

        plain = quantize((), work / "plain.onnx")
        log(f"judging FP32 and Q/DQ INT8 with ONNX Runtime on {len(validation)} images "
            f"({validation.year_dir.name}/{validation.split}) ...")
        result = GateResult(Path(output), max_map_drop, _map(source, validation))
        result.steps.append(GateStep([], _map(plain, validation)))
        log(f"  plain Q/DQ: FP32 {100 * result.fp32_map:.2f}, INT8 {100 * result.final.map:.2f}, "
            f"drop {result.drop:.2f} points (budget {max_map_drop})")
        best, best_path = result.final, plain
        if result.drop > max_map_drop:
            ranking = [e.name for e in layer_errors(source, plain, frames_of(images, meta, sensitivity_frames),
                                                    show_progress)]
            log(f"  over budget: keeping layers in float, most sensitive first (of {len(ranking)} quantized)")
            for count in range(1, min(max_float_layers, len(ranking)) + 1):
                path = quantize(ranking[:count], work / f"float{count}.onnx")
                result.steps.append(GateStep(ranking[:count], _map(path, validation)))
                log(f"  {count} in float (+ {ranking[count - 1]}): INT8 {100 * result.final.map:.2f}, "
                    f"drop {result.drop:.2f}")
                if result.final.map > best.map:
                    best, best_path = result.final, path
                if result.drop <= max_map_drop:
                    best, best_path = result.final, path
                    break
        if best.drop(result.fp32_map) > max_map_drop:
            raise UserError(
                f"no mix of up to {max_float_layers} float layers meets --max-map-drop {max_map_drop}: best drop "
                f"{best.drop(result.fp32_map):.2f} points with {len(best.kept)} kept in float "
                f"({', '.join(best.kept) or 'none'}); no model written. Raise the budget or --max-float-layers")
        _write_with_record(best_path, output, result.record(validation))
        result.seconds = time.monotonic() - started
        return result
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _write_with_record(model_path: Path, output: Path, gate: Dict[str, Any]) -> None:
    from export.onnx_model import load_onnx, read_metadata, save_checked, write_metadata

    model = load_onnx(model_path)
    meta = read_metadata(model, str(model_path))
    assert meta is not None  # build_qdq_onnx wrote it
    quantization = dict(meta.extra["quantization"], accuracy_gate=gate)
    write_metadata(model, meta.replace(extra={**meta.extra, "quantization": quantization}))
    save_checked(model, output)


def openvino_latency_ms(paths: Sequence[Path], rounds: int = 5, calls: int = 40) -> List[float]:
    """OpenVINO CPU latency (median ms of back-to-back calls, latency hint) of each ONNX in ``paths``, the
    models alternating ``rounds`` times in this process, since this machine's speed drifts over seconds:
    the cost in speed of layers kept in float, with OpenVINO as a CPU proxy for an INT8 engine."""
    import statistics

    import numpy as np
    import openvino as ov

    core = ov.Core()
    # Float layers in FP32 on every CPU (OpenVINO's default is BF16 where the CPU has it, e.g. with AMX).
    config = {"PERFORMANCE_HINT": "LATENCY", "INFERENCE_PRECISION_HINT": "f32"}
    compiled = [core.compile_model(str(p), "CPU", config) for p in paths]
    requests = [c.create_infer_request() for c in compiled]
    shape = [int(d) for d in compiled[0].inputs[0].get_shape()]
    batch = np.random.default_rng(0).standard_normal(shape).astype(np.float32)
    medians: List[List[float]] = [[] for _ in paths]
    for _ in range(rounds):
        for i, request in enumerate(requests):
            request.infer({0: batch})
            times = []
            for _ in range(calls):
                start = time.perf_counter()
                request.infer({0: batch})
                times.append(time.perf_counter() - start)
            medians[i].append(1000 * statistics.median(times))
    return [statistics.median(m) for m in medians]


def other_split(validation: VOCDataset) -> Optional[VOCDataset]:
    """The split a gate was not judged on (test for val, val for anything else), when the data set has it."""
    name = "val" if validation.split != "val" else "test"
    if not (validation.year_dir / "ImageSets" / "Main" / f"{name}.txt").is_file():
        return None
    year = validation.year_dir.name[len("VOC"):]  # VOCDataset takes the VOC<year> folder itself as its root
    return VOCDataset(validation.year_dir, year, name, validation.class_names)
