"""Images per second at batch 1, 2, 4, 8 through ``Detector.detect_batch``, beside OpenVINO's ``benchmark_app -b
N`` on the same IR, and requests in flight against synchronous calls, for every runtime; side by side in one run.

    python benchmarks/batching.py [--archs demo ssd300] [--rounds 3] [--seconds 1.5] [--quick]

Models: the demo model (SSDLite320, trained) and SSD300 (seeded random weights with decisive scores,
tests/reference_models.py), both exported with a dynamic batch axis; each on ONNX Runtime and on OpenVINO
FP32 and INT8 (NNCF, calibrated on the demo data set's train split; the IR keeps the dynamic batch). Built
files are kept in ``--work`` and reused.

Per round, for each model and runtime, one detector (``max_batch=8``) is loaded and timed at every batch
size: images/s end to end (BGR frames in, detections out) and of the network call alone (its share of the
same calls, ``last_timings["inference"]``); for OpenVINO, ``benchmark_app -b N -hint latency`` (one request,
as our synchronous call) runs on the same IR right after it. Then requests in flight: ``depth`` 1, 2, 4
single-frame requests through ``detector.requests(depth)`` (OpenVINO compiled with the throughput hint for
depth > 1, as the camera app does) against a loop of synchronous calls in the same round. One compiled model
is alive at a time (an idle one keeps threads spinning beside the other). Rounds alternate the variants, so
drift over minutes hits all alike; the tables give medians over rounds and ratios taken within a round.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np

# The repository root replaces the script's own folder on the path: a module here (e.g. export/onnx_model.py)
# must not shadow a library's top-level module of the same name (onnxruntime's quantizer imports one).
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.pop(1)

from calibration.synthetic import default_cache_dir, ensure_demo_dataset

ARCHS = ("demo", "ssd300")
DEFAULT_WORK = default_cache_dir() / "bench-batching"


# -- models ------------------------------------------------------------------------------------------------

def source_onnx(arch: str, work: Path) -> Path:
    """The dynamic-batch ONNX of ``arch``: the demo model, or SSD300 with seeded random decisive weights."""
    if arch == "demo":
        from export.demo_model import demo_onnx

        return demo_onnx(verbose=False, dynamic_batch=True)
    out = work / "ssd300_random_dynamic.onnx"
    if not out.is_file():
        from export.export_onnx import export_checkpoint
        from tests.reference_models import decisive_model, save_state_dict

        work.mkdir(parents=True, exist_ok=True)
        ckpt = save_state_dict(decisive_model("ssd300_vgg16"), work / "ssd300_random.pth")
        export_checkpoint(ckpt, "ssd300_vgg16", out, num_classes=21, dynamic_batch=True)
    return out


def openvino_ir(onnx_path: Path, precision: str, work: Path, calib_images: int = 300,
                log: Callable[[str], None] = print) -> Path:
    """The IR of ``onnx_path`` at ``precision`` (built once into ``work``; INT8 calibrated on ``calib_images``
    demo train images)."""
    from calibration.stream import select_images
    from export.onnx_model import load_onnx, read_metadata
    from export.openvino_build import build_openvino

    xml = work / f"{onnx_path.stem}_{precision}.xml"
    if xml.is_file() and xml.stat().st_mtime >= onnx_path.stat().st_mtime:
        return xml
    work.mkdir(parents=True, exist_ok=True)
    meta = read_metadata(load_onnx(onnx_path), str(onnx_path))
    calibration = (select_images(ensure_demo_dataset(verbose=False), calib_images, 0, split="train")
                   if precision == "int8" else None)
    started = time.monotonic()
    build_openvino(onnx_path, meta, precision, xml, calibration, log=lambda _: None)
    log(f"built {xml.name} in {time.monotonic() - started:.0f} s")
    return xml


def model_files(arch: str, work: Path, calib_images: int, log: Callable[[str], None] = print) -> Dict[str, Path]:
    """{"onnxruntime": onnx, "openvino fp32": xml, "openvino int8": xml} for ``arch``."""
    onnx_path = source_onnx(arch, work)
    return {"onnxruntime": onnx_path,
            "openvino fp32": openvino_ir(onnx_path, "fp32", work, calib_images, log),
            "openvino int8": openvino_ir(onnx_path, "int8", work, calib_images, log)}


def test_frames(count: int, size: Tuple[int, int] = (640, 480)) -> List[np.ndarray]:
    """``count`` BGR frames of ``size`` (width, height) from the demo data set's test images."""
    import cv2

    year = ensure_demo_dataset(verbose=False) / "VOCdevkit" / "VOC2007"
    ids = (year / "ImageSets" / "Main" / "test.txt").read_text().split()
    paths = [year / "JPEGImages" / f"{i}.jpg" for i in ids]
    return [cv2.resize(cv2.imread(str(paths[i % len(paths)])), size) for i in range(count)]


# -- OpenVINO's benchmark_app ------------------------------------------------------------------------------

def benchmark_app_tool() -> Optional[str]:
    """benchmark_app beside this interpreter or on the PATH (as apps/benchmark.py finds it)."""
    tool = shutil.which("benchmark_app") or str(Path(sys.executable).with_name("benchmark_app"))
    return tool if Path(tool).exists() else None


def ir_input_shape(xml: Path, batch: int) -> str:
    """The IR's input shape with the batch axis set, as benchmark_app's ``-shape`` takes it: "[N,H,W,3]"."""
    import openvino as ov

    shape = ov.Core().read_model(str(xml)).input(0).get_partial_shape()
    dims = [str(batch)] + [str(d.get_length()) for d in list(shape)[1:]]
    return "[" + ",".join(dims) + "]"


def benchmark_app(xml: Path, batch: int, hint: str = "latency", seconds: float = 3.0,
                  extra: Sequence[str] = ()) -> Dict[str, float]:
    """benchmark_app's throughput (images/s: it counts batch x requests) and median latency (ms) on ``xml``
    at a static ``batch``; {} when the tool is missing or prints no figure. The IR takes NHWC float pixels
    (``-ip f32``); FP32 compute (``-infer_precision f32``), as our runner compiles it."""
    tool = benchmark_app_tool()
    if tool is None:
        return {}
    cmd = [tool, "-m", str(xml), "-d", "CPU", "-hint", hint, "-ip", "f32", "-infer_precision", "f32",
           "-shape", ir_input_shape(xml, batch), "-t", str(max(1, int(round(seconds))))] + list(extra)
    out = subprocess.run(cmd, capture_output=True, text=True).stdout
    found: Dict[str, float] = {}
    throughput = re.search(r"Throughput:\s+([\d.]+)\s*FPS", out)
    median = re.search(r"Median:\s+([\d.]+)\s*ms", out)
    if throughput:
        found["images_per_s"] = float(throughput.group(1))
    if median:
        found["median_ms"] = float(median.group(1))
    return found


# -- our side ------------------------------------------------------------------------------------------------

def load(path: Path, runtime: str, **options: Any):
    from runtimes.loader import load_detector

    if runtime.startswith("openvino"):
        return load_detector(path, "openvino", **options)
    return load_detector(path, "onnxruntime", **options)


def time_batches(detector, frames: List[np.ndarray], batch: int, seconds: float,
                 min_calls: int = 2) -> Dict[str, float]:
    """images/s of ``detect_batch`` on ``batch`` frames at a time (cycling ``frames``) for about ``seconds``
    (at least ``min_calls`` calls, after one warm-up call), end to end and of the network call alone."""
    chunks = [frames[(i * batch) % len(frames):][:batch] for i in range(len(frames))]
    chunks = [c if len(c) == batch else frames[:batch] for c in chunks]
    detector.detect_batch(chunks[0])  # warm-up: the first call at a new batch size plans its shapes
    totals, network = [], []
    started = time.perf_counter()
    i = 0
    while i < min_calls or time.perf_counter() - started < seconds:
        t0 = time.perf_counter()
        detector.detect_batch(chunks[i % len(chunks)])
        totals.append(time.perf_counter() - t0)
        network.append(detector.last_timings["inference"])
        i += 1
    return {"e2e": batch / statistics.median(totals), "network": batch / statistics.median(network),
            "calls": float(i)}


def time_requests(detector, frames: List[np.ndarray], depth: Optional[int], seconds: float,
                  min_frames: int = 4) -> float:
    """images/s of single-frame requests, ``depth`` in flight (None: synchronous ``detector(frame)`` calls),
    for about ``seconds`` (at least ``min_frames``), after a warm-up."""
    if depth is None:
        for frame in frames[:2]:
            detector(frame)
        count, started = 0, time.perf_counter()
        while count < min_frames or time.perf_counter() - started < seconds:
            detector(frames[count % len(frames)])
            count += 1
        return count / (time.perf_counter() - started)
    with detector.requests(depth) as requests:
        for frame in frames[:depth]:
            requests.submit([frame])
        requests.close()
    requests = detector.requests(depth)
    count, done, started = 0, 0, time.perf_counter()
    while count < min_frames or time.perf_counter() - started < seconds:
        requests.submit([frames[count % len(frames)]], tag=count)
        count += 1
        done += sum(len(r.detections) for r in requests.results())
    done += sum(len(r.detections) for r in requests.close())
    elapsed = time.perf_counter() - started
    assert done == count, f"{done} results for {count} requests"
    return count / elapsed


# -- the run -------------------------------------------------------------------------------------------------

def load_average() -> str:
    return " ".join(f"{v:.2f}" for v in os.getloadavg())


def median(values: Sequence[float]) -> float:
    return statistics.median(values) if values else float("nan")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--archs", nargs="+", default=list(ARCHS), choices=ARCHS, help="default: %(default)s")
    parser.add_argument("--runtimes", nargs="+", default=["onnxruntime", "openvino fp32", "openvino int8"],
                        choices=["onnxruntime", "openvino fp32", "openvino int8"], help="default: %(default)s")
    parser.add_argument("--batches", nargs="+", type=int, default=[1, 2, 4, 8], help="default: %(default)s")
    parser.add_argument("--depths", nargs="+", type=int, default=[1, 2, 4],
                        help="requests in flight to compare with synchronous calls (default: %(default)s)")
    parser.add_argument("--rounds", type=int, default=3, help="alternations (default: %(default)s)")
    parser.add_argument("--seconds", type=float, default=1.5,
                        help="timed seconds per measurement, demo model (default: %(default)s)")
    parser.add_argument("--ssd300-seconds", type=float, default=2.0,
                        help="timed seconds per measurement, SSD300, at least 2 calls (default: %(default)s)")
    parser.add_argument("--app-seconds", type=float, default=3.0,
                        help="benchmark_app -t per measurement (default: %(default)s)")
    parser.add_argument("--calib-images", type=int, default=300,
                        help="INT8 calibration images (default: %(default)s)")
    parser.add_argument("--no-benchmark-app", action="store_true", help="skip benchmark_app")
    parser.add_argument("--no-requests", action="store_true", help="skip requests in flight")
    parser.add_argument("--quick", action="store_true", help="validation run: 1 round, 0.5 s measurements")
    parser.add_argument("--work", type=Path, default=DEFAULT_WORK, help="built models (default: %(default)s)")
    args = parser.parse_args()
    if args.quick:
        args.rounds, args.seconds, args.ssd300_seconds, args.app_seconds = 1, 0.5, 0.5, 1.0
    if max(args.batches) < 1 or min(args.batches) < 1:
        parser.error("--batches must be at least 1")

    from runtimes.preprocess import leave_cores_to_runtime

    leave_cores_to_runtime()  # as the apps do beside a CPU runtime
    frames = test_frames(32)
    files = {arch: model_files(arch, args.work, args.calib_images) for arch in args.archs}
    max_batch = max(args.batches)
    # results[(arch, runtime)][key] = [value per round]
    results: Dict[Tuple[str, str], Dict[str, List[float]]] = {}
    loads: List[str] = []
    began = time.monotonic()
    print(f"load average at start: {load_average()}", flush=True)
    for round_no in range(args.rounds):
        for arch in args.archs:
            seconds = args.seconds if arch == "demo" else args.ssd300_seconds
            for runtime in args.runtimes:
                path = files[arch][runtime]
                found = results.setdefault((arch, runtime), {})
                with load(path, runtime, max_batch=max_batch) as detector:
                    for batch in args.batches:
                        figures = time_batches(detector, frames, batch, seconds)
                        found.setdefault(f"e2e b{batch}", []).append(figures["e2e"])
                        found.setdefault(f"network b{batch}", []).append(figures["network"])
                    if not args.no_requests:
                        found.setdefault("sync", []).append(time_requests(detector, frames, None, seconds))
                        if 1 in args.depths:
                            found.setdefault("depth 1", []).append(time_requests(detector, frames, 1, seconds))
                if runtime.startswith("openvino") and 1 in args.batches:
                    # The same IR compiled for batch 1 only (max_batch=1: a static shape) against the 1..8
                    # range above, at batch 1: what a dynamic-batch IR costs a single-frame schedule.
                    with load(path, runtime, max_batch=1) as detector:
                        found.setdefault("e2e b1 static", []).append(time_batches(detector, frames, 1, seconds)["e2e"])
                        found.setdefault("e2e b1 range", []).append(found["e2e b1"][-1])  # pairs by round
                if runtime.startswith("openvino") and not args.no_benchmark_app:
                    for batch in args.batches:
                        app = benchmark_app(path, batch, "latency", args.app_seconds)
                        if app:
                            found.setdefault(f"app b{batch}", []).append(app["images_per_s"])
                if not args.no_requests and any(d > 1 for d in args.depths):
                    options = {"hint": "throughput"} if runtime.startswith("openvino") else {}
                    with load(path, runtime, max_batch=max_batch, **options) as detector:
                        found.setdefault("sync (throughput build)", []).append(
                            time_requests(detector, frames, None, seconds))
                        for depth in (d for d in args.depths if d > 1):
                            found.setdefault(f"depth {depth}", []).append(
                                time_requests(detector, frames, depth, seconds))
                print(f"round {round_no + 1}/{args.rounds} {arch} {runtime}: done at "
                      f"{time.monotonic() - began:.0f} s, load {load_average()}", flush=True)
        loads.append(load_average())
    print(f"\nload average after each round: {'; '.join(loads)}")
    report(results, args)


def within(found: Dict[str, List[float]], key: str, base: str) -> float:
    """The median over rounds of ``key`` / ``base`` taken within each round."""
    pairs = list(zip(found.get(key, []), found.get(base, [])))
    return statistics.median(a / b for a, b in pairs) if pairs else float("nan")


def report(results: Dict[Tuple[str, str], Dict[str, List[float]]], args: argparse.Namespace) -> None:
    print(f"\n## detect_batch, images/s (medians over {args.rounds} rounds; ratios within a round)\n")
    print("| model | runtime | batch | end to end | network call | benchmark_app -b N (latency hint) | "
          "e2e vs batch 1 | network vs batch 1 | network / benchmark_app |")
    print("|---|---|---|---|---|---|---|---|---|")
    for (arch, runtime), found in results.items():
        for batch in args.batches:
            app = found.get(f"app b{batch}", [])
            app_text = f"{median(app):.1f}" if app else "-"
            ratio = f"{within(found, f'network b{batch}', f'app b{batch}'):.2f}" if app else "-"
            print(f"| {arch} | {runtime} | {batch} | {median(found[f'e2e b{batch}']):.1f} | "
                  f"{median(found[f'network b{batch}']):.1f} | {app_text} | "
                  f"{within(found, f'e2e b{batch}', f'e2e b{args.batches[0]}'):.2f} | "
                  f"{within(found, f'network b{batch}', f'network b{args.batches[0]}'):.2f} | {ratio} |")
    static = [(k, f) for k, f in results.items() if "e2e b1 static" in f]
    if static:
        print("\nbatch 1 on an OpenVINO IR compiled for batch 1 only (max_batch=1) vs for 1..N (max_batch=N), end to "
              "end images/s:")
        for (arch, runtime), found in static:
            print(f"  {arch} {runtime}: batch-1 shape {median(found['e2e b1 static']):.1f}, 1..N range "
                  f"{median(found['e2e b1 range']):.1f}: "
                  f"{within(found, 'e2e b1 static', 'e2e b1 range'):.2f}x")
    print("\nper round (end to end, images/s):")
    for (arch, runtime), found in results.items():
        rounds = "; ".join(f"b{b} " + ", ".join(f"{v:.1f}" for v in found[f"e2e b{b}"]) for b in args.batches)
        apps = "; ".join(f"b{b} " + ", ".join(f"{v:.1f}" for v in found.get(f"app b{b}", [])) for b in args.batches)
        print(f"  {arch} {runtime}: {rounds}" + (f"  | benchmark_app: {apps}" if "app b1" in found else ""))
    if args.no_requests:
        return
    print(f"\n## requests in flight vs synchronous calls, single-frame requests, images/s end to end (medians over "
          f"{args.rounds} rounds)\n")
    deeper = [d for d in args.depths if d > 1]
    print("| model | runtime | sync calls | depth 1 | " + " | ".join(f"depth {d}" for d in deeper)
          + " | " + " | ".join(f"depth {d} / sync" for d in args.depths) + " |")
    print("|---|---|---|---|" + "---|" * (len(deeper) + len(args.depths)))
    for (arch, runtime), found in results.items():
        # depth > 1 runs on the throughput build (OpenVINO): its ratio is against sync calls on that build.
        ratios = [within(found, f"depth {d}", "sync" if d == 1 else "sync (throughput build)") for d in args.depths]
        sync_tp = median(found.get("sync (throughput build)", []))
        print(f"| {arch} | {runtime} | {median(found['sync']):.1f} (throughput build {sync_tp:.1f}) | "
              f"{median(found.get('depth 1', [])):.1f} | "
              + " | ".join(f"{median(found.get(f'depth {d}', [])):.1f}" for d in deeper) + " | "
              + " | ".join(f"{r:.2f}" for r in ratios) + " |")
    print("\nOpenVINO depth > 1 runs compiled with the throughput hint; its ratio is against synchronous calls on "
          "that same compiled model (latency-hint sync calls in the first column).")


if __name__ == "__main__":
    main()
