"""Build a deployable detector: checkpoint -> ONNX -> TensorRT engine, OpenVINO IR, ONNX or Triton repository.

    python export/build_engine.py                      # the embedded demo model, best target found here
    python export/build_engine.py --int8               # INT8, calibrated on the demo data (or --calib-data)
    python export/build_engine.py --target openvino --int8 --checkpoint ssd.pth --arch ssd300_vgg16 \\
        --calib-data ~/data/VOC --calib-images 300 --output outputs/

With no model argument the embedded demo model (demo/ssdlite320_shapes.safetensors) is used, and INT8
calibrates on the demo data set's train split (generated into .cache/ on first use). Every build prints
what it used and records it in the output file. The work is export.build.build (docs/architecture.md).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Optional, Sequence

# The repository root replaces the script's own folder on the path: a module here (e.g. export/onnx_model.py)
# must not shadow a library's top-level module of the same name (onnxruntime's quantizer imports one).
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.pop(1)

from calibration.tensorrt_calibrator import ALGORITHMS
from export import build_request as spec
from export.build import build
from export.tensorrt_build import INT8_ROUTES, parse_batch
from export.triton_repo import TritonOptions
from importers.cli import add_import_arguments
from quantization.qdq_onnx import METHODS
from runtimes.cli import run_cli
from runtimes.errors import UserError
from runtimes.nms_options import NMS_MODES


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--target", choices=spec.TARGETS, default="auto",
                   help="auto: TensorRT when TensorRT and a CUDA GPU are present, else OpenVINO (default: auto)")
    prec = p.add_mutually_exclusive_group()
    prec.add_argument("--fp16", action="store_true", help="FP16 (default: FP32 on OpenVINO)")
    prec.add_argument("--int8", action="store_true", help="INT8, calibrated on --calib-data")
    p.add_argument("--output", type=Path, default=spec.DEFAULT_OUTPUT, help="output folder (default: outputs/)")
    p.add_argument("--nms", choices=NMS_MODES, default="host",
                   help="engine: decoding and NMS inside the engine or IR, which returns final detections "
                        "(TensorRT: EfficientNMS_TRT; OpenVINO: MulticlassNms, same results as host NMS); "
                        "default: %(default)s (NMS in the shared post-processor, thresholds adjustable per run)")
    for add_group in (_model_arguments, _int8_arguments, _tensorrt_arguments, _triton_arguments):
        add_group(p)
    return p


def _model_arguments(p: argparse.ArgumentParser) -> None:
    src = p.add_argument_group("model (default: the embedded demo model)")
    src.add_argument("--checkpoint", type=Path, help="PyTorch checkpoint (.pth/.pt/.safetensors)")
    src.add_argument("--arch", help="architecture of --checkpoint")
    src.add_argument("--num-classes", type=int, help="outputs incl. background (default: from the checkpoint)")
    src.add_argument("--classes", type=Path, help="class names file (default: VOC's 20 for 21 outputs)")
    src.add_argument("--onnx", type=Path, help="an ONNX file exported by export/export_onnx.py instead")
    src.add_argument("--allow-pickle", action="store_true", help="allow pickle checkpoints (trusted files only)")
    add_import_arguments(src)


def _int8_arguments(p: argparse.ArgumentParser) -> None:
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
    cal.add_argument("--max-float-layers", type=int, default=8, help="Q/DQ route with --max-map-drop: most Conv "
                     "layers kept in float before giving up (default: %(default)s)")
    cal.add_argument("--int8-report", nargs="?", const="", metavar="FOLDER",
                     help="per-layer INT8 sensitivity report (Markdown, CSV, plot) into FOLDER (default when "
                          "given bare: OUTPUT/NAME_int8_report)")


def _tensorrt_arguments(p: argparse.ArgumentParser) -> None:
    trt = p.add_argument_group("TensorRT (and the ONNX made for it with --target onnx)")
    trt.add_argument("--batch", help="a dynamic batch axis: TensorRT's profile MIN,OPT,MAX; ONNX and OpenVINO take "
                                     "1..any (default: static batch 1)")
    trt.add_argument("--int8-route", choices=INT8_ROUTES, default="auto",
                     help="implicit: TensorRT calibrator (TensorRT < 11); explicit: Q/DQ ONNX made here with ONNX "
                          "Runtime (any version); auto: implicit where it exists (default: %(default)s)")
    trt.add_argument("--calib-algorithm", choices=ALGORITHMS, default="entropy",
                     help="implicit route's calibrator (default: %(default)s)")
    trt.add_argument("--calib-batch", type=int, default=8, help="implicit route's images per calibration batch for "
                     "a dynamic-batch network (its calibration profile); a static-batch network calibrates at its "
                     "own batch (default: %(default)s)")
    trt.add_argument("--calib-cache", type=Path, help="implicit route's cache (default: OUTPUT/NAME.calib.cache)")
    trt.add_argument("--qdq-method", choices=METHODS, default="minmax",
                     help="explicit route's range estimator (default: %(default)s)")
    trt.add_argument("--workspace", type=int, default=1024, help="builder workspace in MiB (default: %(default)s)")
    trt.add_argument("--timing-cache", type=Path, help="timing cache (default: OUTPUT/timing-TRTVERSION.cache)")
    trt.add_argument("--dla-core", type=int, help="build for this DLA core, GPU fallback on (default: GPU only)")


def _triton_arguments(p: argparse.ArgumentParser) -> None:
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


def request_from(args: argparse.Namespace, argv: Sequence[str]) -> spec.BuildRequest:
    """The command line as a build request (``argv`` is recorded in engines as their rebuild command)."""
    if args.engine is not None and args.ir is not None:
        raise UserError("--target triton serves one model: pass one of --engine, --ir, --onnx, --checkpoint")
    try:
        preferred = [int(s) for s in args.preferred_batch.split(",") if s.strip()]
    except ValueError:
        raise UserError(f"--preferred-batch {args.preferred_batch}: give batch sizes as integers, e.g. 4,8") from None
    source = spec.SourceSpec(args.checkpoint, args.arch, args.num_classes, args.classes, args.onnx,
                             args.engine or args.ir, args.allow_pickle, args.input_size, args.preset, args.config)
    report = args.int8_report
    return spec.BuildRequest(
        source, args.target, "int8" if args.int8 else "fp16" if args.fp16 else "fp32",
        spec.CalibrationSpec(args.calib_data, args.calib_images, args.calib_seed, args.calib_split, args.year),
        spec.ValidationSpec(args.val_data, args.val_split, args.year),
        spec.Int8Spec(args.max_map_drop, args.max_float_layers, report is not None, Path(report) if report else None,
                 args.qdq_method),
        args.nms, parse_batch(args.batch), args.output,
        spec.TensorRTSpec(args.int8_route, args.calib_algorithm, args.calib_batch, args.calib_cache, args.workspace,
                     args.timing_cache, args.dla_core),
        TritonOptions(args.model_name or "", args.max_batch, args.dynamic_batching, preferred, args.queue_delay_us,
                      args.instance_count, args.instance_kind),
        ovms=args.ovms, command=list(argv))


def main(argv: Optional[Sequence[str]] = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    build(request_from(build_parser().parse_args(argv), argv))  # every step prints what it did
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main))
