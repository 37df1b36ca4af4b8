"""Latency and accuracy of every runtime x precision available on this machine, in one table.

    python apps/benchmark.py                                   # the demo model, everything available here
    python apps/benchmark.py --checkpoint ssd.pth --arch ssd300_vgg16 --voc-root ~/data/VOC
    python apps/benchmark.py --checkpoint mmdet_ssdlite.pth --classes coco.txt     # any imported codebase
    python apps/benchmark.py --models a.onnx b_int8.xml c.engine --runtimes onnxruntime,openvino

From a checkpoint (or the demo model) it builds what is missing with the toolkit's own build step, reusing
builds whose recorded inputs still match, then measures each row in a fresh process (so its peak memory
is its own): latency p50/p90/p99/mean of preprocessing, inference, post-processing and end to end, FPS at
batch 1, throughput at the chosen async depth, peak RSS, file size and VOC07 mAP. A PyTorch eager row is
the baseline every speed-up is measured against, in the same run. OpenVINO rows are checked against
OpenVINO's own benchmark_app on the same IR. Unavailable combinations are listed with the reason. A checkpoint
of another codebase (docs/checkpoints.md) needs no --arch: its network is recognised, and the PyTorch row
runs it as imported.

Outputs in --output-dir: benchmark.md (the table), benchmark.csv, benchmark.json (every raw figure, the
environment and the command), benchmark.png (latency distributions; mAP against latency), published as one
set: links into the hidden folder of the latest complete run (copy them with cp -L; runtimes/file_set.py).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

# The repository root replaces the script's own folder on the path: a module here (e.g. export/onnx_model.py)
# must not shadow a library's top-level module of the same name (onnxruntime's quantizer imports one).
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.pop(1)

from benchmarking import plan
from benchmarking.measure import measure_in_child
from benchmarking.report import check_output_folder, environment, markdown_table, write_outputs
from importers.cli import add_import_arguments
from runtimes.cli import run_cli
from runtimes.errors import UserError

DEFAULT_OUTPUT = Path(__file__).resolve().parents[1] / "outputs" / "benchmark"
DEFAULT_BUILDS = Path(__file__).resolve().parents[1] / "outputs" / "models"


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
    p.add_argument("--arch", help="network of --checkpoint where its keys cannot tell (torchvision's "
                   "ssd300_vgg16 / ssd512_vgg16); other codebases' checkpoints are recognised")
    p.add_argument("--num-classes", type=int, help="outputs incl. background (default: from the checkpoint)")
    p.add_argument("--classes", type=Path, help="class names file (default: VOC's 20 for 21 outputs)")
    add_import_arguments(p)
    p.add_argument("--models", nargs="+", help="measure these model files or server URLs instead of building")
    runtimes = plan.benchmark_runtimes()
    p.add_argument("--runtimes", type=_csv_list(runtimes), default=runtimes,
                   help=f"comma-separated (default: {','.join(runtimes)})")
    p.add_argument("--precisions", type=_csv_list(plan.PRECISIONS), default=list(plan.PRECISIONS),
                   help=f"comma-separated (default: {','.join(plan.PRECISIONS)})")
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
    output_dir, build_dir = Path(args.output_dir), Path(args.build_dir)
    for folder in (output_dir, build_dir):
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise UserError(f"{folder}: cannot create the folder ({exc.strerror})") from None
    check_output_folder(output_dir)  # the report's files, before hours of measuring
    from calibration.synthetic import ensure_demo_dataset

    demo = args.checkpoint is None and not args.models
    voc_root = args.voc_root or (ensure_demo_dataset(verbose=False) if demo else None)
    if args.models:
        rows = [_row_for_file(m) for m in args.models]
    else:
        options = plan.PlanOptions(args.runtimes, args.precisions, args.nms, args.checkpoint, args.arch,
                                   args.num_classes, args.classes, args.calib_data, args.calib_images,
                                   input_size=args.input_size, preset=args.preset, config=args.config)
        rows = plan.plan_rows(options)
        plan.build_artifacts(rows, options, build_dir)
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
        result = measure_in_child(row, settings)
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


def _row_for_file(location: str) -> Dict[str, Any]:
    from runtimes.loader import is_url, runtime_for

    if not is_url(location) and not Path(location).is_file():
        raise UserError(f"{location}: no such model file")
    runtime = runtime_for(location).name
    reason = plan.unavailable_reason(runtime)
    precision = next((p for p in plan.PRECISIONS if p in Path(location).stem.lower()), "fp32")
    return {"runtime": runtime, "precision": precision, "model": location,
            "status": "planned" if reason is None else f"unavailable: {reason}"}

if __name__ == "__main__":
    sys.exit(run_cli(main))
