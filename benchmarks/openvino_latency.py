"""Our OpenVINO detector end to end (BGR frame in, detections out) against OpenVINO's ``benchmark_app``
on the same IR, side by side in one run.

    python benchmarks/openvino_latency.py [--iterations 200] [--archs ssdlite320 ssd300]

SSDLite320 is the trained demo model; SSD300 has random weights (speed only), calibrated on the demo
data. Each IR is built FP32, FP16 and INT8 with the toolkit's own build step. benchmark_app runs with the
latency hint, ``-ip f32`` (the IR's float input, as our runner feeds it) and ``-infer_precision f32`` (our
runner computes in FP32; this CPU's default would be bf16). Medians are reported, and the ratio
ours / benchmark_app (target <= 1.10).
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

# The repository root replaces the script's own folder on the path: a module here (e.g. export/onnx_model.py)
# must not shadow a library's top-level module of the same name (onnxruntime's quantizer imports one).
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.pop(1)

from apps.benchmark import benchmark_app_median
from calibration.images import read_image
from calibration.stream import select_images
from calibration.synthetic import ensure_demo_dataset
from export.onnx_model import load_onnx, read_metadata
from export.openvino_build import build_openvino
from runtimes.loader import load_detector


def source_onnx(arch: str, folder: Path) -> Path:
    if arch == "ssdlite320":
        from export.demo_model import demo_onnx

        return demo_onnx(verbose=False)
    import torch

    from export.architectures import build_model
    from export.export_onnx import export_checkpoint

    torch.manual_seed(0)
    ckpt = folder / "ssd300_random.pth"
    torch.save(build_model("ssd300_vgg16", 21).state_dict(), ckpt)
    out = folder / "ssd300_random.onnx"
    export_checkpoint(ckpt, "ssd300_vgg16", out, 21)
    return out


def ours_median(xml: Path, frames, iterations: int) -> tuple:
    detector = load_detector(xml)
    for frame in frames[:10]:
        detector(frame)
    totals, stages = [], {"preprocess": [], "inference": [], "postprocess": []}
    for i in range(iterations):
        frame = frames[i % len(frames)]
        start = time.perf_counter()
        detector(frame)
        totals.append(time.perf_counter() - start)
        for k, v in detector.last_timings.items():
            stages[k].append(v)
    return 1000 * statistics.median(totals), {k: 1000 * statistics.median(v) for k, v in stages.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--iterations", type=int, default=200, help="our timed calls per IR (default: %(default)s)")
    parser.add_argument("--seconds", type=int, default=10, help="benchmark_app run time per IR (default: %(default)s)")
    parser.add_argument("--archs", nargs="+", default=["ssdlite320", "ssd300"], choices=["ssdlite320", "ssd300"])
    parser.add_argument("--calib-images", type=int, default=100, help="INT8 calibration images (default: %(default)s)")
    args = parser.parse_args()
    data = ensure_demo_dataset(verbose=False)
    voc = Path(__file__).resolve().parents[2] / "shared/data/voc-mini/VOCdevkit/VOC2007/JPEGImages"
    paths = sorted(voc.glob("*.jpg")) or sorted((data / "VOCdevkit/VOC2007/JPEGImages").glob("*.jpg"))[:25]
    frames = [read_image(p)[0] for p in paths]
    calibration = select_images(data, args.calib_images, 0, split="train")
    folder = Path(tempfile.mkdtemp(prefix="ov-bench-"))
    rows = []
    try:
        for arch in args.archs:
            onnx_path = source_onnx(arch, folder)
            meta = read_metadata(load_onnx(onnx_path), str(onnx_path))
            for precision in ("fp32", "fp16", "int8"):
                xml = folder / f"{arch}_{precision}.xml"
                build_openvino(onnx_path, meta, precision, xml, calibration if precision == "int8" else None,
                               log=lambda _: None)
                ref = benchmark_app_median(str(xml), args.seconds)
                if ref is None:
                    raise SystemExit("benchmark_app is missing or printed no median (pip install openvino)")
                ours, stages = ours_median(xml, frames, args.iterations)
                rows.append((arch, precision, ref, ours, stages))
                print(f"{arch:<11} {precision:<5} benchmark_app {ref:8.2f} ms   ours end-to-end {ours:8.2f} ms "
                      f"(pre {stages['preprocess']:.2f}, infer {stages['inference']:.2f}, "
                      f"post {stages['postprocess']:.2f})   ratio {ours / ref:.3f}", flush=True)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    print("\n| model | precision | benchmark_app median (ms) | ours end-to-end median (ms) | ratio |")
    print("|---|---|---|---|---|")
    for arch, precision, ref, ours, _ in rows:
        print(f"| {arch} | {precision.upper()} | {ref:.2f} | {ours:.2f} | {ours / ref:.3f} |")


if __name__ == "__main__":
    main()
