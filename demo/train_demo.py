"""Train the embedded demo model: SSDLite320-MobileNetV3 on the synthetic shapes data set, on the CPU.

    python demo/train_demo.py                      # the committed model: 1400 iterations, ~40 min on 2 cores
    python demo/train_demo.py --iterations 50 --output /tmp/quick.safetensors

Reproducible: the data set comes from a seed, the sampling order and augmentation from another, and
PyTorch is seeded; with the same thread count the run repeats (up to floating-point reduction order).
The checkpoint is a torchvision state_dict saved as float16 safetensors (~4.5 MB), which the toolkit's
checkpoint loader reads like any other.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import torch

# The repository root replaces the script's own folder on the path: a module here (e.g. export/onnx_model.py)
# must not shadow a library's top-level module of the same name (onnxruntime's quantizer imports one).
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.pop(1)

from calibration.images import read_image
from calibration.synthetic import DEFAULT_SEED, SHAPE_CLASSES, ensure_demo_dataset
from calibration.voc import VOCDataset
from export.architectures import build_model

ARCH = "ssdlite320_mobilenet_v3_large"
HERE = Path(__file__).resolve().parent


def load_split(root: Path, split: str, size: int):
    """Images resized (stretched) to the network input as the runtimes do, with boxes scaled alike."""
    data = VOCDataset(root, split=split, class_names=list(SHAPE_CLASSES))
    images, targets = [], []
    for sample in data.samples:
        image, _ = read_image(sample.image_path)
        h, w = image.shape[:2]
        images.append(cv2.cvtColor(cv2.resize(image, (size, size), interpolation=cv2.INTER_LINEAR),
                                   cv2.COLOR_BGR2RGB))
        boxes = sample.boxes() * np.array([size / w, size / h, size / w, size / h], dtype=np.float32)
        labels = np.array([data.label_of(o.name) for o in sample.objects], dtype=np.int64)
        targets.append((boxes, labels))
    return np.stack(images), targets


def make_batch(images, targets, indices, rng: np.random.Generator, size: int):
    batch_images, batch_targets = [], []
    for i in indices:
        image = images[i].astype(np.float32) / 255.0
        boxes, labels = targets[i]
        boxes = boxes.copy()
        if rng.random() < 0.5:  # horizontal flip
            image = image[:, ::-1]
            boxes[:, [0, 2]] = size - boxes[:, [2, 0]]
        image = np.clip(image * rng.uniform(0.75, 1.25) + rng.uniform(-0.1, 0.1), 0.0, 1.0)
        batch_images.append(torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1))))
        batch_targets.append({"boxes": torch.from_numpy(boxes), "labels": torch.from_numpy(labels)})
    return batch_images, batch_targets


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--iterations", type=int, default=1400, help="optimizer steps (default: %(default)s)")
    parser.add_argument("--batch", type=int, default=16, help="images per step (default: %(default)s)")
    parser.add_argument("--lr", type=float, default=2e-3, help="peak AdamW learning rate (default: %(default)s)")
    parser.add_argument("--seed", type=int, default=0, help="sampling/augmentation seed (default: %(default)s)")
    parser.add_argument("--data-seed", type=int, default=DEFAULT_SEED, help="synthetic data set seed")
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads (default: %(default)s)")
    parser.add_argument("--output", type=Path, default=HERE / "ssdlite320_shapes.safetensors")
    args = parser.parse_args()

    torch.manual_seed(args.seed)
    torch.set_num_threads(args.threads)
    rng = np.random.default_rng(args.seed)
    root = ensure_demo_dataset(seed=args.data_seed)
    model = build_model(ARCH, len(SHAPE_CLASSES) + 1)
    size = model.transform.fixed_size[0]
    images, targets = load_split(root, "train", size)
    print(f"training {ARCH} on {len(images)} images from {root}", flush=True)

    optimizer = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=1e-4)
    warmup = min(100, args.iterations // 10)

    def lr_at(step: int) -> float:
        if step < warmup:
            return args.lr * (step + 1) / warmup
        return args.lr * 0.5 * (1 + math.cos(math.pi * (step - warmup) / max(1, args.iterations - warmup)))

    model.train()
    order = np.array([], dtype=np.int64)
    start = time.monotonic()
    for step in range(args.iterations):
        if len(order) < args.batch:
            order = np.concatenate([order, rng.permutation(len(images))])
        indices, order = order[: args.batch], order[args.batch:]
        batch_images, batch_targets = make_batch(images, targets, indices, rng, size)
        for group in optimizer.param_groups:
            group["lr"] = lr_at(step)
        losses = model(batch_images, batch_targets)
        loss = sum(losses.values())
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        if step % 20 == 0 or step == args.iterations - 1:
            parts = " ".join(f"{k}={v.item():.3f}" for k, v in losses.items())
            print(f"step {step:5d}/{args.iterations} loss={loss.item():.3f} {parts} "
                  f"lr={lr_at(step):.2e} {time.monotonic() - start:.0f}s", flush=True)

    from safetensors.torch import save_file

    state = {k: (v.half() if v.is_floating_point() else v).contiguous() for k, v in model.state_dict().items()}
    args.output.parent.mkdir(parents=True, exist_ok=True)
    tmp = args.output.with_name(args.output.name + ".tmp")
    save_file(state, str(tmp), metadata={"arch": ARCH, "num_classes": str(len(SHAPE_CLASSES) + 1)})
    tmp.replace(args.output)
    record = {
        "arch": ARCH, "classes": list(SHAPE_CLASSES), "data_seed": args.data_seed, "seed": args.seed,
        "iterations": args.iterations, "batch": args.batch, "lr": args.lr, "optimizer": "AdamW, cosine",
        "threads": args.threads, "train_images": len(images), "seconds": round(time.monotonic() - start),
        "torch": torch.__version__,
    }
    args.output.with_suffix(".train.json").write_text(json.dumps(record, indent=2) + "\n")
    print(f"wrote {args.output}", flush=True)


if __name__ == "__main__":
    main()
