"""Our post-processor against torchvision's ``postprocess_detections`` on the same raw outputs.

    python benchmarks/postprocess.py [--iterations 30] [--baseline-rev HEAD]

SSD300 (8732 boxes) and SSDLite320 (3234 boxes), 21 classes, with logits spread so that most scores pass
the threshold (the expensive case: every class has hundreds of candidates); the same randomly initialised
models' own outputs (the degenerate case: every score is 1/21, boxes sit on the anchors and NMS removes most
candidates; "same" then compares counts and scores, as which of the tied boxes win is arbitrary); then the
trained demo model's real outputs on a demo test image (clustered boxes that NMS mostly removes).
torchvision runs with its anchors and the paper's settings (score 0.01, NMS 0.45, top-200 after top-400
candidates per class for SSD300; torchvision's SSDLite defaults for SSDLite). Prints medians, the ratio, and
checks that the detections are the same. ``--baseline-rev`` also times runtimes/postprocess.py as it was at
that git revision on the synthetic rows (right after ours, same outputs), for before/after figures.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch
from torchvision.models.detection.image_list import ImageList

# The repository root replaces the script's own folder on the path: a module here (e.g. export/onnx_model.py)
# must not shadow a library's top-level module of the same name (onnxruntime's quantizer imports one).
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.pop(1)

from export.architectures import build_model, describe
from runtimes.metadata import VOC_CLASSES
from runtimes.postprocess import SSDPostprocessor

BASELINE = {}  # "rev" -> the SSDPostprocessor class of runtimes/postprocess.py at that revision


def load_baseline(rev: str):
    """``SSDPostprocessor`` from ``git show REV:runtimes/postprocess.py``, imported under another name."""
    import importlib.util
    import subprocess
    import tempfile

    root = Path(__file__).resolve().parents[1]
    source = subprocess.run(["git", "show", f"{rev}:runtimes/postprocess.py"], cwd=root, check=True,
                            capture_output=True, text=True).stdout
    folder = tempfile.mkdtemp(prefix="postprocess-baseline-")
    path = Path(folder) / "postprocess_baseline.py"
    path.write_text(source)
    spec = importlib.util.spec_from_file_location("postprocess_baseline", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.SSDPostprocessor


def baseline_line(meta, raw, size, t_ours: float, iterations: int) -> None:
    if not BASELINE:
        return
    (rev, cls), = BASELINE.items()
    base = cls(meta)
    t_base = median_ms(lambda: base(raw, size), iterations)
    print(f"{'    runtimes/postprocess.py at ' + rev:<32}{'':>13}{t_base:>16.2f}{t_ours:>9.2f}{t_base / t_ours:>9.1f}x"
          "  (that revision's time in the torchvision column)")


def median_ms(fn, iterations: int) -> float:
    fn()
    times = []
    for _ in range(iterations):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return 1000 * statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--iterations", type=int, default=30, help="timed runs per side (default: %(default)s)")
    parser.add_argument("--baseline-rev", help="also time the post-processor of this git revision (default: off)")
    args = parser.parse_args()
    if args.baseline_rev:
        BASELINE[args.baseline_rev] = load_baseline(args.baseline_rev)
    torch.set_num_threads(2)
    print(f"{'model':<32}{'boxes':>7}{'dets':>6}{'torchvision ms':>16}{'ours ms':>9}{'speed-up':>10}  same")
    for arch in ("ssd300_vgg16", "ssdlite320_mobilenet_v3_large"):
        torch.manual_seed(0)
        model = build_model(arch, 21).eval()
        meta = describe(model, arch, list(VOC_CLASSES))
        size = (meta.input_height, meta.input_width)
        x = torch.zeros(1, 3, *size)
        with torch.no_grad():
            features = list(model.backbone(x).values())
            own = model.head(features)  # the random model's own outputs: near-uniform scores
        images = ImageList(x, [size])
        anchors = model.anchor_generator(images, features)
        n = anchors[0].shape[0]
        rng = np.random.default_rng(0)
        logits = torch.from_numpy(rng.normal(0, 0.5, (1, n, 21)).astype(np.float32))
        regression = torch.from_numpy(rng.normal(0, 1, (1, n, 4)).astype(np.float32))
        head = {"cls_logits": logits, "bbox_regression": regression}
        raw = {k: v.numpy() for k, v in head.items()}
        ours = SSDPostprocessor(meta)

        def theirs(model=model, head=head, anchors=anchors, images=images):
            with torch.no_grad():
                return model.postprocess_detections(head, anchors, images.image_sizes)[0]

        ref, got = theirs(), ours(raw, size)
        same = (len(got) == len(ref["scores"]) and np.array_equal(got.labels, ref["labels"].numpy())
                and np.allclose(got.boxes, ref["boxes"].numpy(), atol=1e-3)
                and np.allclose(got.scores, ref["scores"].numpy(), atol=1e-5))
        t_ref = median_ms(theirs, args.iterations)
        t_ours = median_ms(lambda ours=ours, raw=raw, size=size: ours(raw, size), args.iterations)
        passing = int((torch.softmax(logits, -1)[0, :, 1:] > meta.score_threshold).sum())
        print(f"{arch:<32}{n:>7}{len(got):>6}{t_ref:>16.2f}{t_ours:>9.2f}{t_ref / t_ours:>9.1f}x  {same}"
              f"   ({passing} of {n * 20} scores pass {meta.score_threshold})")
        baseline_line(meta, raw, size, t_ours, args.iterations)
        degenerate_case(model, meta, own, anchors, images, args.iterations)
    demo_case(args.iterations)


def degenerate_case(model, meta, head, anchors, images, iterations: int) -> None:
    """A randomly initialised model's own outputs: tied scores, boxes on the anchors."""
    raw = {k: v.numpy() for k, v in head.items()}
    size = images.image_sizes[0]
    ours = SSDPostprocessor(meta)

    def theirs():
        with torch.no_grad():
            return model.postprocess_detections(head, anchors, images.image_sizes)[0]

    ref, got = theirs(), ours(raw, size)
    same = len(got) == len(ref["scores"]) and np.allclose(got.scores, ref["scores"].numpy(), rtol=1e-6)
    t_ref, t_ours = median_ms(theirs, iterations), median_ms(lambda: ours(raw, size), iterations)
    spread = float(np.ptp(torch.softmax(head["cls_logits"], -1)[0, :, 1:].numpy()))
    print(f"{'  same, random init (own outputs)':<32}{raw['cls_logits'].shape[1]:>7}{len(got):>6}{t_ref:>16.2f}"
          f"{t_ours:>9.2f}{t_ref / t_ours:>9.1f}x  {same}   (scores within {spread:.1e}: tied)")
    baseline_line(meta, raw, size, t_ours, iterations)


def demo_case(iterations: int) -> None:
    """The trained demo model's own outputs on its last test image, through both post-processors."""
    from calibration.images import read_image
    from calibration.synthetic import ensure_demo_dataset
    from export.checkpoint import load_checkpoint
    from export.demo_model import DEMO_ARCH, DEMO_CHECKPOINT, DEMO_CLASSES, DEMO_NUM_CLASSES
    from runtimes.preprocess import Preprocessor

    model = load_checkpoint(DEMO_CHECKPOINT, DEMO_ARCH, DEMO_NUM_CLASSES)
    meta = describe(model, DEMO_ARCH, DEMO_CLASSES.read_text().split())
    size = (meta.input_height, meta.input_width)
    image_path = sorted((ensure_demo_dataset(verbose=False) / "VOCdevkit/VOC2007/JPEGImages").glob("*.jpg"))[-1]
    x = torch.from_numpy(Preprocessor(meta)(read_image(image_path)[0]))
    with torch.no_grad():
        features = list(model.backbone(x).values())
        head = model.head(features)
    images = ImageList(x, [size])
    anchors = model.anchor_generator(images, features)
    raw = {k: v.numpy() for k, v in head.items()}
    ours = SSDPostprocessor(meta)

    def theirs():
        with torch.no_grad():
            return model.postprocess_detections(head, anchors, images.image_sizes)[0]

    ref, got = theirs(), ours(raw, size)
    same = len(got) == len(ref["scores"]) and np.array_equal(got.labels, ref["labels"].numpy())
    t_ref, t_ours = median_ms(theirs, iterations), median_ms(lambda: ours(raw, size), iterations)
    print(f"{'demo model (trained), ' + image_path.name:<32}{raw['cls_logits'].shape[1]:>7}{len(got):>6}"
          f"{t_ref:>16.2f}{t_ours:>9.2f}{t_ref / t_ours:>9.1f}x  {same}   (threshold {meta.score_threshold})")


if __name__ == "__main__":
    main()
