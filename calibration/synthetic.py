"""Deterministic synthetic detection data set in VOCdevkit layout (the demo model's data).

Every image is drawn from ``numpy.random.default_rng((seed, index))``, so the same seed gives the same
pixels, boxes and files on every machine that has the same OpenCV JPEG encoder. Objects are filled shapes
whose class is the shape (the colour is random), with varied size (16 px up to most of the image), aspect
ratio (1:2 to 2:1) and partial overlap, on textured backgrounds, so that every SSD feature map gets work.

Layout written under ``root``::

    VOCdevkit/VOC2007/JPEGImages/000000.jpg
    VOCdevkit/VOC2007/Annotations/000000.xml
    VOCdevkit/VOC2007/ImageSets/Main/{train,val,test,trainval}.txt
    VOCdevkit/VOC2007/classes.txt
    DATASET.json   (seed, split sizes, generator version: what the folder was made from)
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import shutil
import tempfile
from pathlib import Path
from typing import Dict, Iterator, List, Sequence, Tuple

import cv2
import numpy as np

from runtimes.atomic import replace_folder

SHAPE_CLASSES = ("ellipse", "rectangle", "triangle", "star", "cross")
DEFAULT_SPLITS = {"train": 1600, "val": 150, "test": 250}
DEFAULT_SEED = 2026
# Bumped whenever drawing changes, so a cached data set made by older code is regenerated.
GENERATOR_VERSION = 1
YEAR = "2007"

Box = Tuple[int, int, int, int]


def _background(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    """Low-contrast texture: a colour gradient, blurred noise and a few thin lines."""
    base = rng.uniform(40, 215, size=3)
    tilt = rng.uniform(-60, 60, size=(2, 3))
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    image = base + (xx[..., None] / width) * tilt[0] + (yy[..., None] / height) * tilt[1]
    coarse = rng.normal(0, 1, size=(height // 8 + 1, width // 8 + 1, 3)).astype(np.float32)
    noise = cv2.resize(coarse, (width, height), interpolation=cv2.INTER_CUBIC)
    image = image + noise * rng.uniform(8, 25) + rng.normal(0, 4, size=image.shape)
    image = np.clip(image, 0, 255).astype(np.uint8)
    for _ in range(int(rng.integers(0, 6))):
        p1 = (int(rng.integers(0, width)), int(rng.integers(0, height)))
        p2 = (int(rng.integers(0, width)), int(rng.integers(0, height)))
        colour = tuple(int(c) for c in np.clip(base + rng.uniform(-50, 50, 3), 0, 255))
        cv2.line(image, p1, p2, colour, int(rng.integers(1, 4)), cv2.LINE_AA)
    return image


def _shape_polygon(kind: str, box: Box, rng: np.random.Generator) -> np.ndarray | None:
    """Polygon of a shape that touches all four sides of ``box`` (None for the ellipse)."""
    x1, y1, x2, y2 = box
    w, h = x2 - x1, y2 - y1
    pts: List[Tuple[float, float]]
    if kind == "rectangle":
        pts = [(0, 0), (1, 0), (1, 1), (0, 1)]
    elif kind == "triangle":
        apex = rng.uniform(0.0, 1.0)
        pts = [(apex, 0), (1, 1), (0, 1)]
    elif kind == "star":
        pts = []
        for i in range(10):
            radius = 0.5 if i % 2 == 0 else 0.22
            angle = -math.pi / 2 + i * math.pi / 5
            pts.append((0.5 + radius * math.cos(angle), 0.5 + radius * math.sin(angle)))
        arr = np.array(pts)
        arr = (arr - arr.min(0)) / (arr.max(0) - arr.min(0))
        pts = [tuple(p) for p in arr]
    elif kind == "cross":
        t = rng.uniform(0.25, 0.4)
        a, b = 0.5 - t / 2, 0.5 + t / 2
        pts = [(a, 0), (b, 0), (b, a), (1, a), (1, b), (b, b), (b, 1), (a, 1), (a, b), (0, b), (0, a), (a, a)]
    else:
        return None
    poly = np.array([(x1 + px * (w - 1), y1 + py * (h - 1)) for px, py in pts])
    return np.round(poly).astype(np.int32)


def _draw_object(target: np.ndarray, box: Box, poly: np.ndarray | None, value) -> None:
    """Fill the shape (``poly``, or the ellipse inscribed in ``box`` when None) with ``value``."""
    x1, y1, x2, y2 = box
    if poly is None:
        centre = ((x1 + x2) // 2, (y1 + y2) // 2)
        axes = ((x2 - x1 - 1) // 2, (y2 - y1 - 1) // 2)
        cv2.ellipse(target, centre, axes, 0, 0, 360, value, -1, cv2.LINE_8)
    else:
        cv2.fillPoly(target, [poly], value, cv2.LINE_8)


def _contrasting_colour(rng: np.random.Generator, background: np.ndarray) -> Tuple[int, int, int]:
    mean = background.reshape(-1, 3).mean(0)
    for _ in range(20):
        colour = rng.integers(0, 256, size=3)
        if np.abs(colour - mean).sum() > 150:
            break
    return tuple(int(c) for c in colour)  # type: ignore[return-value]  # always 3 values


def render_image(seed: int, index: int) -> Tuple[np.ndarray, List[Tuple[str, Box]]]:
    """Draw image ``index`` of the data set made from ``seed``.

    Returns:
        image: (H, W, 3) uint8 BGR, H in [240, 400], W in [320, 480].
        objects: (class name, (xmin, ymin, xmax, ymax)) in pixels, VOC's 1-based inclusive convention.
    """
    rng = np.random.default_rng([seed, index])
    height, width = int(rng.integers(240, 401)), int(rng.integers(320, 481))
    image = _background(rng, height, width)
    masks: List[np.ndarray] = []
    objects: List[Tuple[str, Box]] = []
    for _ in range(int(rng.integers(1, 7))):
        kind = SHAPE_CLASSES[int(rng.integers(len(SHAPE_CLASSES)))]
        size = math.exp(rng.uniform(math.log(30), math.log(0.8 * min(height, width))))
        aspect = math.exp(rng.uniform(math.log(0.5), math.log(2.0)))
        w = int(min(width - 2, max(12, size * math.sqrt(aspect))))
        h = int(min(height - 2, max(12, size / math.sqrt(aspect))))
        x1 = int(rng.integers(0, width - w))
        y1 = int(rng.integers(0, height - h))
        box = (x1, y1, x1 + w, y1 + h)
        colour = _contrasting_colour(rng, image[y1 : y1 + h, x1 : x1 + w])
        poly = _shape_polygon(kind, box, rng)
        mask = np.zeros((height, width), dtype=np.uint8)
        _draw_object(mask, box, poly, 255)
        # Partial overlap is welcome; hiding most of an earlier object is not (its label would lie).
        if any(((m > 0) & (mask == 0)).sum() < 0.6 * (m > 0).sum() for m in masks):
            continue
        _draw_object(image, box, poly, colour)
        for m in masks:
            m[mask > 0] = 0
        masks.append(mask)
        ys, xs = np.nonzero(mask)
        objects.append((kind, (int(xs.min()) + 1, int(ys.min()) + 1, int(xs.max()) + 1, int(ys.max()) + 1)))
    return image, objects


def annotation_xml(image_id: str, size: Tuple[int, int], objects: Sequence[Tuple[str, Box]]) -> str:
    height, width = size
    parts = [
        "<annotation>",
        "  <folder>VOC2007</folder>",
        f"  <filename>{image_id}.jpg</filename>",
        "  <source><database>ssd-edge synthetic shapes</database></source>",
        f"  <size><width>{width}</width><height>{height}</height><depth>3</depth></size>",
    ]
    for name, (x1, y1, x2, y2) in objects:
        parts += [
            "  <object>",
            f"    <name>{name}</name><pose>Unspecified</pose><truncated>0</truncated><difficult>0</difficult>",
            f"    <bndbox><xmin>{x1}</xmin><ymin>{y1}</ymin><xmax>{x2}</xmax><ymax>{y2}</ymax></bndbox>",
            "  </object>",
        ]
    parts.append("</annotation>")
    return "\n".join(parts) + "\n"


def dataset_description(seed: int, splits: Dict[str, int]) -> dict:
    return {"generator": "ssd-edge synthetic shapes", "version": GENERATOR_VERSION, "seed": seed,
            "splits": dict(splits), "classes": list(SHAPE_CLASSES)}


def generate(root: Path, seed: int = DEFAULT_SEED, splits: Dict[str, int] | None = None,
             progress: bool = False) -> Path:
    """Write the data set under ``root`` (replaced whole, via a temporary folder) and return ``root``."""
    splits = dict(DEFAULT_SPLITS if splits is None else splits)
    root = Path(root)
    with generated_folder(root, dataset_description(seed, splits)) as tmp:
        voc = tmp / "VOCdevkit" / f"VOC{YEAR}"
        for sub in ("JPEGImages", "Annotations", "ImageSets/Main"):
            (voc / sub).mkdir(parents=True)
        index = 0
        ids_by_split: Dict[str, List[str]] = {}
        total = sum(splits.values())
        for split, count in splits.items():
            ids_by_split[split] = []
            for _ in range(count):
                image_id = f"{index:06d}"
                image, objects = render_image(seed, index)
                cv2.imwrite(str(voc / "JPEGImages" / f"{image_id}.jpg"), image, [cv2.IMWRITE_JPEG_QUALITY, 92])
                (voc / "Annotations" / f"{image_id}.xml").write_text(
                    annotation_xml(image_id, image.shape[:2], objects))
                ids_by_split[split].append(image_id)
                index += 1
                if progress and index % 200 == 0:
                    print(f"  synthetic data: {index}/{total} images", flush=True)
        if "train" in ids_by_split and "val" in ids_by_split:
            ids_by_split["trainval"] = ids_by_split["train"] + ids_by_split["val"]
        for split, ids in ids_by_split.items():
            (voc / "ImageSets" / "Main" / f"{split}.txt").write_text("".join(i + "\n" for i in ids))
        (voc / "classes.txt").write_text("".join(c + "\n" for c in SHAPE_CLASSES))
    return root


@contextlib.contextmanager
def generated_folder(root: Path, description: dict) -> Iterator[Path]:
    """A temporary folder beside ``root`` to write a generated data set into; on success it is stamped with
    ``description`` (DATASET.json, what :func:`is_generated` checks) and replaces ``root`` whole, on error it
    is removed, so a killed generation never leaves a partial set where a complete one is expected."""
    root.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".tmp-", dir=root.parent))
    try:
        yield tmp
        (tmp / "DATASET.json").write_text(json.dumps(description, indent=2) + "\n")
        replace_folder(tmp, root)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def default_cache_dir() -> Path:
    """Where generated data lives: $SSD_EDGE_CACHE, else .cache/ in the project root."""
    env = os.environ.get("SSD_EDGE_CACHE")
    return Path(env) if env else Path(__file__).resolve().parents[1] / ".cache"


def is_generated(root: Path, description: dict) -> bool:
    """Whether ``root`` holds a generated data set made from ``description`` (its DATASET.json stamp), so a
    cache made by other settings is generated again, never reused."""
    stamp = root / "DATASET.json"
    try:
        return stamp.is_file() and json.loads(stamp.read_text()) == description
    except ValueError:
        return False


def ensure_demo_dataset(root: Path | None = None, seed: int = DEFAULT_SEED, verbose: bool = True) -> Path:
    """The demo data set's folder, generated on first use (or when made by other settings)."""
    root = Path(root) if root is not None else default_cache_dir() / f"synthetic-shapes-{seed}"
    wanted = dataset_description(seed, DEFAULT_SPLITS)
    if is_generated(root, wanted):
        return root
    if verbose:
        print(f"Generating the demo data set (seed {seed}, {sum(DEFAULT_SPLITS.values())} images) in {root} ...",
              flush=True)
    return generate(root, seed, DEFAULT_SPLITS, progress=verbose)


# Public names of the drawing helpers, for calibration.synthetic_tracks (videos of the same shapes on the
# same backgrounds, so the demo model knows them); the data set above does not depend on these names.
draw_background = _background
shape_polygon = _shape_polygon
draw_object = _draw_object
contrasting_colour = _contrasting_colour
