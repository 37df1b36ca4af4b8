"""The per-layer INT8 sensitivity report: which quantized layers lose most, and what keeping one in float buys.

For a quantized model it writes, into one folder, ``int8_report.md`` (the table), ``int8_report.csv``
(every layer) and ``int8_report.png`` (the per-layer SQNR): each quantized layer's output error against
FP32 on calibration frames (SQNR, dB; see quantization/int8_sensitivity.py), names as in the ONNX file, and for
the ``worst`` layers (and, as a control, the best one) the effect of keeping that layer alone in float:
the network outputs' SQNR against FP32 and the validation mAP. The report checks itself: keeping the layer
it ranks worst in float must raise the output SQNR more than keeping the one it ranks best.
"""

from __future__ import annotations

import csv
import io
import math
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, List, Optional, Sequence, Tuple

from calibration.stream import CalibrationSet
from calibration.voc import VOCDataset
from quantization.int8_sensitivity import LayerError
from runtimes.atomic import atomic_outputs, atomic_write_text, check_output_dir
from runtimes.metadata import ModelMetadata

DEFAULT_WORST = 3
FILES = ("int8_report.md", "int8_report.csv", "int8_report.png")


@dataclass
class KeptAlone:
    """The model with one more layer (``name``) kept in float."""

    name: str
    output_sqnr_db: float
    map: Optional[float] = None  # VOC07 in [0, 1] on the validation split, when one was given


@dataclass
class SensitivityReport:
    title: str
    layers: List[LayerError]  # worst first
    output_sqnr_db: float  # the quantized model's network outputs against FP32 (mean over outputs), check frames
    frames: int  # calibration frames the layers were measured and ranked on
    check_frames: int  # other calibration frames the check and the kept-alone effects are measured on
    kept_alone: List[KeptAlone] = field(default_factory=list)  # the worst few, then the best (the control)
    map: Optional[float] = None  # the quantized model's mAP
    fp32_map: Optional[float] = None
    validation: str = ""
    notes: List[str] = field(default_factory=list)

    @property
    def consistent(self) -> bool:
        """Keeping the worst-ranked layer in float raises the output SQNR more than keeping the best-ranked."""
        worst, best = self.kept_alone[0], self.kept_alone[-1]
        return worst.output_sqnr_db - self.output_sqnr_db > best.output_sqnr_db - self.output_sqnr_db

    def check_line(self) -> str:
        worst, best = self.kept_alone[0], self.kept_alone[-1]
        verdict = "passed" if self.consistent else "FAILED"
        return (f"consistency check {verdict}: keeping the worst-ranked layer in float moves the output SQNR "
                f"{worst.output_sqnr_db - self.output_sqnr_db:+.2f} dB, the best-ranked "
                f"{best.output_sqnr_db - self.output_sqnr_db:+.2f} dB")


def qdq_report(source: Path, meta: ModelMetadata, images: CalibrationSet, folder: Path,
               validation: Optional[VOCDataset] = None, method: str = "minmax", keep_in_float: Sequence[str] = (),
               worst: int = DEFAULT_WORST, frames: int = 32, ranges_cache: Optional[Path] = None,
               log: Callable[[str], None] = print, show_progress: bool = True) -> SensitivityReport:
    """The report of the Q/DQ model of ``source`` (with ``keep_in_float`` already kept in float), written to
    ``folder``. ``ranges_cache`` reuses calibrated ranges (quantization/qdq_onnx.py)."""
    from quantization.int8_sensitivity import layer_errors, output_sqnr_db, sensitivity_frames
    from quantization.qdq_onnx import build_qdq_onnx

    Path(folder).mkdir(parents=True, exist_ok=True)
    check_output_dir(Path(folder) / FILES[0])
    work = Path(tempfile.mkdtemp(prefix=".int8_report.", dir=folder))
    try:
        ranges = Path(ranges_cache) if ranges_cache else work / "ranges.json"

        def quantize(kept: Sequence[str], name: str) -> Path:
            return build_qdq_onnx(source, meta, images, work / name, method, show_progress=show_progress,
                                  keep_in_float=list(keep_in_float) + list(kept), ranges_cache=ranges).path

        model = quantize((), "model.onnx")
        ranking, check = _halves(sensitivity_frames(images, meta, frames))
        log(f"INT8 report: per-layer error on {len(ranking)} calibration frames ...")
        layers = layer_errors(source, model, ranking, show_progress)
        report = SensitivityReport(f"Q/DQ INT8 ({method}) of {Path(source).name}", layers,
                                   output_sqnr_db(source, model, check)["mean"], len(ranking), len(check))
        if keep_in_float:
            report.notes.append(f"already kept in float: {', '.join(keep_in_float)}")
        _measure_kept_alone(report, source, model, worst, validation, _onnx_map, log,
                            lambda name, i: quantize([name], f"alone{i}.onnx"),
                            lambda variant: output_sqnr_db(source, variant, check)["mean"])
        write_report(report, Path(folder))
        return report
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _measure_kept_alone(report: SensitivityReport, reference: Path, quantized: Path, worst: int,
                        validation: Optional[VOCDataset], model_map: Callable[[Path, VOCDataset], float],
                        log: Callable[[str], None], keep_alone: Callable[[str, int], Path],
                        output_sqnr: Callable[[Path], float]) -> None:
    """Fill ``report``'s mAP columns (``reference`` is the FP32 model, ``quantized`` the INT8 one) when there
    is a ``validation`` set, and its ``kept_alone`` rows: the ``worst`` ranked layers and the best one (the
    control), each kept alone in float by ``keep_alone(layer name, row index)``, with ``output_sqnr`` of
    that model and its mAP."""
    if validation is not None:
        report.validation = f"{validation.year_dir.name}/{validation.split}, {len(validation)} images"
        report.fp32_map, report.map = model_map(reference, validation), model_map(quantized, validation)
    layers = report.layers
    chosen = layers[:worst] + ([layers[-1]] if len(layers) > worst else [])
    for i, layer in enumerate(chosen):
        log(f"  keeping {layer.name} alone in float ({i + 1}/{len(chosen)}) ...")
        variant = keep_alone(layer.name, i)
        kept = KeptAlone(layer.name, output_sqnr(variant))
        if validation is not None:
            kept.map = model_map(variant, validation)
        report.kept_alone.append(kept)


def _halves(frames: List[Any]) -> Tuple[List[Any], List[Any]]:
    """Frames to rank on and other frames to check on (the same one when there is only one)."""
    half = max(1, len(frames) // 2)
    return frames[:half], frames[half:] or frames[:half]


def _onnx_map(path: Path, validation: VOCDataset) -> float:
    from calibration.evaluation import evaluate_detector
    from runtimes.loader import load_detector

    return evaluate_detector(load_detector(path, "onnxruntime"), validation, show_progress=False).map


def _db(value: float) -> str:
    return "inf" if math.isinf(value) else f"{value:.2f}"


def markdown(report: SensitivityReport) -> str:
    effects = {k.name: k for k in report.kept_alone}
    lines = [f"# INT8 sensitivity: {report.title}", "",
             f"{len(report.layers)} quantized layers, ranked by how much the network outputs' SQNR against FP32 "
             f"rises with that layer alone in float (*gain*), over {report.frames} calibration frames; SQNR in dB, "
             f"higher is better. *alone*: the layer's own quantization, fed FP32 input; *in model*: its output "
             f"in the INT8 model against FP32's. The check and the last two columns use {report.check_frames} "
             f"other calibration frames: network outputs against FP32 {_db(report.output_sqnr_db)} dB."]
    if report.map is not None and report.fp32_map is not None:
        lines.append(f"mAP (VOC07, {report.validation}): FP32 {100 * report.fp32_map:.2f}, "
                     f"INT8 {100 * report.map:.2f}.")
    lines += [f"- {note}" for note in report.notes]
    if report.kept_alone:
        lines += ["", report.check_line() + "."]
    lines += ["", "| rank | layer (ONNX node) | gain dB | SQNR alone dB | SQNR in model dB | kept alone in float: "
              "output SQNR dB | kept alone in float: mAP (change) |", "|---|---|---|---|---|---|---|"]
    for rank, layer in enumerate(report.layers, 1):
        effect = effects.get(layer.name)
        out = _db(effect.output_sqnr_db) if effect else ""
        m = ""
        if effect and effect.map is not None and report.map is not None:
            m = f"{100 * effect.map:.2f} ({100 * (effect.map - report.map):+.2f})"
        lines.append(f"| {rank} | `{layer.name}` | {layer.float_gain_db:+.3f} | {_db(layer.alone_sqnr_db)} | "
                     f"{_db(layer.in_model_sqnr_db)} | {out} | {m} |")
    return "\n".join(lines) + "\n"


def csv_text(report: SensitivityReport) -> str:
    effects = {k.name: k for k in report.kept_alone}
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(["rank", "layer", "float_gain_db", "sqnr_alone_db", "sqnr_in_model_db", "kept_alone_output_sqnr_db",
                     "kept_alone_map_voc07", "model_output_sqnr_db", "model_map_voc07"])
    for rank, layer in enumerate(report.layers, 1):
        effect = effects.get(layer.name)
        writer.writerow([rank, layer.name, f"{layer.float_gain_db:.5f}", f"{layer.alone_sqnr_db:.4f}",
                         f"{layer.in_model_sqnr_db:.4f}",
                         f"{effect.output_sqnr_db:.4f}" if effect else "",
                         f"{effect.map:.5f}" if effect and effect.map is not None else "",
                         f"{report.output_sqnr_db:.4f}", f"{report.map:.5f}" if report.map is not None else ""])
    return buffer.getvalue()


def write_report(report: SensitivityReport, folder: Path) -> List[Path]:
    """The three files in ``folder``, each written atomically."""
    md, table, png = (Path(folder) / name for name in FILES)
    atomic_write_text(md, markdown(report))
    atomic_write_text(table, csv_text(report))
    written = [md, table]
    if _plot(report, png):
        written.append(png)
    return written


def _plot(report: SensitivityReport, path: Path) -> bool:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("note: matplotlib is not installed; no plot (pip install matplotlib)")
        return False
    layers = report.layers
    fig, (top, ax) = plt.subplots(2, 1, figsize=(12, 6.5), sharex=True, gridspec_kw={"height_ratios": [1, 1.4]})
    ranks = list(range(1, len(layers) + 1))
    top.bar(ranks, [e.float_gain_db for e in layers], color="#55a868")
    top.set_ylabel("outputs' SQNR gain\nalone in float (dB)")
    top.set_title(report.title, fontsize=10)
    finite = [(r, e) for r, e in zip(ranks, layers) if not math.isinf(e.alone_sqnr_db)]
    ax.bar([r for r, _ in finite], [e.alone_sqnr_db for _, e in finite], color="#4c72b0",
           label="alone (own quantization)")
    ax.plot([r for r, e in zip(ranks, layers) if not math.isinf(e.in_model_sqnr_db)],
            [e.in_model_sqnr_db for e in layers if not math.isinf(e.in_model_sqnr_db)], "o", ms=3, color="#dd8452",
            label="in the INT8 model")
    ax.axhline(report.output_sqnr_db, color="grey", ls="--", lw=1, label="network outputs")
    for kept in report.kept_alone:
        rank = next(i for i, e in enumerate(layers, 1) if e.name == kept.name)
        top.annotate(_short(kept.name), (rank, layers[rank - 1].float_gain_db), fontsize=7, rotation=30,
                     xytext=(2, 4), textcoords="offset points")
    ax.set_xlabel("layer, ranked most sensitive (left) to least")
    ax.set_ylabel("layer output SQNR vs FP32 (dB)")
    ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    with atomic_outputs(path) as (temp,):
        fig.savefig(temp, dpi=100, format="png")
    plt.close(fig)
    return True


def _short(name: str) -> str:
    """The last two path parts of an ONNX node name (/backbone/features.0/.../block.1.0/Conv -> block.1.0/Conv)."""
    return "/".join(name.strip("/").split("/")[-2:])


def summary_lines(report: SensitivityReport, folder: Path) -> List[str]:
    worst = ", ".join(f"{e.name} ({e.float_gain_db:+.2f} dB)" for e in report.layers[:3])
    lines = [f"INT8 report in {folder}: {', '.join(FILES)}", f"  worst layers: {worst}"]
    if report.kept_alone:
        lines.append("  " + report.check_line())
    return lines



def openvino_report(source: Path, meta: ModelMetadata, images: CalibrationSet, folder: Path,
                    validation: Optional[VOCDataset] = None, worst: int = DEFAULT_WORST, frames: int = 32,
                    log: Callable[[str], None] = print) -> SensitivityReport:
    """The report of the OpenVINO INT8 IR of ``source`` (NNCF with the build's settings, host NMS), written to
    ``folder``; a layer kept alone in float is that IR with the layer's FakeQuantize bypassed and its FP32
    weights back (quantization/openvino_sensitivity.py), so no other layer's quantization moves."""
    from calibration.stream import CalibrationStream
    from export.openvino_build import build_openvino
    from quantization.openvino_sensitivity import (
        ir_metadata_of,
        keep_layer_in_float,
        openvino_layer_errors,
        openvino_output_sqnr_db,
    )
    from runtimes.preprocess import Preprocessor

    Path(folder).mkdir(parents=True, exist_ok=True)
    check_output_dir(Path(folder) / FILES[0])
    work = Path(tempfile.mkdtemp(prefix=".int8_report.", dir=folder))
    try:
        quiet = lambda _: None
        fp32 = build_openvino(source, meta, "fp32", work / "fp32.xml", log=quiet).path
        int8 = build_openvino(source, meta, "int8", work / "int8.xml", images, log=quiet).path
        stream = CalibrationStream(images, Preprocessor(ir_metadata_of(fp32)), limit=frames)
        # What the IR takes (resized pixels; it normalises itself).
        ranking, check = _halves([stream.load(p) for p in stream.paths])
        log(f"INT8 report: per-layer error on {len(ranking)} calibration frames ...")
        layers = openvino_layer_errors(fp32, int8, ranking)
        report = SensitivityReport(f"OpenVINO INT8 (NNCF, mixed preset) of {Path(source).name}", layers,
                                   openvino_output_sqnr_db(fp32, int8, check)["mean"], len(ranking), len(check))
        _measure_kept_alone(report, fp32, int8, worst, validation, _openvino_map, log,
                            lambda name, i: keep_layer_in_float(int8, fp32, name, work / f"alone{i}.xml"),
                            lambda variant: openvino_output_sqnr_db(fp32, variant, check)["mean"])
        write_report(report, Path(folder))
        return report
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _openvino_map(xml: Path, validation: VOCDataset) -> float:
    from calibration.evaluation import evaluate_detector
    from runtimes.loader import load_detector

    detector = load_detector(xml, "openvino")
    try:
        return evaluate_detector(detector, validation, show_progress=False).map
    finally:
        detector.close()
