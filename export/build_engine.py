"""Build a deployable detector: checkpoint -> ONNX -> TensorRT engine or OpenVINO IR.

    python export/build_engine.py                      # the embedded demo model, best target found here
    python export/build_engine.py --int8               # INT8, calibrated on the demo data (or --calib-data)
    python export/build_engine.py --target openvino --int8 --checkpoint ssd.pth --arch ssd300_vgg16 \\
        --calib-data ~/data/VOC --calib-images 300 --output outputs/

With no model argument the embedded demo model (demo/ssdlite320_shapes.safetensors) is used, and INT8
calibrates on the demo data set's train split (generated into .cache/ on first use). Every build prints
what it used and records it in the output file.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Sequence

# The repository root replaces the script's own folder on the path: a module here (e.g. export/onnx_model.py)
# must not shadow a library's top-level module of the same name (onnxruntime's quantizer imports one).
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.pop(1)

from calibration.tensorrt_calibrator import ALGORITHMS
from export.qdq_onnx import METHODS
from export.tensorrt_build import INT8_ROUTES, parse_batch
from runtimes.cli import run_cli
from runtimes.errors import UserError
from runtimes.nms_options import NMS_MODES

TARGETS = ("auto", "onnx", "openvino", "tensorrt", "triton")
DEFAULT_OUTPUT = Path(__file__).resolve().parents[1] / "outputs"


@dataclass
class ModelSource:
    onnx: Path
    stem: str
    description: str
    is_demo: bool


def output_name(stem: str, precision: str, nms: str, extension: str) -> str:
    """The file a build writes, STEM_PRECISION[_nms].EXT (apps/benchmark.py looks for the same names)."""
    return f"{stem}_{precision}{'_nms' if nms == 'engine' else ''}{extension}"


def choose_target(requested: str) -> str:
    if requested != "auto":
        return requested
    from runtimes.tensorrt_support import unavailable_reason

    reason = unavailable_reason()
    if reason is None:
        print("target: tensorrt (TensorRT and a CUDA GPU found; --target picks another)")
        return "tensorrt"
    print(f"target: openvino ({reason}; --target picks another)")
    return "openvino"


def resolve_model(args: argparse.Namespace, output_dir: Path) -> ModelSource:
    """The simplified ONNX model to build from (exported now unless --onnx names one)."""
    from export.export_onnx import export_checkpoint

    if args.onnx is not None:
        if args.checkpoint is not None:
            raise UserError("pass either --onnx or --checkpoint, not both")
        return ModelSource(Path(args.onnx), Path(args.onnx).stem, f"ONNX {args.onnx}", False)
    if args.checkpoint is None:
        from export.demo_model import DEMO_CHECKPOINT, demo_onnx

        print(f"model: the embedded demo model {DEMO_CHECKPOINT.relative_to(DEMO_CHECKPOINT.parents[1])} "
              "(pass --checkpoint or --onnx for your own)")
        dynamic = args.batch is not None  # a batch profile needs a dynamic batch axis to apply to
        return ModelSource(demo_onnx(dynamic_batch=dynamic), "ssdlite320_shapes", "demo model", True)
    if not args.arch:
        raise UserError("--arch is required with --checkpoint (ssd300_vgg16, ssd512_vgg16, "
                        "ssdlite320_mobilenet_v3_large)")
    out = output_dir / f"{Path(args.checkpoint).stem}.onnx"
    export_checkpoint(args.checkpoint, args.arch, out, args.num_classes, args.classes,
                      allow_pickle=args.allow_pickle, dynamic_batch=args.batch is not None)
    return ModelSource(out, out.stem, f"checkpoint {args.checkpoint} ({args.arch})", False)


def calibration_set(args: argparse.Namespace, source: ModelSource):
    from calibration.stream import calibration_images

    images = calibration_images(args.calib_data, args.calib_images, args.calib_seed, args.year, args.calib_split,
                                demo=source.is_demo)
    print(f"calibration: {images.describe()}")
    for line in images.skipped.lines() + images.notes.lines():
        print(f"  {line}")
    if len(images.paths) < args.calib_images:
        print(f"warning: only {len(images.paths)} usable calibration images (asked for {args.calib_images}); "
              f"calibrating on {len(images.paths)}")
    return images


def validation_set(args: argparse.Namespace, source: ModelSource, meta):
    """The split INT8 accuracy is judged on, or None where there is none."""
    from calibration.synthetic import ensure_demo_dataset
    from calibration.voc import VOCDataset

    root = args.val_data or (ensure_demo_dataset() if source.is_demo else None)
    if root is None:
        if args.max_map_drop is not None:
            raise UserError("--max-map-drop needs a validation split: pass --val-data (a VOC root)")
        return None
    names = [n for n in meta.class_names[1:]]
    return VOCDataset(Path(root), args.year, args.val_split, names)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--target", choices=TARGETS, default="auto",
                   help="auto: TensorRT when TensorRT and a CUDA GPU are present, else OpenVINO (default: auto)")
    prec = p.add_mutually_exclusive_group()
    prec.add_argument("--fp16", action="store_true", help="FP16 (default: FP32 on OpenVINO)")
    prec.add_argument("--int8", action="store_true", help="INT8, calibrated on --calib-data")
    src = p.add_argument_group("model (default: the embedded demo model)")
    src.add_argument("--checkpoint", type=Path, help="PyTorch checkpoint (.pth/.pt/.safetensors)")
    src.add_argument("--arch", help="architecture of --checkpoint")
    src.add_argument("--num-classes", type=int, help="outputs incl. background (default: from the checkpoint)")
    src.add_argument("--classes", type=Path, help="class names file (default: VOC's 20 for 21 outputs)")
    src.add_argument("--onnx", type=Path, help="an ONNX file exported by export/export_onnx.py instead")
    src.add_argument("--allow-pickle", action="store_true", help="allow pickle checkpoints (trusted files only)")
    cal = p.add_argument_group("INT8 calibration and validation")
    cal.add_argument("--calib-data", type=Path, help="VOC root or image folder (default with the demo model: "
                                                     "the demo data set)")
    cal.add_argument("--calib-images", type=int, default=300, help="images to calibrate on (default: %(default)s)")
    cal.add_argument("--calib-seed", type=int, default=0, help="sampling seed (default: %(default)s)")
    cal.add_argument("--calib-split", help="VOC split to calibrate on (default: trainval; train for the demo)")
    cal.add_argument("--year", default="2007", help="VOC year (default: %(default)s)")
    cal.add_argument("--val-data", type=Path, help="VOC root to judge INT8 accuracy on (default with the demo "
                                                   "model: the demo data set)")
    cal.add_argument("--val-split", default="val", help="validation split (default: %(default)s)")
    cal.add_argument("--max-map-drop", type=float, help="accuracy-aware INT8: keep sensitive layers in FP until "
                     "the mAP drop (VOC07 points) is at most this (default: off)")
    cal.add_argument("--max-float-layers", type=int, default=8,
                     help="Q/DQ route with --max-map-drop: most Conv layers kept in float before giving up "
                          "(default: %(default)s)")
    cal.add_argument("--int8-report", nargs="?", const="", metavar="FOLDER",
                     help="per-layer INT8 sensitivity report (Markdown, CSV, plot) into FOLDER (default when "
                          "given bare: OUTPUT/NAME_int8_report)")
    p.add_argument("--output", type=Path, default=DEFAULT_OUTPUT, help="output folder (default: outputs/)")
    p.add_argument("--nms", choices=NMS_MODES, default="host",
                   help="engine: decoding and NMS inside the engine or IR, which returns final detections "
                        "(TensorRT: EfficientNMS_TRT; OpenVINO: MulticlassNms, same results as host NMS); "
                        "default: %(default)s (NMS in the shared post-processor, thresholds adjustable per run)")
    trt = p.add_argument_group("TensorRT (and the ONNX made for it with --target onnx)")
    trt.add_argument("--batch", help="a dynamic batch axis: TensorRT's profile MIN,OPT,MAX; ONNX and OpenVINO take "
                                     "1..any (default: static batch 1)")
    trt.add_argument("--int8-route", choices=INT8_ROUTES, default="auto",
                     help="implicit: TensorRT calibrator (TensorRT < 11); explicit: Q/DQ ONNX made here with ONNX "
                          "Runtime (any version); auto: implicit where it exists (default: %(default)s)")
    trt.add_argument("--calib-algorithm", choices=ALGORITHMS, default="entropy",
                     help="implicit route's calibrator (default: %(default)s)")
    trt.add_argument("--calib-batch", type=int, default=8,
                     help="implicit route's images per calibration batch for a dynamic-batch network (its "
                          "calibration profile); a static-batch network calibrates at its own batch "
                          "(default: %(default)s)")
    trt.add_argument("--calib-cache", type=Path, help="implicit route's cache (default: OUTPUT/NAME.calib.cache)")
    trt.add_argument("--qdq-method", choices=METHODS, default="minmax",
                     help="explicit route's range estimator (default: %(default)s)")
    trt.add_argument("--workspace", type=int, default=1024, help="builder workspace in MiB (default: %(default)s)")
    trt.add_argument("--timing-cache", type=Path, help="timing cache (default: OUTPUT/timing-TRTVERSION.cache)")
    trt.add_argument("--dla-core", type=int, help="build for this DLA core, GPU fallback on (default: GPU only)")
    tri = p.add_argument_group("Triton model repository (--target triton; --output is the repository)")
    tri.add_argument("--engine", type=Path, help="a TensorRT .engine built by this toolkit (with its record)")
    tri.add_argument("--ir", type=Path, help="an OpenVINO .xml (+ .bin) built by this toolkit")
    tri.add_argument("--model-name", help="the served model's name (default: the model file's stem)")
    tri.add_argument("--max-batch", type=int, help="max_batch_size for a dynamic batch axis (default: the "
                     "engine profile's largest, else 8; a static batch is served as is)")
    tri.add_argument("--no-dynamic-batching", dest="dynamic_batching", action="store_false",
                     help="leave dynamic batching off (default: on for a dynamic batch axis)")
    tri.add_argument("--preferred-batch", default="", help="dynamic batching's preferred batch sizes, "
                     "comma-separated (default: none, Triton's choice)")
    tri.add_argument("--queue-delay-us", type=int, default=100,
                     help="dynamic batching's max queue delay in microseconds (default: %(default)s)")
    tri.add_argument("--instance-count", type=int, default=1, help="model instances (default: %(default)s)")
    tri.add_argument("--instance-kind", choices=("auto", "cpu", "gpu"),
                     help="instance kind (default: gpu for a plan, cpu for an IR, auto for ONNX)")
    tri.add_argument("--ovms", action="store_true", help="also write OpenVINO Model Server's config.json (IR only)")
    return p


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)  # recorded in engines as their rebuild command
    output_dir = Path(args.output)
    if output_dir.exists() and not output_dir.is_dir():
        raise UserError(f"{output_dir}: --output must be a folder")
    try:
        output_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UserError(f"{output_dir}: cannot create the output folder ({exc.strerror}); "
                        "choose another --output") from None
    target = choose_target(args.target)
    if args.batch is not None:
        parse_batch(args.batch)  # checked for every target: each takes a dynamic batch axis from it
    if target == "triton":
        return _build_triton(args, output_dir)
    precision = "int8" if args.int8 else "fp16" if args.fp16 else "fp32"
    source = resolve_model(args, output_dir)

    from export.onnx_model import require_metadata

    meta = require_metadata(source.onnx)
    print(f"source: {source.description}: {meta.arch}, {meta.input_width}x{meta.input_height}, "
          f"{meta.num_classes - 1} classes")

    _check_int8_options(args, target, precision)
    if target == "onnx":
        return _build_onnx(args, source, meta, precision, output_dir)
    if target == "tensorrt":
        return _build_tensorrt(args, source, meta, precision, output_dir)
    return _build_openvino(args, source, meta, precision, output_dir)


def _check_int8_options(args: argparse.Namespace, target: str, precision: str) -> None:
    """--max-map-drop and --int8-report: INT8 on OpenVINO or the Q/DQ route (--target onnx, TensorRT's explicit
    route), a budget of 0 or more."""
    asked = [flag for flag, value in (("--max-map-drop", args.max_map_drop), ("--int8-report", args.int8_report))
             if value is not None]
    if not asked:
        return
    if precision != "int8":
        raise UserError(f"{asked[0]} applies to INT8: add --int8")
    if args.max_map_drop is not None and args.max_map_drop < 0:
        raise UserError(f"--max-map-drop must be 0 or more (the VOC07 mAP points INT8 may lose), "
                        f"got {args.max_map_drop}")
    if args.max_float_layers < 1:
        raise UserError(f"--max-float-layers must be at least 1, got {args.max_float_layers}")
    if target not in ("onnx", "openvino", "tensorrt"):
        raise UserError(f"{asked[0]} applies to --target onnx, openvino or tensorrt")
    if target == "tensorrt":
        route = args.int8_route
        if route == "auto":
            from runtimes.tensorrt_support import Capabilities, parse_version, require_tensorrt

            route = Capabilities(parse_version(require_tensorrt())).default_int8_route()
        if route != "explicit":
            raise UserError(f"{asked[0]} with TensorRT covers the explicit INT8 route (the Q/DQ model), not the "
                            f"implicit calibrator this build uses: add --int8-route explicit")


def _qdq_model(args: argparse.Namespace, source: ModelSource, meta, output_dir: Path) -> Path:
    """The explicit INT8 route's Q/DQ ONNX (made here, or the --onnx given when it already is one), its
    accuracy against FP32 printed when a validation split exists."""
    from export.qdq_onnx import build_qdq_onnx
    from export.tensorrt_build import has_qdq

    if has_qdq(meta):
        if args.max_map_drop is not None or args.int8_report is not None:
            raise UserError(f"{source.onnx} is already a Q/DQ model: --max-map-drop and --int8-report start from "
                            "the FP32 ONNX; pass that to --onnx")
        print(f"INT8: {source.onnx} is already a Q/DQ model; building it as is")
        return source.onnx
    import shutil
    import tempfile

    out = output_dir / f"{source.stem}_int8_qdq.onnx"
    validation = validation_set(args, source, meta)  # first: a missing split is reported before any work
    images = calibration_set(args, source)
    # Ranges calibrated once, shared by the gate's mixes and the report's variants (which differ only in the
    # layers kept in float); removed with the folder, whatever happens.
    work = Path(tempfile.mkdtemp(prefix=f".{source.stem}.qdq.", dir=output_dir))
    try:
        ranges, kept = work / "ranges.json", []
        if args.max_map_drop is None:
            report = build_qdq_onnx(source.onnx, meta, images, out, args.qdq_method, ranges_cache=ranges)
            print(f"built the Q/DQ INT8 ONNX in {report.seconds:.1f} s: {out}")
            if validation is not None:
                _compare_with_fp32(source, out, validation, args, runtimes=("onnxruntime", "openvino"))
        else:
            kept = _gated_qdq(args, source, meta, images, validation, out, work)
        if args.int8_report is not None:
            from export.int8_report import qdq_report, summary_lines

            folder = Path(args.int8_report) if args.int8_report else output_dir / f"{source.stem}_int8_report"
            sensitivity = qdq_report(source.onnx, meta, images, folder, validation, args.qdq_method,
                                     keep_in_float=kept, ranges_cache=ranges)
            print("\n".join(summary_lines(sensitivity, folder)))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return out


def _gated_qdq(args: argparse.Namespace, source: ModelSource, meta, images, validation, out: Path,
               work: Path) -> list:
    """The Q/DQ model within --max-map-drop (export/qdq_gate.py), its cost in speed and a second opinion
    printed; returns the layers kept in float."""
    from export.int8_sensitivity import quantized_convs
    from export.onnx_model import load_onnx
    from export.qdq_gate import gate_qdq, openvino_latency_ms, other_split
    from export.qdq_onnx import build_qdq_onnx

    ranges = work / "ranges.json"
    gate = gate_qdq(source.onnx, meta, images, validation, out, args.max_map_drop, args.qdq_method,
                    args.max_float_layers, ranges_cache=ranges)
    plain = build_qdq_onnx(source.onnx, meta, images, work / "plain.onnx", args.qdq_method, show_progress=False,
                           ranges_cache=ranges).path
    total = len(quantized_convs(load_onnx(plain)))
    print(f"built the accuracy-gated Q/DQ INT8 ONNX in {gate.seconds:.0f} s: {out}")
    print(f"layers kept in float: {len(gate.kept)} of {total} Conv layers"
          + "".join(f"\n  {name}" for name in gate.kept))
    print(f"final drop (ONNX Runtime, {validation.year_dir.name}/{validation.split}): {gate.drop:.2f} points "
          f"(budget {args.max_map_drop}; plain Q/DQ {gate.steps[0].drop(gate.fp32_map):.2f})")
    if gate.kept:
        plain_ms, gated_ms = openvino_latency_ms([plain, out])
        print(f"cost in speed (OpenVINO CPU latency of the Q/DQ model, alternated in this run): plain "
              f"{plain_ms:.2f} ms, gated {gated_ms:.2f} ms ({gated_ms / plain_ms:.2f}x)")
    else:
        print("nothing kept in float: the plain Q/DQ model meets the budget (no cost in speed)")
    _compare_with_fp32(source, out, validation, args, runtimes=("openvino",), label="gated INT8")
    other = other_split(validation)
    if other is not None:
        print("on the split the gate did not see:")
        _compare_with_fp32(source, out, other, args, runtimes=("onnxruntime", "openvino"), label="gated INT8",
                           show_budget=False)
    return gate.kept


def _fp16_model(args: argparse.Namespace, source: ModelSource, meta, output_dir: Path) -> Path:
    """The FP16 ONNX (TensorRT 11's FP16 route), its accuracy against FP32 printed when a validation split
    exists."""
    from export.fp16_onnx import build_fp16_onnx

    out = output_dir / f"{source.stem}_fp16.onnx"
    seconds = build_fp16_onnx(source.onnx, meta, out)
    print(f"built the FP16 ONNX in {seconds:.1f} s: {out}")
    validation = validation_set(args, source, meta)
    if validation is not None:
        _compare_with_fp32(source, out, validation, args, runtimes=("openvino",), label="FP16")
    return out


def _with_nms(onnx_path: Path, output_dir: Path) -> Path:
    """``onnx_path`` with decoding and EfficientNMS_TRT appended (``--nms engine``)."""
    from export.efficient_nms import append_efficient_nms, save_with_plugin
    from export.onnx_model import load_onnx, require_metadata, write_metadata

    model = load_onnx(onnx_path)
    with_nms, nms_meta = append_efficient_nms(model, require_metadata(onnx_path))
    write_metadata(with_nms, nms_meta)
    out = output_dir / f"{onnx_path.stem}_nms.onnx"
    save_with_plugin(with_nms, out)
    print(f"appended decoding and EfficientNMS_TRT (score > {nms_meta.score_threshold}, IoU "
          f"{nms_meta.iou_threshold}, {nms_meta.max_detections} detections): {out}")
    return out


def _build_onnx(args: argparse.Namespace, source: ModelSource, meta, precision: str, output_dir: Path) -> int:
    """The ONNX to take to a device: FP32 as exported, the Q/DQ INT8 model (``--int8``) or the FP16 model
    (``--fp16``, what TensorRT 11 builds FP16 from), optionally with EfficientNMS appended (``--nms engine``)."""
    if precision == "int8":
        path = _qdq_model(args, source, meta, output_dir)
    elif precision == "fp16":
        path = _fp16_model(args, source, meta, output_dir)
    else:
        path = _copy_onnx(source, output_dir)
    if precision == "fp32":
        _verify_onnx(path)
    if args.nms == "engine":
        path = _with_nms(path, output_dir)
        print("note: ONNX Runtime and OpenVINO cannot run EfficientNMS_TRT; this file is for TensorRT")
    print(f"wrote {path}")
    return 0


def _build_tensorrt(args: argparse.Namespace, source: ModelSource, meta, precision: str, output_dir: Path) -> int:
    import shlex

    from export.onnx_model import require_metadata
    from export.tensorrt_build import (
        TensorRTOptions,
        build_engine,
        has_qdq,
        parse_batch,
        plan_build,
        timing_cache_name,
        trtexec_command,
    )
    from runtimes.hashing import sha256_file
    from runtimes.tensorrt_support import Capabilities, GPUIdentity, import_cuda, parse_version, require_tensorrt

    version = require_tensorrt()
    gpu = GPUIdentity.of_device(import_cuda(), 0)
    if has_qdq(meta) and precision != "int8":
        print(f"{source.onnx} is a Q/DQ model: building INT8")
        precision = "int8"
    options = TensorRTOptions(precision, args.int8_route, args.calib_algorithm, args.calib_batch, args.workspace,
                              parse_batch(args.batch), args.dla_core, args.nms)
    plan = plan_build(Capabilities(parse_version(version)), options, has_qdq(meta))
    print(f"TensorRT {version}: {precision.upper()}"
          + (f", INT8 route {plan.int8_route}" if plan.int8_route else "")
          + "".join(f"; {note}" for note in plan.notes))
    onnx_path, calibration = source.onnx, None
    if plan.onnx_variant == "qdq":
        onnx_path = _qdq_model(args, source, meta, output_dir)
    elif plan.onnx_variant == "fp16":
        onnx_path = _fp16_model(args, source, meta, output_dir)
    if plan.int8_route == "implicit":
        calibration = calibration_set(args, source)
    if args.nms == "engine":
        onnx_path = _with_nms(onnx_path, output_dir)
    build_meta = require_metadata(onnx_path)
    out = output_dir / output_name(source.stem, precision, args.nms, ".engine")
    timing = args.timing_cache or output_dir / timing_cache_name(version, gpu)
    calib_cache = args.calib_cache or output_dir / f"{source.stem}.calib.cache"
    rebuild = "python export/build_engine.py " + shlex.join(args.argv)
    record = {"source": source.description, "source_onnx_sha256": sha256_file(source.onnx), "command": args.argv}
    if calibration is not None:
        record["calibration"] = calibration.record()
    result = build_engine(onnx_path, build_meta, out, options, plan, calibration=calibration, calib_cache=calib_cache,
                          timing_cache=timing, rebuild_command=rebuild, record=record)
    print(f"built TensorRT {precision.upper()} engine in {result.seconds:.1f} s: {out} (+ {out.name}.json)")
    print("trtexec equivalent: " + trtexec_command(onnx_path, out, meta, options, plan, timing, result.profile,
                                                   result.calib_table))
    return 0


def _copy_onnx(source: ModelSource, output_dir: Path) -> Path:
    import shutil

    out = output_dir / f"{source.stem}.onnx"
    if source.onnx.resolve() != out.resolve():
        from runtimes.atomic import atomic_outputs

        with atomic_outputs(out) as (tmp,):
            shutil.copyfile(source.onnx, tmp)
    return out


def _verify_onnx(path: Path) -> None:
    import numpy as np

    from runtimes.loader import load_detector

    dets = load_detector(path)(np.full((480, 640, 3), 114, np.uint8))
    print(f"verified with ONNX Runtime: runs, {len(dets)} detections on a grey frame")


def _build_openvino(args: argparse.Namespace, source: ModelSource, meta, precision: str, output_dir: Path) -> int:
    from export.openvino_build import build_openvino, float_layers

    in_graph_nms = args.nms == "engine"
    out = output_dir / output_name(source.stem, precision, args.nms, ".xml")
    calibration = calibration_set(args, source) if precision == "int8" else None
    validation = validation_set(args, source, meta) if precision == "int8" else None
    report = build_openvino(source.onnx, meta, precision, out, calibration, validation, args.max_map_drop,
                            in_graph_nms=in_graph_nms)
    print(f"built OpenVINO {precision.upper()} IR in {report.seconds:.1f} s: {out} (+ .bin)"
          + (f"; decoding and MulticlassNms inside (score > {meta.score_threshold}, IoU {meta.iou_threshold}, "
             f"{meta.max_detections} detections)" if in_graph_nms else ""))
    if precision == "int8":
        import openvino as ov

        kept = float_layers(ov.Core().read_model(str(out)))
        shown = f" ({', '.join(kept[:6])}{', ...' if len(kept) > 6 else ''})" if kept else ""
        print(f"layers left in floating point: {len(kept)}{shown}")
        if validation is not None:
            _compare_with_fp32(source, out, validation, args)
        if args.int8_report is not None:
            from export.int8_report import openvino_report, summary_lines

            folder = Path(args.int8_report) if args.int8_report else output_dir / f"{source.stem}_int8_report"
            if args.max_map_drop is not None or in_graph_nms:
                print("note: the INT8 report analyses NNCF's plain quantization of the network (host NMS), "
                      "not the accuracy-aware or in-graph-NMS IR written")
            assert calibration is not None  # INT8 has it
            sensitivity = openvino_report(source.onnx, meta, calibration, folder, validation)
            print("\n".join(summary_lines(sensitivity, folder)))
    return 0


def _compare_with_fp32(source: ModelSource, quantized: Path, validation, args: argparse.Namespace,
                      runtimes=("openvino",), label: str = "INT8", show_budget: bool = True) -> None:
    from calibration.evaluation import evaluate_detector
    from runtimes.loader import load_detector

    print(f"judging accuracy on {len(validation)} images ({validation.year_dir.name}/{validation.split}) ...")
    budget = f" (budget {args.max_map_drop})" if args.max_map_drop is not None and show_budget else ""
    for runtime in runtimes:
        fp32 = evaluate_detector(load_detector(source.onnx, runtime), validation, show_progress=False).map
        reduced = evaluate_detector(load_detector(quantized, runtime), validation, show_progress=False).map
        print(f"mAP (VOC07) on {runtime}: FP32 {100 * fp32:.2f}, {label} {100 * reduced:.2f}, "
              f"drop {100 * (fp32 - reduced):.2f} points{budget}")


def _build_triton(args: argparse.Namespace, output_dir: Path) -> int:
    """A Triton model repository in ``output_dir`` serving --engine, --ir, --onnx or the checkpoint (demo)
    model exported with a dynamic batch axis (export/triton_repo.py)."""
    import tempfile

    from export.triton_repo import TritonOptions, server_commands, write_repository
    from runtimes.served_model import describe

    given = [p for p in (args.engine, args.ir, args.onnx, args.checkpoint) if p is not None]
    if len(given) > 1:
        raise UserError("--target triton serves one model: pass one of --engine, --ir, --onnx, --checkpoint")
    if (args.int8 or args.fp16) and not given:
        raise UserError("--target triton packages a built model: build it first (python export/build_engine.py "
                        "--target openvino --int8, or --target tensorrt on the device) and pass --ir or --engine")
    try:
        preferred = [int(s) for s in args.preferred_batch.split(",") if s.strip()]
    except ValueError:
        raise UserError(f"--preferred-batch {args.preferred_batch}: give batch sizes as integers, e.g. 4,8") from None
    with tempfile.TemporaryDirectory(prefix="ssd-edge-triton-") as scratch:
        if args.engine is not None or args.ir is not None:
            path = Path(args.engine or args.ir)
            stem = path.stem
        else:
            # An exported checkpoint gets a dynamic batch axis, so Triton can batch requests; resolve_model
            # exports dynamically when a batch profile is asked for.
            exported = argparse.Namespace(**{**vars(args), "batch": args.batch or "dynamic"})
            source = resolve_model(exported, Path(scratch))
            path, stem = source.onnx, source.stem
        model = describe(path)
        name = args.model_name or stem
        options = TritonOptions(name, args.max_batch, args.dynamic_batching, preferred, args.queue_delay_us,
                                args.instance_count, args.instance_kind)
        written = write_repository(model, output_dir, options, ovms=args.ovms)
    print(f"wrote the Triton model {name} ({model.kind}): {written.config} and {written.model_files[0]}"
          + (f"; OpenVINO Model Server config: {written.ovms_config}" if written.ovms_config else ""))
    print("serve it with:\n  " + "\n  ".join(server_commands(written)))
    print(f"clients: load_detector('http://HOST:8000/{name}') or 'grpc://HOST:8001/{name}'")
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main))
