"""INT8 mAP and build time for each calibration algorithm and image count a route offers.

Routes and their algorithms: ``qdq`` (the Q/DQ ONNX of TensorRT's explicit route, judged with ONNX
Runtime): ONNX Runtime's MinMax, Entropy and Percentile calibrators; ``openvino`` (the INT8 IR): NNCF's
``mixed`` (the build's default: symmetric weights, asymmetric activations) and ``performance`` (symmetric
both) presets. Every point is a fresh build from the first N images of one seeded calibration selection (so
larger sets contain the smaller ones), scored on one validation split against the FP32 model on the same
runtime. Results as :class:`SweepPoint` rows; :func:`write_sweep` writes the table, CSV and plot.
"""

from __future__ import annotations

import csv
import io
import shutil
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence

from calibration.stream import CalibrationSet
from calibration.voc import VOCDataset
from runtimes.atomic import atomic_outputs, atomic_write_text
from runtimes.errors import UserError
from runtimes.metadata import ModelMetadata

ALGORITHMS: Dict[str, Sequence[str]] = {"qdq": ("minmax", "entropy", "percentile"),
                                        "openvino": ("mixed", "performance")}
JUDGE = {"qdq": "onnxruntime", "openvino": "openvino"}
DEFAULT_COUNTS = (32, 100, 300, 1000)
FILES = ("calibration_sweep.md", "calibration_sweep.csv", "calibration_sweep.png")


@dataclass
class SweepPoint:
    route: str
    algorithm: str
    images: int
    build_seconds: float
    map: float  # VOC07 in [0, 1]
    fp32_map: float

    @property
    def drop(self) -> float:
        return 100.0 * (self.fp32_map - self.map)


def first_images(images: CalibrationSet, count: int) -> CalibrationSet:
    """The first ``count`` of ``images`` as a calibration set of its own (its record names the count)."""
    import hashlib

    digest = hashlib.sha256()
    for path in images.paths[:count]:
        digest.update(path.name.encode() + b"\0" + hashlib.sha256(path.read_bytes()).digest())
    return CalibrationSet(images.source, images.paths[:count], count, images.seed, digest.hexdigest())


def _map(model: Path, runtime: str, validation: VOCDataset) -> float:
    from calibration.evaluation import evaluate_detector
    from runtimes.loader import load_detector

    detector = load_detector(model, runtime)
    try:
        return evaluate_detector(detector, validation, show_progress=False).map
    finally:
        close = getattr(detector, "close", None)
        if close is not None:
            close()


def _openvino_int8(fp32_xml: Path, images: CalibrationSet, preset: str, out: Path) -> None:
    """NNCF post-training quantization of the FP32 IR (normalisation in its graph, as the build makes it)
    with ``preset``, saved with the IR's own metadata."""
    import nncf
    import openvino as ov

    from calibration.stream import CalibrationStream
    from quantization.openvino_sensitivity import ir_metadata_of, save_quantized_ir
    from runtimes.preprocess import Preprocessor

    model = ov.Core().read_model(str(fp32_xml))
    stream = CalibrationStream(images, Preprocessor(ir_metadata_of(fp32_xml)))  # what the IR takes
    dataset = nncf.Dataset(stream.paths, stream.load)
    presets = {"mixed": nncf.QuantizationPreset.MIXED, "performance": nncf.QuantizationPreset.PERFORMANCE}
    quantized = nncf.quantize(model, dataset, preset=presets[preset], subset_size=len(images.paths),
                              fast_bias_correction=True)
    save_quantized_ir(quantized, fp32_xml, out)


def sweep(source: Path, meta: ModelMetadata, images: CalibrationSet, validation: VOCDataset,
          routes: Sequence[str] = ("qdq", "openvino"), counts: Sequence[int] = DEFAULT_COUNTS,
          algorithms: Optional[Mapping[str, Sequence[str]]] = None, work_dir: Optional[Path] = None,
          log: Callable[[str], None] = print,
          on_point: Optional[Callable[[List[SweepPoint]], Any]] = None) -> List[SweepPoint]:
    """Build and score every (route, algorithm, image count); ``images`` must hold max(``counts``) images
    (fewer: the larger counts are dropped, with a note). ``on_point`` sees the points so far after each one
    (the CLI rewrites its table, so a long sweep cut short keeps what it measured)."""
    from export.openvino_build import build_openvino
    from quantization.qdq_onnx import build_qdq_onnx

    algorithms = algorithms or ALGORITHMS
    usable = [c for c in counts if c <= len(images.paths)]
    if not usable:
        raise UserError(f"only {len(images.paths)} calibration images: ask for counts up to that (--counts)")
    if len(usable) < len(counts):
        log(f"note: only {len(images.paths)} calibration images; skipping counts "
            f"{', '.join(str(c) for c in counts if c not in usable)}")
    work = Path(tempfile.mkdtemp(prefix=".calibration_sweep.", dir=work_dir))
    points: List[SweepPoint] = []
    try:
        fp32 = {"qdq": source}
        if "openvino" in routes:
            fp32["openvino"] = build_openvino(source, meta, "fp32", work / "fp32.xml", log=lambda _: None).path
        total = sum(len(algorithms[r]) for r in routes) * len(usable)
        for route in routes:
            runtime = JUDGE[route]
            reference = _map(fp32[route], runtime, validation)
            log(f"{route}: FP32 mAP {100 * reference:.2f} on {runtime} ({len(validation)} images, "
                f"{validation.year_dir.name}/{validation.split})")
            for algorithm in algorithms[route]:
                for count in usable:
                    subset = first_images(images, count)
                    start = time.monotonic()
                    if route == "qdq":
                        model = work / f"{algorithm}_{count}.onnx"
                        build_qdq_onnx(source, meta, subset, model, algorithm, show_progress=False)
                    else:
                        model = work / f"{algorithm}_{count}.xml"
                        _openvino_int8(fp32["openvino"], subset, algorithm, model)
                    seconds = time.monotonic() - start
                    point = SweepPoint(route, algorithm, count, seconds, _map(model, runtime, validation), reference)
                    points.append(point)
                    log(f"  [{len(points)}/{total}] {route} {algorithm} {count} images: mAP {100 * point.map:.2f} "
                        f"(drop {point.drop:.2f}), built in {seconds:.1f} s")
                    for leftover in work.glob(model.stem + ".*"):
                        leftover.unlink()
                    if on_point is not None:
                        on_point(points)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return points


def markdown(points: Sequence[SweepPoint], title: str) -> str:
    counts = sorted({p.images for p in points})
    lines = [f"# Calibration sweep: {title}", "",
             "INT8 mAP (VOC07) / drop against FP32 on the same runtime / build seconds, per calibration algorithm "
             "and image count.", "",
             "| route (judged on) | algorithm | " + " | ".join(f"{c} images" for c in counts) + " |",
             "|---|---|" + "---|" * len(counts)]
    keys = []
    for p in points:
        if (p.route, p.algorithm) not in keys:
            keys.append((p.route, p.algorithm))
    for route, algorithm in keys:
        cells = []
        for count in counts:
            point = next((q for q in points if (q.route, q.algorithm, q.images) == (route, algorithm, count)), None)
            cells.append(f"{100 * point.map:.2f} / {point.drop:+.2f} / {point.build_seconds:.0f} s" if point else "")
        fp32 = next(q.fp32_map for q in points if q.route == route)
        lines.append(f"| {route} ({JUDGE[route]}, FP32 {100 * fp32:.2f}) | {algorithm} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def csv_text(points: Sequence[SweepPoint]) -> str:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=["route", "algorithm", "images", "build_seconds", "map", "fp32_map",
                                                "drop_points"])
    writer.writeheader()
    for p in points:
        writer.writerow(dict(asdict(p), drop_points=round(p.drop, 4)))
    return buffer.getvalue()


def write_sweep(points: Sequence[SweepPoint], folder: Path, title: str, plot: bool = True) -> List[Path]:
    """calibration_sweep.md, .csv and (``plot``) .png in ``folder``, each written atomically."""
    folder.mkdir(parents=True, exist_ok=True)
    md, table, png = (folder / name for name in FILES)
    atomic_write_text(md, markdown(points, title))
    atomic_write_text(table, csv_text(points))
    written = [md, table]
    if not plot:
        return written
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("note: matplotlib is not installed; no plot (pip install matplotlib)")
        return written
    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 4.5))
    keys = sorted({(p.route, p.algorithm) for p in points})
    for route, algorithm in keys:
        mine = sorted((p for p in points if (p.route, p.algorithm) == (route, algorithm)), key=lambda p: p.images)
        label = f"{route} {algorithm}"
        left.plot([p.images for p in mine], [100 * p.map for p in mine], "o-", label=label)
        right.plot([p.images for p in mine], [p.build_seconds for p in mine], "o-", label=label)
    for route in sorted({p.route for p in points}):
        fp32 = next(p.fp32_map for p in points if p.route == route)
        left.axhline(100 * fp32, ls="--", lw=1, color="grey")
        left.annotate(f"FP32 ({JUDGE[route]})", (min(p.images for p in points), 100 * fp32), fontsize=7)
    for ax, label in ((left, "INT8 mAP VOC07 (%)"), (right, "build time (s)")):
        ax.set_xscale("log")
        ax.set_xlabel("calibration images")
        ax.set_ylabel(label)
        ax.legend(fontsize=8)
    left.set_title(title, fontsize=10)
    fig.tight_layout()
    with atomic_outputs(png) as (temp,):
        fig.savefig(temp, dpi=100, format="png")
    plt.close(fig)
    return written + [png]
