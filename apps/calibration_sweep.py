"""How many calibration images, and which algorithm, are enough for INT8 on your model: a sweep.

    python apps/calibration_sweep.py                      # the demo model, both routes, 32/100/300/1000 images
    python apps/calibration_sweep.py --onnx ssd.onnx --calib-data ~/data/VOC --val-data ~/data/VOC \\
        --val-split test --routes qdq --counts 100,300

For each route (qdq: the Q/DQ ONNX of TensorRT's explicit route with ONNX Runtime's MinMax / Entropy /
Percentile calibrators, judged with ONNX Runtime; openvino: the INT8 IR with NNCF's mixed / performance
presets, judged with OpenVINO) and image count, an INT8 model is built and its VOC07 mAP and build time
recorded (quantization/int8_sweep.py). Writes calibration_sweep.md / .csv / .png into --output-dir.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import List, Optional, Sequence

# The repository root replaces the script's own folder on the path (see export/build_engine.py).
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.pop(1)

from runtimes.cli import run_cli
from runtimes.errors import UserError

DEFAULT_OUTPUT = Path(__file__).resolve().parents[1] / "outputs" / "calibration_sweep"


def _items(text: str) -> List[str]:
    return [t.strip().lower() for t in text.split(",") if t.strip()]


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--onnx", type=Path, help="an ONNX file exported by export/export_onnx.py (default: the demo model)")
    p.add_argument("--routes", default="qdq,openvino", help="comma-separated: qdq, openvino (default: %(default)s)")
    p.add_argument("--algorithms", help="comma-separated subset of the routes' algorithms (default: all: minmax, "
                                        "entropy, percentile for qdq; mixed, performance for openvino)")
    p.add_argument("--counts", default="32,100,300,1000",
                   help="calibration image counts, comma-separated (default: %(default)s)")
    p.add_argument("--calib-data", type=Path, help="VOC root or image folder (default with the demo model: its data)")
    p.add_argument("--calib-split", help="VOC split to calibrate on (default: trainval; train for the demo)")
    p.add_argument("--calib-seed", type=int, default=0, help="sampling seed (default: %(default)s)")
    p.add_argument("--val-data", type=Path, help="VOC root to judge on (default with the demo model: its data)")
    p.add_argument("--val-split", default="val", help="validation split (default: %(default)s)")
    p.add_argument("--year", default="2007", help="VOC year (default: %(default)s)")
    p.add_argument("--output-dir", type=Path, default=DEFAULT_OUTPUT,
                   help="where the table, CSV and plot go (default: outputs/calibration_sweep)")
    return p


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    from quantization.int8_sweep import ALGORITHMS, sweep, write_sweep

    routes = _items(args.routes)
    unknown = [r for r in routes if r not in ALGORITHMS]
    if unknown or not routes:
        raise UserError(f"--routes: unknown {', '.join(unknown) or '(none given)'}; choose from qdq, openvino")
    algorithms = {r: list(ALGORITHMS[r]) for r in routes}
    if args.algorithms:
        wanted = _items(args.algorithms)
        offered = {a for r in routes for a in ALGORITHMS[r]}
        if set(wanted) - offered:
            raise UserError(f"--algorithms: {', '.join(sorted(set(wanted) - offered))} not offered by "
                            f"{', '.join(routes)} (offered: {', '.join(sorted(offered))})")
        algorithms = {r: [a for a in ALGORITHMS[r] if a in wanted] for r in routes}
        routes = [r for r in routes if algorithms[r]]
    try:
        counts = sorted({int(c) for c in _items(args.counts)})
    except ValueError:
        raise UserError(f"--counts takes whole numbers separated by commas (e.g. 32,100,300), not '{args.counts}'") \
            from None
    if not counts or counts[0] < 1:
        raise UserError("--counts: every count must be at least 1")

    from calibration.stream import select_images
    from calibration.synthetic import ensure_demo_dataset
    from calibration.voc import VOCDataset
    from export.onnx_model import require_metadata

    if args.onnx is None:
        from export.demo_model import demo_onnx

        source, demo = demo_onnx(), True
    else:
        source, demo = Path(args.onnx), False
    meta = require_metadata(source)
    if args.calib_data is None and not demo:
        raise UserError("pass --calib-data (a VOC root or a folder of images) for your model")
    if args.val_data is None and not demo:
        raise UserError("pass --val-data (a VOC root) to judge your model on")
    calib_root = args.calib_data or ensure_demo_dataset()
    images = select_images(Path(calib_root), counts[-1], args.calib_seed, args.year,
                           args.calib_split or ("train" if args.calib_data is None else "trainval"))
    print(f"calibration: {images.describe()}")
    validation = VOCDataset(Path(args.val_data or ensure_demo_dataset()), args.year, args.val_split,
                            meta.class_names[1:])
    try:
        args.output_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UserError(f"{args.output_dir}: cannot create the folder ({exc.strerror})") from None
    title = f"{source.name} ({meta.arch}), {validation.year_dir.name}/{validation.split}"
    points = sweep(source, meta, images, validation, routes, counts, algorithms, work_dir=args.output_dir,
                   on_point=lambda so_far: write_sweep(so_far, args.output_dir, title, plot=False))
    written = write_sweep(points, args.output_dir, title)
    print("wrote " + ", ".join(str(p) for p in written))
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main))
