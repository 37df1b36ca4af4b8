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
from typing import Dict, List

import numpy as np

# The repository root replaces the script's own folder on the path: a module here (e.g. export/onnx_model.py)
# must not shadow a library's top-level module of the same name (onnxruntime's quantizer imports one).
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.pop(1)

from apps.benchmark import benchmark_app_cross_check
from calibration.images import read_image
from calibration.stream import select_images
from calibration.synthetic import ensure_demo_dataset
from export.onnx_model import load_onnx, read_metadata
from export.openvino_build import build_openvino
from runtimes.detector import Detector
from runtimes.loader import load_detector
from runtimes.postprocess import SSDPostprocessor


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


class Timings:
    """Per-call timings of ``detector`` with ``postprocessor``, collected over several chunks. Variants share
    one detector: a second compiled model would keep its idle threads spinning beside the first."""

    def __init__(self, detector: Detector, postprocessor: SSDPostprocessor) -> None:
        self.detector, self.postprocessor = detector, postprocessor
        self.totals: List[float] = []
        self.stages: Dict[str, List[float]] = {"preprocess": [], "inference": [], "postprocess": []}

    def run(self, frames: List[np.ndarray], count: int) -> None:
        self.detector.postprocessor = self.postprocessor
        for i in range(count):
            frame = frames[i % len(frames)]
            start = time.perf_counter()
            self.detector(frame)
            self.totals.append(time.perf_counter() - start)
            for k, v in self.detector.last_timings.items():
                self.stages[k].append(v)

    def median(self, stage: str = "") -> float:
        return 1000 * statistics.median(self.stages[stage] if stage else self.totals)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--iterations", type=int, default=200, help="our timed calls per IR (default: %(default)s)")
    parser.add_argument("--seconds", type=int, default=4,
                        help="benchmark_app run time, three runs per IR (default: %(default)s)")
    parser.add_argument("--deploy-threshold", type=float, default=0.3,
                        help="score threshold of the second end-to-end column (default: %(default)s)")
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
                detector = load_detector(xml)
                ours = Timings(detector, detector.postprocessor)
                deployed = Timings(detector, SSDPostprocessor(detector.meta, score_threshold=args.deploy_threshold))
                ours.run(frames, 10)
                deployed.run(frames, 10)
                checks = []
                # Side by side, three times over: benchmark_app and our back-to-back inference on one frame
                # (like with like), then a share of our end-to-end loops. The machine's speed drifts over
                # seconds, so runs minutes apart would not compare.
                for _ in range(3):
                    check = benchmark_app_cross_check(detector, str(xml), frames[0], rounds=1)
                    if not check:
                        raise SystemExit("benchmark_app is missing or printed no median (pip install openvino)")
                    checks.append(check)
                    ours.run(frames, args.iterations // 3)
                    deployed.run(frames, args.iterations // 3)
                ref = statistics.median(c["benchmark_app_ms"] for c in checks)
                back = statistics.median(c["inference_back_to_back_ms"] for c in checks)
                rows.append((arch, precision, ref, back, ours, deployed))
                runs = ", ".join(f"{c['benchmark_app_ms']:.2f}" for c in checks)
                infer, total, fast = ours.median("inference"), ours.median(), deployed.median()
                print(f"{arch:<11} {precision:<5} benchmark_app {ref:6.2f} ms (runs {runs}) | ours: back-to-back "
                      f"{back:.2f} ({back / ref:.2f}x), in the loop {infer:.2f}, end-to-end {total:.2f} "
                      f"({total / ref:.2f}x; pre {ours.median('preprocess'):.2f}, post "
                      f"{ours.median('postprocess'):.2f}), at score > {args.deploy_threshold} {fast:.2f} "
                      f"({fast / ref:.2f}x)", flush=True)
                detector.close()
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    print(f"\n| model | precision | benchmark_app ms | our inference back to back ms (ratio) | our inference in "
          f"the loop ms | our end-to-end ms, model thresholds (ratio) | our end-to-end ms, score > "
          f"{args.deploy_threshold} (ratio) |")
    print("|---|---|---|---|---|---|---|")
    for arch, precision, ref, back, ours, deployed in rows:
        print(f"| {arch} | {precision.upper()} | {ref:.2f} | {back:.2f} ({back / ref:.2f}) | "
              f"{ours.median('inference'):.2f} | {ours.median():.2f} ({ours.median() / ref:.2f}) | "
              f"{deployed.median():.2f} ({deployed.median() / ref:.2f}) |")


if __name__ == "__main__":
    main()
