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

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from runtimes.cli import run_cli
from runtimes.errors import UserError

TARGETS = ("auto", "onnx", "openvino", "tensorrt")
DEFAULT_OUTPUT = Path(__file__).resolve().parents[1] / "outputs"


@dataclass
class ModelSource:
    onnx: Path
    stem: str
    description: str
    is_demo: bool


def tensorrt_available() -> Optional[str]:
    """None when TensorRT and a CUDA GPU are usable here, else the reason they are not."""
    try:
        import tensorrt  # noqa: F401
    except ImportError:
        return "TensorRT is not installed"
    try:
        import pycuda.driver as cuda

        cuda.init()
        if cuda.Device.count() == 0:
            return "no CUDA GPU"
    except ImportError:
        return "pycuda is not installed"
    except Exception as exc:  # pycuda raises its own LogicError/RuntimeError when no driver is present
        return f"no usable CUDA GPU ({exc})"
    return None


def choose_target(requested: str) -> str:
    if requested != "auto":
        return requested
    reason = tensorrt_available()
    # TensorRT engines are not built by this version yet: auto says what it found and uses OpenVINO.
    found = "TensorRT and a CUDA GPU found, but this version builds no engines yet" if reason is None else reason
    print(f"target: openvino ({found}; --target picks another)")
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
        return ModelSource(demo_onnx(), "ssdlite320_shapes", "demo model", True)
    if not args.arch:
        raise UserError("--arch is required with --checkpoint (ssd300_vgg16, ssd512_vgg16, "
                        "ssdlite320_mobilenet_v3_large)")
    out = output_dir / f"{Path(args.checkpoint).stem}.onnx"
    export_checkpoint(args.checkpoint, args.arch, out, args.num_classes, args.classes,
                      allow_pickle=args.allow_pickle, dynamic_batch=args.batch is not None)
    return ModelSource(out, out.stem, f"checkpoint {args.checkpoint} ({args.arch})", False)


def calibration_set(args: argparse.Namespace, source: ModelSource):
    from calibration.stream import select_images
    from calibration.synthetic import ensure_demo_dataset

    if args.calib_data is None:
        if not source.is_demo:
            raise UserError("--int8 needs calibration images for your model: pass --calib-data "
                            "(a VOC root or a folder of images)")
        root, split = ensure_demo_dataset(), args.calib_split or "train"
    else:
        root, split = Path(args.calib_data), args.calib_split or "trainval"
    images = select_images(root, args.calib_images, args.calib_seed, args.year, split)
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
    p.add_argument("--output", type=Path, default=DEFAULT_OUTPUT, help="output folder (default: outputs/)")
    trt = p.add_argument_group("TensorRT")
    trt.add_argument("--batch", help="dynamic batch profile MIN,OPT,MAX (default: static batch 1)")
    return p


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    output_dir = Path(args.output)
    if output_dir.exists() and not output_dir.is_dir():
        raise UserError(f"{output_dir}: --output must be a folder")
    try:
        output_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UserError(f"{output_dir}: cannot create the output folder ({exc.strerror}); "
                        "choose another --output") from None
    target = choose_target(args.target)
    precision = "int8" if args.int8 else "fp16" if args.fp16 else "fp32"
    source = resolve_model(args, output_dir)

    from export.onnx_model import load_onnx, read_metadata

    meta = read_metadata(load_onnx(source.onnx), str(source.onnx))
    if meta is None:
        raise UserError(f"{source.onnx}: no SSD metadata; convert it first with export/export_onnx.py --onnx-in")
    print(f"source: {source.description}: {meta.arch}, {meta.input_width}x{meta.input_height}, "
          f"{meta.num_classes - 1} classes")

    if target == "onnx":
        return _finish_onnx(source, output_dir)
    if target == "tensorrt":
        reason = tensorrt_available()
        if reason is not None:
            raise UserError(f"{reason}: on a Jetson use JetPack's Python with python3-libnvinfer and pycuda; "
                            "elsewhere use --target openvino")
        raise UserError("this version of the toolkit does not build TensorRT engines yet; build the ONNX "
                        "(--target onnx) and compile it with trtexec, or use --target openvino")
    return _build_openvino(args, source, meta, precision, output_dir)


def _finish_onnx(source: ModelSource, output_dir: Path) -> int:
    import shutil

    import numpy as np

    from runtimes.loader import load_detector

    out = output_dir / f"{source.stem}.onnx"
    if source.onnx.resolve() != out.resolve():
        from runtimes.atomic import atomic_outputs

        with atomic_outputs(out) as (tmp,):
            shutil.copyfile(source.onnx, tmp)
    detector = load_detector(out)
    dets = detector(np.full((480, 640, 3), 114, np.uint8))
    print(f"verified with ONNX Runtime: runs, {len(dets)} detections on a grey frame")
    print(f"wrote {out}")
    return 0


def _build_openvino(args: argparse.Namespace, source: ModelSource, meta, precision: str, output_dir: Path) -> int:
    from export.openvino_build import build_openvino, float_layers

    out = output_dir / f"{source.stem}_{precision}.xml"
    calibration = calibration_set(args, source) if precision == "int8" else None
    validation = validation_set(args, source, meta) if precision == "int8" else None
    report = build_openvino(source.onnx, meta, precision, out, calibration, validation, args.max_map_drop)
    print(f"built OpenVINO {precision.upper()} IR in {report.seconds:.1f} s: {out} (+ .bin)")
    if precision == "int8":
        import openvino as ov

        kept = float_layers(ov.Core().read_model(str(out)))
        shown = f" ({', '.join(kept[:6])}{', ...' if len(kept) > 6 else ''})" if kept else ""
        print(f"layers left in floating point: {len(kept)}{shown}")
        if validation is not None:
            _compare_with_fp32(source, out, validation, args)
    return 0


def _compare_with_fp32(source: ModelSource, int8_xml: Path, validation, args: argparse.Namespace) -> None:
    from calibration.evaluation import evaluate_detector
    from runtimes.loader import load_detector

    print(f"judging accuracy on {len(validation)} images ({validation.year_dir.name}/{validation.split}) ...")
    fp32 = evaluate_detector(load_detector(source.onnx, "openvino"), validation, show_progress=False).map
    int8 = evaluate_detector(load_detector(int8_xml), validation, show_progress=False).map
    budget = f" (budget {args.max_map_drop})" if args.max_map_drop is not None else ""
    print(f"mAP (VOC07): FP32 {100 * fp32:.2f}, INT8 {100 * int8:.2f}, drop {100 * (fp32 - int8):.2f} points{budget}")


if __name__ == "__main__":
    sys.exit(run_cli(main))
