"""What a dynamic batch axis costs on OpenVINO's CPU plugin against a static one, with requests in flight.

    python benchmarks/openvino_batch_shapes.py [--precision int8] [--rounds 2] [--seconds 3] [--depth 4]

The demo model's dynamic-batch IR (benchmarks/batching.py builds it) is compiled with the throughput hint
under each batch shape in turn: static 1, static 4, bounded 1..4 and 1..8; each compilation is fed full
batches of the size it is measured at through an ``AsyncInferQueue`` of ``--depth`` requests for
``--seconds`` after a warm-up. Rounds alternate in opposite orders. It tells whether the camera app's
batches (which go through the model compiled for 1..N) can reach benchmark_app's static-batch throughput
(docs/multistream.md, "Batching").
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Dict, List, Tuple

import numpy as np

# The repository root replaces the script's own folder on the path: a module here (e.g. export/onnx_model.py)
# must not shadow a library's top-level module of the same name (onnxruntime's quantizer imports one).
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.pop(1)

from benchmarks.batching import DEFAULT_WORK, load_average, median, model_files

# (label, lowest batch, highest batch, batch fed)
SHAPES: Tuple[Tuple[str, int, int, int], ...] = (
    ("static 1, batch 1", 1, 1, 1), ("static 4, batch 4", 4, 4, 4), ("1..4, batch 4", 1, 4, 4),
    ("1..4, batch 1", 1, 4, 1), ("1..8, batch 1", 1, 8, 1))


def images_per_s(xml: Path, low: int, high: int, batch: int, depth: int, seconds: float) -> float:
    import openvino as ov

    core = ov.Core()
    model = core.read_model(xml)
    shape = model.input(0).get_partial_shape()
    shape[0] = ov.Dimension(low, high)
    model.reshape({model.input(0): shape})
    compiled = core.compile_model(model, "CPU", {"PERFORMANCE_HINT": "THROUGHPUT", "INFERENCE_PRECISION_HINT": "f32"})
    dims = [d.get_length() for d in list(shape)[1:]]
    pixels = (np.random.default_rng(0).random((batch, *dims)) * 255).astype(np.float32)
    queue = ov.AsyncInferQueue(compiled, depth)
    done = [0]
    queue.set_callback(lambda _request, _data: done.__setitem__(0, done[0] + 1))
    for _ in range(4 * depth):  # warm-up
        queue.start_async({0: pixels})
    queue.wait_all()
    done[0] = 0
    started = time.perf_counter()
    while time.perf_counter() - started < seconds:
        queue.start_async({0: pixels})
    queue.wait_all()
    return done[0] * batch / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--precision", choices=("fp32", "int8"), default="int8", help="default: %(default)s")
    parser.add_argument("--rounds", type=int, default=2, help="alternations (default: %(default)s)")
    parser.add_argument("--seconds", type=float, default=3.0, help="timed seconds per shape (default: %(default)s)")
    parser.add_argument("--depth", type=int, default=4, help="requests in flight (default: %(default)s)")
    parser.add_argument("--work", type=Path, default=DEFAULT_WORK, help="built models (default: %(default)s)")
    args = parser.parse_args()
    xml = model_files("demo", args.work, 300)[f"openvino {args.precision}"]
    found: Dict[str, List[float]] = {label: [] for label, *_ in SHAPES}
    print(f"{xml.name}, throughput hint, {args.depth} requests in flight; load {load_average()}", flush=True)
    for round_no in range(args.rounds):
        order = SHAPES if round_no % 2 == 0 else SHAPES[::-1]
        for label, low, high, batch in order:
            found[label].append(images_per_s(xml, low, high, batch, args.depth, args.seconds))
        print(f"round {round_no + 1}: " + ", ".join(f"{k} {v[-1]:.1f}" for k, v in found.items())
              + f"; load {load_average()}", flush=True)
    print("\n| compiled for, fed | images/s (runs) | against static at the same batch |\n|---|---|---|")
    static = {1: median(found["static 1, batch 1"]), 4: median(found["static 4, batch 4"])}
    for label, _, _, batch in SHAPES:
        runs = found[label]
        print(f"| {label} | {median(runs):.1f} ({', '.join(f'{v:.0f}' for v in runs)}) | "
              f"{median(runs) / static[batch]:.2f}x |")


if __name__ == "__main__":
    main()
