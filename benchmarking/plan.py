"""The benchmark's plan: one row per runtime x precision available here, and the model file each row measures,
built (or reused, when it was built from the same inputs) with the toolkit's own build steps."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any, Dict, List, Optional

from runtimes.errors import UserError

RUNTIMES = ("pytorch", "onnxruntime", "openvino", "tensorrt")
PRECISIONS = ("fp32", "fp16", "int8")


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


def plan_rows(args: argparse.Namespace) -> List[Dict[str, Any]]:
    """One dict per requested runtime x precision: what to build/load, or why it is skipped."""
    rows = []
    for runtime in args.runtimes:
        for precision in args.precisions:
            row: Dict[str, Any] = {"runtime": runtime, "precision": precision,
                                   "nms": args.nms if runtime in ("openvino", "tensorrt") else "host"}
            reason = unavailable_reason(runtime)
            if reason is None and runtime == "pytorch" and precision != "fp32":
                reason = "pytorch rows are FP32 (the reference)"
            if reason is None and runtime == "pytorch" and args.checkpoint is None and args.models:
                reason = "no checkpoint given (--models has no PyTorch weights)"
            row["status"] = "planned" if reason is None else f"unavailable: {reason}"
            rows.append(row)
    return rows


def build_artifacts(rows: List[Dict[str, Any]], args: argparse.Namespace, output_dir: Path) -> None:
    """Give every planned row a model file, building (or reusing) it with the toolkit's build step."""
    from export.build_engine import ModelSource
    from export.onnx_model import load_onnx, read_metadata

    if args.checkpoint is None:
        from export.demo_model import DEMO_ARCH, DEMO_CHECKPOINT, demo_onnx

        checkpoint, arch, onnx_path = DEMO_CHECKPOINT, DEMO_ARCH, demo_onnx()
    else:
        from export.export_onnx import export_checkpoint

        checkpoint, arch = Path(args.checkpoint), args.arch
        onnx_path = output_dir / f"{checkpoint.stem}.onnx"
        export_checkpoint(checkpoint, arch, onnx_path, args.num_classes, args.classes)
    meta = read_metadata(load_onnx(onnx_path), str(onnx_path))
    if meta is None:
        raise UserError(f"{onnx_path}: no SSD metadata; export it with export/export_onnx.py")
    source = ModelSource(onnx_path, onnx_path.stem, str(checkpoint), args.checkpoint is None)
    calibration = None
    for row in rows:
        if row["status"] != "planned":
            continue
        try:
            if row["runtime"] == "pytorch":
                row.update(model=str(checkpoint), arch=arch, class_names=meta.class_names[1:])
            elif row["runtime"] == "onnxruntime":
                if row["precision"] == "int8" and calibration is None:
                    calibration = _calibration(args, source)
                row["model"] = str(_onnx_variant(onnx_path, meta, row["precision"], output_dir, calibration))
            elif row["runtime"] == "openvino":
                if row["precision"] == "int8" and calibration is None:
                    calibration = _calibration(args, source)
                row["model"] = str(_openvino_ir(onnx_path, meta, row["precision"], output_dir, calibration,
                                                row["nms"]))
            elif row["runtime"] == "tensorrt":
                row["model"] = str(_tensorrt_engine(onnx_path, row["precision"], output_dir, args))
        except UserError as exc:
            row["status"] = f"build failed: {exc}"


def _calibration(args: argparse.Namespace, source):
    from calibration.stream import calibration_images

    return calibration_images(args.calib_data, args.calib_images, demo=source.is_demo, verbose=False)


def _tensorrt_engine(onnx_path: Path, precision: str, output_dir: Path, args: argparse.Namespace) -> Path:
    """The engine for ``precision``, rebuilt unless one built here from the same ONNX and images exists."""
    from calibration.synthetic import ensure_demo_dataset
    from export.build_engine import main as build
    from export.build_engine import output_name
    from runtimes.hashing import sha256_file
    from runtimes.tensorrt_engine_file import read_engine

    engine = output_dir / output_name(onnx_path.stem, precision, args.nms, ".engine")
    calib = ["--calib-data", str(args.calib_data)] if args.calib_data else \
        ["--calib-data", str(ensure_demo_dataset(verbose=False)), "--calib-split", "train"]
    command = ["--target", "tensorrt", "--onnx", str(onnx_path), "--output", str(output_dir), "--nms", args.nms]
    if precision != "fp32":
        command.append(f"--{precision}")
    if precision == "int8":
        command += calib + ["--calib-images", str(args.calib_images)]
    if engine.is_file():
        try:
            record = read_engine(engine)[1]
            if record.build.get("source_onnx_sha256") == sha256_file(onnx_path) and \
                    record.build.get("command") == command:
                print(f"reusing {engine.name} (built from the same inputs)")
                return engine
        except UserError:
            pass
    print(f"building {engine.name} ...", flush=True)
    build(command)
    return engine


def _onnx_variant(onnx_path: Path, meta, precision: str, output_dir: Path, calibration) -> Path:
    """The ONNX ONNX Runtime runs at ``precision``: the exported FP32, the FP16 ONNX (export/fp16_onnx.py) or the
    Q/DQ INT8 ONNX (export/qdq_onnx.py, TensorRT's explicit route), rebuilt unless one made here from the same
    ONNX (and calibration, and Q/DQ recipe) exists."""
    from export.onnx_model import load_onnx, read_metadata
    from export.qdq_onnx import QDQ_SETTINGS
    from runtimes.hashing import sha256_file

    if precision == "fp32":
        return onnx_path
    out = output_dir / (f"{onnx_path.stem}_int8_qdq.onnx" if precision == "int8" else f"{onnx_path.stem}_fp16.onnx")
    if out.is_file():
        try:
            made = read_metadata(load_onnx(out), str(out))
        except UserError:
            made = None
        record = (made.extra.get("quantization" if precision == "int8" else "fp16_onnx") or {}) if made else {}
        same = record.get("source_onnx_sha256") == sha256_file(onnx_path)
        if precision == "int8":
            same = same and record.get("calibration") == calibration.record() and \
                record.get("recipe") == QDQ_SETTINGS["recipe"] and record.get("method") == "minmax" and \
                not record.get("kept_in_float")
        if same:
            print(f"reusing {out.name} (built from the same inputs)")
            return out
    print(f"building {out.name} ...", flush=True)
    if precision == "int8":
        from export.qdq_onnx import build_qdq_onnx

        build_qdq_onnx(onnx_path, meta, calibration, out, "minmax", show_progress=False)
    else:
        from export.fp16_onnx import build_fp16_onnx

        build_fp16_onnx(onnx_path, meta, out)
    return out


def _openvino_ir(onnx_path: Path, meta, precision: str, output_dir: Path, calibration, nms: str) -> Path:
    """The IR for ``precision``, rebuilt unless one made from the same ONNX (and calibration) exists."""
    from export.build_engine import output_name
    from export.openvino_build import RECIPE, build_openvino
    from runtimes.hashing import sha256_file

    in_graph_nms = nms == "engine"
    xml = output_dir / output_name(onnx_path.stem, precision, nms, ".xml")
    if xml.is_file() and xml.with_suffix(".bin").is_file():
        try:
            from runtimes.openvino_runner import OpenVINODetector

            record = OpenVINODetector(str(xml)).meta.extra.get("build", {})
            same = record.get("recipe") == RECIPE and record.get("source_onnx_sha256") == sha256_file(onnx_path) and (
                calibration is None or record.get("calibration") == calibration.record()) and \
                record.get("nms", "host") == nms
            if same:
                print(f"reusing {xml.name} (built from the same inputs)")
                return xml
        except UserError:
            pass
    print(f"building {xml.name} ...", flush=True)
    build_openvino(onnx_path, meta, precision, xml, calibration, log=lambda _: None, in_graph_nms=in_graph_nms)
    return xml
