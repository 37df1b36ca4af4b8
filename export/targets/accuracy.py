"""How a build shows what reduced precision cost: the model's mAP against the FP32 source's per runtime,
and the per-layer INT8 report."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Sequence

from export import build_outputs
from export.build_inputs import BuildContext


def compare_with_fp32(context: BuildContext, reduced: Path, validation: Any, runtimes: Sequence[str] = ("openvino",),
                      label: str = "INT8", show_budget: bool = True) -> None:
    """Log the VOC07 mAP of the source and of ``reduced`` on ``validation`` with each runtime, and the drop
    (against the --max-map-drop budget where one is set and ``show_budget``); nothing when the request
    does not ask for the comparison."""
    from calibration.evaluation import evaluate_detector
    from runtimes.loader import load_detector

    if not context.request.validation.judge:
        return
    budget_points = context.request.int8.max_map_drop
    context.log(f"judging accuracy on {len(validation)} images ({validation.year_dir.name}/{validation.split}) ...")
    budget = f" (budget {budget_points})" if budget_points is not None and show_budget else ""
    for runtime in runtimes:
        fp32 = evaluate_detector(load_detector(context.source.onnx, runtime), validation, show_progress=False).map
        other = evaluate_detector(load_detector(reduced, runtime), validation, show_progress=False).map
        context.log(f"mAP (VOC07) on {runtime}: FP32 {100 * fp32:.2f}, {label} {100 * other:.2f}, "
                    f"drop {100 * (fp32 - other):.2f} points{budget}")


def int8_report(context: BuildContext, make: Callable[[Path], Any]) -> None:
    """The per-layer INT8 sensitivity report, written by ``make(folder)`` into the requested folder (default
    OUTPUT/NAME_int8_report), its summary logged."""
    from quantization.int8_report import summary_lines

    folder = context.request.int8.report_folder or \
        build_outputs.int8_report_folder(context.output_dir, context.source.stem)
    for line in summary_lines(make(folder), folder):
        context.log(line)
