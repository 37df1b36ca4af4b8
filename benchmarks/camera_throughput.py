"""The camera app's throughput on a video file (--headless) against the detector's own throughput with no
video I/O, same model, same run.

    python benchmarks/camera_throughput.py [--frames 300]

Builds the demo model's OpenVINO FP32 and INT8 IRs, writes a 640x480 video of demo images, then for each
IR: (1) the detector alone on frames already in memory, (2) apps/camera.py's pipelined loop decoding the
video (headless, no output files), alternating three times. Prints the medians in frames per second and the
ratio (target >= 0.9).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

import cv2

# The repository root replaces the script's own folder on the path: a module here (e.g. export/onnx_model.py)
# must not shadow a library's top-level module of the same name (onnxruntime's quantizer imports one).
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.pop(1)

from apps.camera import build_parser, run
from calibration.stream import select_images
from calibration.synthetic import ensure_demo_dataset
from export.demo_model import demo_onnx
from export.onnx_model import load_onnx, read_metadata
from export.openvino_build import build_openvino
from runtimes.loader import load_detector


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--frames", type=int, default=300, help="video length (default: %(default)s)")
    args = parser.parse_args()
    data = ensure_demo_dataset(verbose=False)
    images = sorted((data / "VOCdevkit/VOC2007/JPEGImages").glob("*.jpg"))[-50:]
    folder = Path(tempfile.mkdtemp(prefix="camera-bench-"))
    video = folder / "in.avi"
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter.fourcc(*"MJPG"), 30.0, (640, 480))
    frames = [cv2.resize(cv2.imread(str(images[i % len(images)])), (640, 480)) for i in range(args.frames)]
    for frame in frames:
        writer.write(frame)
    writer.release()
    onnx_path = demo_onnx(verbose=False)
    meta = read_metadata(load_onnx(onnx_path), str(onnx_path))
    calibration = select_images(data, 300, 0, split="train")
    print(f"{'model':<14}{'detector alone FPS':>20}{'camera app FPS':>16}{'ratio':>8}")
    for precision in ("fp32", "int8"):
        xml = folder / f"demo_{precision}.xml"
        build_openvino(onnx_path, meta, precision, xml, calibration if precision == "int8" else None,
                       log=lambda _: None)
        alone, app = [], []
        # Alternating three times (this VM's speed drifts over minutes), one compiled model at a time (an idle
        # one keeps threads spinning beside the other).
        for _ in range(3):
            detector = load_detector(xml)
            for frame in frames[:10]:
                detector(frame)
            start = time.perf_counter()
            for frame in frames:
                detector(frame)
            alone.append(len(frames) / (time.perf_counter() - start))
            detector.close()
            app_args = build_parser().parse_args(["--model", str(xml), "--source", str(video), "--headless"])
            app.append(run(app_args, threading.Event(), log=lambda _: None)["mean_fps"])
        ratio = statistics.median(app) / statistics.median(alone)
        print(f"OpenVINO {precision.upper():<5}{statistics.median(alone):>20.1f}{statistics.median(app):>16.1f}"
              f"{ratio:>8.2f}   (runs: alone {', '.join(f'{v:.0f}' for v in alone)}; app "
              f"{', '.join(f'{v:.0f}' for v in app)})", flush=True)


if __name__ == "__main__":
    main()
