"""Latency and accuracy of every runtime x precision available on this machine, in one table.

    python apps/benchmark.py                                   # the demo model, everything available here
    python apps/benchmark.py --checkpoint ssd.pth --arch ssd300_vgg16 --voc-root ~/data/VOC
    python apps/benchmark.py --models a.onnx b_int8.xml c.engine --runtimes onnxruntime,openvino

From a checkpoint (or the demo model) it builds what is missing with the toolkit's own build step, reusing
builds whose recorded inputs still match, then measures each row in a fresh process (so its peak memory
is its own): latency p50/p90/p99/mean of preprocessing, inference, post-processing and end to end, FPS at
batch 1, throughput at the chosen async depth, peak RSS, file size and VOC07 mAP. A PyTorch eager row is
the baseline every speed-up is measured against, in the same run. OpenVINO rows are checked against
OpenVINO's own benchmark_app on the same IR. Unavailable combinations are listed with the reason.

Outputs in --output-dir: benchmark.md (the table), benchmark.csv, benchmark.json (every raw figure, the
environment and the command), benchmark.png (latency distributions; mAP against latency).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

# The repository root replaces the script's own folder on the path: a module here (e.g. export/onnx_model.py)
# must not shadow a library's top-level module of the same name (onnxruntime's quantizer imports one).
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.pop(1)

from runtimes.cli import run_cli
from runtimes.errors import UserError

RUNTIMES = ("pytorch", "onnxruntime", "openvino", "tensorrt")
PRECISIONS = ("fp32", "fp16", "int8")
DEFAULT_OUTPUT = Path(__file__).resolve().parents[1] / "outputs" / "benchmark"
DEFAULT_BUILDS = Path(__file__).resolve().parents[1] / "outputs" / "models"


# -- what to measure -------------------------------------------------------------------------------------

def unavailable_reason(runtime: str) -> Optional[str]:
    modules = {"pytorch": "torch", "onnxruntime": "onnxruntime", "openvino": "openvino"}
    if runtime == "tensorrt":
        from runtimes.tensorrt_support import unavailable_reason as tensorrt_unavailable

        return tensorrt_unavailable()
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
    from calibration.stream import select_images
    from calibration.synthetic import ensure_demo_dataset

    root = Path(args.calib_data) if args.calib_data else ensure_demo_dataset(verbose=False)
    split = "train" if args.calib_data is None else "trainval"
    return select_images(root, args.calib_images, 0, "2007", split)


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


# -- measuring one row (in its own process) ----------------------------------------------------------------

class TorchDetector:
    """PyTorch eager on the same pre- and post-processing: the baseline row."""

    @staticmethod
    def create(checkpoint: str, arch: str, class_names: List[str]):
        import torch

        from export.architectures import RawHeadOutputs, describe
        from export.checkpoint import load_checkpoint
        from runtimes.detector import Detector

        model = load_checkpoint(Path(checkpoint), arch, len(class_names) + 1)
        meta = describe(model, arch, class_names)
        net = RawHeadOutputs(model).eval()

        class _Torch(Detector):
            backend = "pytorch"

            def infer(self, batch):
                with torch.no_grad():
                    reg, cls = net(torch.from_numpy(batch))
                return {"bbox_regression": reg.numpy(), "cls_logits": cls.numpy()}

        return _Torch(meta, checkpoint)


def _file_size_mb(row: Dict[str, Any]) -> float:
    path = Path(row["model"])
    files = [path, path.with_suffix(".bin")] if path.suffix == ".xml" else [path]
    return sum(f.stat().st_size for f in files if f.is_file()) / 1e6


def measure_row(row: Dict[str, Any], settings: Dict[str, Any]) -> Dict[str, Any]:
    """Time one row; runs in a fresh process so that ru_maxrss is this row's peak memory."""
    from apps.stats import fps, iterations_for, summarize
    from calibration.images import read_image
    from runtimes.loader import load_detector

    if row["runtime"] == "pytorch":
        import torch

        torch.set_num_threads(os.cpu_count() or 1)
        detector = TorchDetector.create(row["model"], row["arch"], row["class_names"])
    else:
        detector = load_detector(row["model"], row["runtime"])
    frames = [read_image(Path(p))[0] for p in settings["frames"]]
    for i in range(settings["warmup"]):
        detector(frames[i % len(frames)])
    start = time.perf_counter()
    detector(frames[0])
    iterations = settings["iterations"] or iterations_for(1000 * (time.perf_counter() - start))
    stages: Dict[str, List[float]] = {"preprocess": [], "inference": [], "postprocess": [], "end_to_end": []}
    for i in range(iterations):
        t0 = time.perf_counter()
        detector(frames[i % len(frames)])
        stages["end_to_end"].append(time.perf_counter() - t0)
        for name, seconds in detector.last_timings.items():
            stages[name].append(seconds)
    result: Dict[str, Any] = dict(row, status="ok", device=detector.device, iterations=iterations,
                                  latency_ms={k: summarize(v) for k, v in stages.items()},
                                  raw_end_to_end_ms=[round(1000 * s, 4) for s in stages["end_to_end"]],
                                  size_mb=round(_file_size_mb(row), 2))
    result["fps"] = fps(result["latency_ms"]["end_to_end"]["mean"])
    result["throughput_fps"], result["throughput_note"] = _throughput(row, detector, frames, settings["batch"])
    if settings.get("voc_root"):
        from calibration.evaluation import evaluate_detector
        from calibration.voc import VOCDataset

        data = VOCDataset(Path(settings["voc_root"]), settings["year"], settings["split"],
                          list(detector.meta.class_names[1:]))
        result["map_voc07"] = evaluate_detector(detector, data, show_progress=False).map
    if row["runtime"] == "openvino" and settings.get("benchmark_app"):
        result.update(benchmark_app_cross_check(detector, row["model"], frames[0]))
    result["peak_rss_mb"] = peak_rss_mb()
    detector.close()
    return result


def benchmark_app_cross_check(detector, xml: str, frame, rounds: int = 3, calls: int = 100) -> Dict[str, Any]:
    """Our inference call against benchmark_app on the same IR, like with like: one prepared frame, calls
    back to back (as benchmark_app runs its requests), the two alternating ``rounds`` times, because on a
    shared machine the speed drifts over seconds and only runs side by side compare the harnesses. The
    pipeline's own inference median (frames that change, pre- and post-processing in between) is in the
    latency columns."""
    batch = detector.prepare(frame)
    on_disk = detector.preprocessor.resize(frame)[None]  # the same pixels, as the IR file takes them
    theirs, ours = [], []
    for _ in range(rounds):
        median = benchmark_app_median(xml, seconds=3, batches=[on_disk])
        if median is None:
            return {}
        theirs.append(median)
        detector.infer(batch)
        times = []
        for _ in range(calls):
            start = time.perf_counter()
            detector.infer(batch)
            times.append(time.perf_counter() - start)
        ours.append(1000 * statistics.median(times))
    ratio = statistics.median(ours) / statistics.median(theirs)
    return {"benchmark_app_ms": statistics.median(theirs), "benchmark_app_runs_ms": theirs,
            "inference_back_to_back_ms": statistics.median(ours), "inference_back_to_back_runs_ms": ours,
            "inference_vs_benchmark_app": round(ratio, 3), "inference_within_10pct_of_benchmark_app": ratio <= 1.10}


def peak_rss_mb() -> float:
    """This process's peak resident memory. /proc's VmHWM belongs to this address space; ru_maxrss
    would also count the parent's peak, which Linux carries across fork and exec."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _throughput(row: Dict[str, Any], detector, frames, depth: int):
    """Frames per second with ``depth`` requests in flight (the runtime's own kind: see runtimes/requests.py)."""
    if depth <= 1 or row["runtime"] == "pytorch":
        return None, "sequential calls: see FPS"
    from runtimes.loader import load_detector

    options = {"hint": "throughput"} if row["runtime"] == "openvino" else {}
    async_detector = load_detector(row["model"], row["runtime"], **options)
    batch = (frames * (1 + 64 // len(frames)))[:64]
    for rounds in (batch[:depth], batch):  # the first round warms every request up
        start = time.perf_counter()
        with async_detector.requests(depth) as requests:
            for frame in rounds:
                requests.submit([frame])
                list(requests.results())
        rate = len(rounds) / (time.perf_counter() - start)
        kind = type(requests).__name__
    async_detector.close()
    return rate, f"{kind}, {depth} requests" + (", throughput hint" if options else "")


def benchmark_app_median(xml: str, seconds: int = 5, batches: Sequence[Any] = ()) -> Optional[float]:
    """benchmark_app's median latency for the IR (float input, FP32 compute, as our runner uses it), fed
    ``batches`` (our prepared inputs, cycled one per call) when given rather than its random data: an IR
    with NMS inside does as much work as the frame has candidate boxes. None when benchmark_app is missing
    or prints no median."""
    import re
    import shutil
    import subprocess
    import tempfile

    tool = shutil.which("benchmark_app") or str(Path(sys.executable).with_name("benchmark_app"))
    if not Path(tool).exists():
        return None
    cmd = [tool, "-m", str(xml), "-d", "CPU", "-hint", "latency", "-ip", "f32", "-infer_precision", "f32",
           "-t", str(seconds)]
    with tempfile.TemporaryDirectory() as folder:
        for i, batch in enumerate(batches):  # benchmark_app reads a .bin file as the raw tensor
            batch.astype("float32").tofile(Path(folder) / f"input{i:04d}.bin")
        if batches:
            cmd += ["-i", folder]
        if len(batches) > 1:
            # Its default for a static model fills each request once ("inference only"); "full mode" sets
            # the next file before every call (outside the latency it reports), as our loop changes frames.
            cmd += ["-inference_only", "false"]
        out = subprocess.run(cmd, capture_output=True, text=True).stdout
    match = re.search(r"Median:\s+([\d.]+)\s*ms", out)
    return float(match.group(1)) if match else None


def _measure_in_child(row: Dict[str, Any], settings: Dict[str, Any]) -> Dict[str, Any]:
    """Run :func:`measure_row` in a fresh interpreter (its own peak RSS; no state shared between rows)."""
    import subprocess

    cmd = [sys.executable, str(Path(__file__).resolve()), "--measure-row"]
    done = subprocess.run(cmd, input=json.dumps({"row": row, "settings": settings}), capture_output=True, text=True)
    lines = done.stdout.strip().splitlines()
    if done.returncode == 0 and lines:
        return json.loads(lines[-1])
    reason = (done.stderr.strip().splitlines() or ["no output"])[-1]
    return dict(row, status=f"failed: {reason[:300]}")


def _measure_row_main() -> None:
    """The child side of :func:`_measure_in_child`: a JSON job on stdin, the JSON result as the last line."""
    job = json.loads(sys.stdin.read())
    try:
        result = measure_row(job["row"], job["settings"])
    except UserError as exc:
        result = dict(job["row"], status=f"failed: {exc}")
    print(json.dumps(result), flush=True)
    # Skip interpreter teardown: the result is out, and runtimes' thread pools can abort while unwinding.
    os._exit(0)


# -- reporting ---------------------------------------------------------------------------------------------

def environment() -> Dict[str, Any]:
    env: Dict[str, Any] = {"python": platform.python_version(), "platform": platform.platform(),
                           "cpu_count": os.cpu_count(), "command": " ".join([sys.executable] + sys.argv)}
    try:
        cpu = [line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
               if line.startswith("model name")]
        env["cpu"] = cpu[0] if cpu else platform.processor()
    except OSError:
        env["cpu"] = platform.processor()
    for module in ("numpy", "cv2", "torch", "onnxruntime", "openvino", "nncf", "tensorrt"):
        try:
            env[f"{module}_version"] = __import__(module).__version__
        except ImportError:
            env[f"{module}_version"] = None
    try:
        import subprocess

        gpu = subprocess.run(["nvidia-smi", "--query-gpu=name,driver_version", "--format=csv,noheader"],
                             capture_output=True, text=True, timeout=10)
        env["gpu"] = gpu.stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        env["gpu"] = None
    return env


def markdown_table(rows: List[Dict[str, Any]]) -> str:
    base = next((r for r in rows if r["runtime"] == "pytorch" and r["status"] == "ok"), None)
    head = ("| runtime | precision | device | size MB | status | mAP VOC07 | end-to-end p50 / p90 / p99 ms | "
            "pre / infer / post p50 ms | FPS (batch 1) | throughput FPS | peak RSS MB | vs PyTorch | "
            "inference back to back vs benchmark_app, ms |")
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    for r in rows:
        runtime = r["runtime"] + (" (NMS in model)" if r.get("nms") == "engine" else "")
        if r["status"] != "ok":
            lines.append(f"| {runtime} | {r['precision'].upper()} | | | {r['status']} | | | | | | | | |")
            continue
        lat = r["latency_ms"]
        e2e = lat["end_to_end"]
        speedup = f"{base['latency_ms']['end_to_end']['p50'] / e2e['p50']:.2f}x" if base else ""
        tp = f"{r['throughput_fps']:.1f}" if r.get("throughput_fps") else ""
        bapp = ""
        if r.get("benchmark_app_ms"):
            verdict = "within 10%" if r["inference_within_10pct_of_benchmark_app"] else "NOT within 10%"
            bapp = (f"{r['inference_back_to_back_ms']:.2f} / {r['benchmark_app_ms']:.2f} "
                    f"({r['inference_vs_benchmark_app']:.2f}, {verdict})")
        m = f"{100 * r['map_voc07']:.2f}" if r.get("map_voc07") is not None else ""
        lines.append(
            f"| {runtime} | {r['precision'].upper()} | {r['device']} | {r['size_mb']:.1f} | ok | {m} | "
            f"{e2e['p50']:.2f} / {e2e['p90']:.2f} / {e2e['p99']:.2f} | {lat['preprocess']['p50']:.2f} / "
            f"{lat['inference']['p50']:.2f} / {lat['postprocess']['p50']:.2f} | {r['fps']:.1f} | {tp} | "
            f"{r['peak_rss_mb']:.0f} | {speedup} | {bapp} |")
    return "\n".join(lines)


def write_outputs(rows: List[Dict[str, Any]], env: Dict[str, Any], output_dir: Path) -> List[Path]:
    import csv

    from runtimes.atomic import atomic_write_text

    table = markdown_table(rows)
    atomic_write_text(output_dir / "benchmark.md", table + "\n")
    atomic_write_text(output_dir / "benchmark.json", json.dumps({"environment": env, "rows": rows}, indent=1))
    fields = ["runtime", "precision", "nms", "status", "device", "model", "size_mb", "map_voc07", "iterations", "fps",
              "throughput_fps", "peak_rss_mb", "benchmark_app_ms", "inference_vs_benchmark_app"]
    stage_fields = [f"{s}_{k}_ms" for s in ("preprocess", "inference", "postprocess", "end_to_end")
                    for k in ("p50", "p90", "p99", "mean")]
    tmp_csv = output_dir / ".benchmark.csv.tmp"
    with open(tmp_csv, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=fields + stage_fields)
        writer.writeheader()
        for r in rows:
            flat = {k: r.get(k) for k in fields}
            for s in ("preprocess", "inference", "postprocess", "end_to_end"):
                for k in ("p50", "p90", "p99", "mean"):
                    flat[f"{s}_{k}_ms"] = r.get("latency_ms", {}).get(s, {}).get(k)
            writer.writerow(flat)
    os.replace(tmp_csv, output_dir / "benchmark.csv")
    written = [output_dir / n for n in ("benchmark.md", "benchmark.json", "benchmark.csv")]
    plot = _plot(rows, output_dir / "benchmark.png")
    return written + ([plot] if plot else [])


def _plot(rows: List[Dict[str, Any]], path: Path) -> Optional[Path]:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("note: matplotlib is not installed; no plot (pip install matplotlib)")
        return None
    ok = [r for r in rows if r["status"] == "ok"]
    if not ok:
        return None
    fig, (left, right) = plt.subplots(1, 2, figsize=(13, 4.8))
    labels = [f"{r['runtime']}\n{r['precision'].upper()}" for r in ok]
    left.boxplot([r["raw_end_to_end_ms"] for r in ok], showfliers=False)
    left.set_xticks(range(1, len(ok) + 1), labels, fontsize=8)
    left.set_ylabel("end-to-end latency (ms)")
    left.set_title("latency distribution (whiskers: 1.5 IQR)")
    for r, label in zip(ok, labels):
        if r.get("map_voc07") is not None:
            right.scatter(r["latency_ms"]["end_to_end"]["p50"], 100 * r["map_voc07"])
            right.annotate(label.replace("\n", " "), (r["latency_ms"]["end_to_end"]["p50"], 100 * r["map_voc07"]),
                           fontsize=8, xytext=(4, 4), textcoords="offset points")
    right.set_xlabel("end-to-end latency p50 (ms)")
    right.set_ylabel("mAP VOC07 (%)")
    right.set_title("accuracy against speed")
    fig.tight_layout()
    tmp = path.with_name(".benchmark.png.tmp.png")
    fig.savefig(tmp, dpi=110)
    plt.close(fig)
    os.replace(tmp, path)
    return path


# -- command line ------------------------------------------------------------------------------------------

def _csv_list(choices: Sequence[str]):
    def parse(text: str) -> List[str]:
        items = [t.strip().lower() for t in text.split(",") if t.strip()]
        bad = [t for t in items if t not in choices]
        if bad:
            raise argparse.ArgumentTypeError(f"unknown: {', '.join(bad)} (choose from {', '.join(choices)})")
        return items
    return parse


def build_parser() -> argparse.ArgumentParser:
    from runtimes.nms_options import NMS_MODES

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--checkpoint", type=Path, help="PyTorch checkpoint (default: the embedded demo model)")
    p.add_argument("--arch", help="architecture of --checkpoint")
    p.add_argument("--num-classes", type=int, help="outputs incl. background (default: from the checkpoint)")
    p.add_argument("--classes", type=Path, help="class names file (default: VOC's 20 for 21 outputs)")
    p.add_argument("--models", nargs="+", type=Path, help="measure these model files instead of building")
    p.add_argument("--runtimes", type=_csv_list(RUNTIMES), default=list(RUNTIMES),
                   help="comma-separated (default: pytorch,onnxruntime,openvino,tensorrt)")
    p.add_argument("--precisions", type=_csv_list(PRECISIONS), default=list(PRECISIONS),
                   help="comma-separated (default: fp32,fp16,int8)")
    p.add_argument("--voc-root", type=Path, help="VOC root for mAP (default with the demo model: its data set)")
    p.add_argument("--year", default="2007", help="VOC year (default: %(default)s)")
    p.add_argument("--split", default="test", help="split for mAP (default: %(default)s)")
    p.add_argument("--calib-data", type=Path, help="INT8 calibration images (default: the demo data set)")
    p.add_argument("--calib-images", type=int, default=300, help="INT8 calibration images (default: %(default)s)")
    p.add_argument("--iterations", type=int, default=0,
                   help="timed calls per row (default: 0 = auto, at least 50 calls and 3 s)")
    p.add_argument("--warmup", type=int, default=10, help="untimed calls first (default: %(default)s)")
    p.add_argument("--batch", type=int, default=4, help="async depth for the throughput column (default: %(default)s)")
    p.add_argument("--nms", choices=NMS_MODES, default="host",
                   help="engine: OpenVINO and TensorRT rows built with NMS inside the model (build_engine.py --nms "
                        "engine); default: %(default)s")
    p.add_argument("--no-benchmark-app", action="store_true", help="skip the benchmark_app cross-check")
    p.add_argument("--output-dir", type=Path, default=DEFAULT_OUTPUT, help="reports (default: outputs/benchmark)")
    p.add_argument("--build-dir", type=Path, default=DEFAULT_BUILDS,
                   help="built models, reused across runs when their inputs match (default: outputs/models)")
    return p


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    if args.checkpoint is not None and not args.arch:
        raise UserError("--arch is required with --checkpoint")
    output_dir, build_dir = Path(args.output_dir), Path(args.build_dir)
    for folder in (output_dir, build_dir):
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise UserError(f"{folder}: cannot create the folder ({exc.strerror})") from None
    from calibration.synthetic import ensure_demo_dataset

    demo = args.checkpoint is None and not args.models
    voc_root = args.voc_root or (ensure_demo_dataset(verbose=False) if demo else None)
    if args.models:
        rows = [_row_for_file(Path(m), args) for m in args.models]
    else:
        rows = plan_rows(args)
        build_artifacts(rows, args, build_dir)
    frames_root = Path(__file__).resolve().parents[2] / "shared/data/voc-mini/VOCdevkit/VOC2007/JPEGImages"
    frames = sorted(frames_root.glob("*.jpg"))[:16] or sorted(
        (Path(voc_root or ensure_demo_dataset(verbose=False)) / "VOCdevkit/VOC2007/JPEGImages").glob("*.jpg"))[:16]
    settings = {"frames": [str(f) for f in frames], "warmup": args.warmup, "iterations": args.iterations,
                "batch": args.batch, "voc_root": str(voc_root) if voc_root else None, "year": args.year,
                "split": args.split, "benchmark_app": not args.no_benchmark_app}
    results = []
    for row in rows:
        if row["status"] != "planned":
            print(f"{row['runtime']:<12}{row['precision']:<6}{row['status']}")
            results.append(row)
            continue
        result = _measure_in_child(row, settings)
        results.append(result)
        if result["status"] == "ok":
            e2e = result["latency_ms"]["end_to_end"]
            print(f"{row['runtime']:<12}{row['precision']:<6}p50 {e2e['p50']:.2f} ms over {result['iterations']} "
                  f"calls" + (f", mAP {100 * result['map_voc07']:.2f}" if result.get("map_voc07") is not None
                              else ""), flush=True)
        else:
            print(f"{row['runtime']:<12}{row['precision']:<6}{result['status']}")
    print()
    print(markdown_table(results))
    written = write_outputs(results, environment(), output_dir)
    print("\nwrote " + ", ".join(str(p) for p in written))
    return 0


def _row_for_file(path: Path, args: argparse.Namespace) -> Dict[str, Any]:
    from runtimes.loader import runtime_for

    if not path.is_file():
        raise UserError(f"{path}: no such model file")
    runtime = runtime_for(path).name
    reason = unavailable_reason(runtime)
    precision = next((p for p in PRECISIONS if p in path.stem.lower()), "fp32")
    return {"runtime": runtime, "precision": precision, "model": str(path),
            "status": "planned" if reason is None else f"unavailable: {reason}"}


if __name__ == "__main__":
    if sys.argv[1:] == ["--measure-row"]:
        _measure_row_main()
    sys.exit(run_cli(main))
