"""VOC mAP of any model file the runtimes load.

    python apps/evaluate.py --model model.onnx --voc-root ~/data/VOC [--year 2007 --split test]
    python apps/evaluate.py --model demo.xml        # the demo data set's test split (generated if missing)
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path
from typing import Optional, Sequence

# The repository root replaces the script's own folder on the path: a module here (e.g. export/onnx_model.py)
# must not shadow a library's top-level module of the same name (onnxruntime's quantizer imports one).
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.pop(1)

from runtimes.cli import run_cli


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", required=True, help=".onnx, OpenVINO .xml, TensorRT .engine, or a URL a runtime opens "
                                                  "(e.g. http://host:8000/model)")
    p.add_argument("--runtime", help="force a runtime (default: by file type)")
    p.add_argument("--voc-root", type=Path, help="folder holding VOCdevkit (default: the demo data set)")
    p.add_argument("--year", default="2007", help="VOC year (default: %(default)s)")
    p.add_argument("--split", default="test", help="ImageSets/Main split (default: %(default)s)")
    p.add_argument("--classes", type=Path, help="class names file (default: classes.txt in the data set, else VOC's)")
    p.add_argument("--metric", choices=["voc07", "voc12"], default="voc07",
                   help="11-point VOC2007 or all-point VOC2010+ AP (default: %(default)s)")
    p.add_argument("--limit", type=int, help="evaluate the first N images only")
    p.add_argument("--score-threshold", type=float, help="override the model's (default: the model's, 0.01 "
                   "for SSD300, 0.001 for SSDLite)")
    p.add_argument("--json", type=Path, help="also write the per-class APs here")
    return p


def main(argv: Optional[Sequence[str]] = None) -> int:
    from calibration.evaluation import evaluate_detector
    from calibration.synthetic import ensure_demo_dataset
    from calibration.voc import VOCDataset
    from runtimes.atomic import atomic_write_text, check_output_path
    from runtimes.class_names import read_class_names
    from runtimes.loader import load_detector
    from runtimes.preprocess import leave_cores_to_runtime

    args = build_parser().parse_args(argv)
    # What can be checked without the data or the model is, before either is read (or the demo set generated).
    json_path = check_output_path(args.json, "--json") if args.json else None
    names = read_class_names(args.classes, "--classes") if args.classes else None
    root = args.voc_root or ensure_demo_dataset()
    dataset = VOCDataset(root, args.year, args.split, names)
    for line in dataset.skipped.lines():
        print(f"skipped {line}")
    options = {} if args.score_threshold is None else {"score_threshold": args.score_threshold}
    detector = load_detector(args.model, args.runtime, **options)
    if detector.shares_cpu:
        leave_cores_to_runtime()  # OpenCV single-threaded beside a CPU runtime (process-wide)
    print(f"{args.model}: {detector.describe()}; {len(dataset)} images of {root} {args.year}/{args.split}")
    started = time.monotonic()
    result = evaluate_detector(detector, dataset, args.metric, args.limit)
    print(result.table())
    print(f"{len(dataset) if not args.limit else min(args.limit, len(dataset))} images in "
          f"{time.monotonic() - started:.1f} s")
    if json_path is not None:
        # A class without objects has no AP: null, since NaN is not JSON.
        per_class = {k: (None if math.isnan(v) else v) for k, v in result.per_class.items()}
        atomic_write_text(json_path, json.dumps({"model": str(args.model), "metric": args.metric,
                                                 "map": result.map, "per_class": per_class}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main))
