"""The calibration image stream: which images, in which order, through the ONE preprocessing function.

Every INT8 route (NNCF for OpenVINO, TensorRT's implicit calibrator, the Q/DQ ONNX quantizer) draws from
:class:`CalibrationStream`, so they all see exactly the same tensors. The selection is a seeded
permutation of the source's images, checked image by image (unreadable ones are skipped and reported),
and recorded (:meth:`CalibrationSet.record`) in every cache and model built from it.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional

import numpy as np

from calibration.images import IMAGE_SUFFIXES, UnreadableImage, read_image
from calibration.voc import SkipReport, VOCDataset, find_year_dir
from runtimes.errors import UserError
from runtimes.preprocess import Preprocessor

DEFAULT_CALIB_IMAGES = 300
DEFAULT_SEED = 0


@dataclass
class CalibrationSet:
    """The chosen images, in the order every calibrator sees them."""

    source: str
    paths: List[Path]
    requested: int
    seed: int
    content_sha256: str
    skipped: SkipReport = field(default_factory=SkipReport)
    notes: SkipReport = field(default_factory=SkipReport)

    def record(self) -> Dict[str, Any]:
        """What the calibration was made from, for caches and model metadata."""
        return {"source": self.source, "images": len(self.paths), "requested": self.requested,
                "seed": self.seed, "image_list_sha256": self.content_sha256,
                "first_images": [p.name for p in self.paths[:3]]}

    def describe(self) -> str:
        return (f"{len(self.paths)} calibration images from {self.source} (seed {self.seed}, "
                f"list sha256 {self.content_sha256[:12]})")


def _candidates(source: Path, year: str, split: str) -> List[Path]:
    if not source.exists():
        raise UserError(f"{source}: no such calibration folder; pass a VOC root or a folder of images "
                        "to --calib-data")
    if not source.is_dir():
        raise UserError(f"{source}: --calib-data must be a folder (a VOC root or a folder of images)")
    try:
        year_dir = find_year_dir(source, year)
    except UserError:
        year_dir = None
    if year_dir is not None and (year_dir / "ImageSets" / "Main").is_dir():
        return [s.image_path for s in VOCDataset(source, year, split, class_names=[]).samples]
    files = sorted(p for p in source.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
    if not files:
        raise UserError(f"{source}: no images found (looked for {', '.join(IMAGE_SUFFIXES)}); "
                        "point --calib-data at a VOC root or a folder of images")
    return files


def select_images(source: Path, count: int = DEFAULT_CALIB_IMAGES, seed: int = DEFAULT_SEED,
                  year: str = "2007", split: str = "trainval") -> CalibrationSet:
    """Pick ``count`` readable images from ``source`` (a VOC root: the ``split``; else every image under
    it) in a seeded random order."""
    if count < 1:
        raise UserError(f"--calib-images must be at least 1, got {count}")
    source = Path(source)
    candidates = _candidates(source, year, split)
    order = np.random.default_rng(seed).permutation(len(candidates))
    chosen: List[Path] = []
    skipped, notes = SkipReport(), SkipReport()
    digest = hashlib.sha256()
    for i in order:
        path = candidates[int(i)]
        try:
            _, note = read_image(path)
        except UnreadableImage as exc:
            skipped.add(f"unusable images ({exc})", path.name)
            continue
        if note:
            notes.add(f"images converted ({note})", path.name)
        chosen.append(path)
        digest.update(path.name.encode() + b"\0" + hashlib.sha256(path.read_bytes()).digest())
        if len(chosen) == count:
            break
    if not chosen:
        reasons = "; ".join(skipped.lines()) or "none found"
        raise UserError(f"{source}: no usable calibration images ({reasons}); point --calib-data at "
                        "readable JPEG/PNG images")
    return CalibrationSet(str(source), chosen, count, seed, digest.hexdigest(), skipped, notes)


def calibration_images(data: "Path | None", count: int = DEFAULT_CALIB_IMAGES, seed: int = DEFAULT_SEED,
                       year: str = "2007", split: Optional[str] = None, demo: bool = False,
                       verbose: bool = True) -> CalibrationSet:
    """The calibration set a build draws: from ``data`` (a VOC root's ``split``, default trainval, or a folder
    of images), or, for the demo model (``demo``), from the demo data set's train split; a UserError when a
    model of one's own has no ``data``."""
    if data is None:
        if not demo:
            raise UserError("--int8 needs calibration images for your model: pass --calib-data "
                            "(a VOC root or a folder of images)")
        from calibration.synthetic import ensure_demo_dataset

        return select_images(ensure_demo_dataset(verbose=verbose), count, seed, year, split or "train")
    return select_images(Path(data), count, seed, year, split or "trainval")


class CalibrationStream:
    """Preprocessed batches of a :class:`CalibrationSet`: (batch, 3, H, W) float32, the last batch
    possibly smaller (``drop_last`` drops it, for calibrators that need full batches)."""

    def __init__(self, images: CalibrationSet, preprocessor: Preprocessor, batch_size: int = 1,
                 drop_last: bool = False, limit: Optional[int] = None) -> None:
        self.images = images
        self.preprocessor = preprocessor
        self.batch_size = int(batch_size)
        self.drop_last = drop_last
        self.paths = images.paths[:limit] if limit else images.paths

    def __len__(self) -> int:
        full, rest = divmod(len(self.paths), self.batch_size)
        return full + (0 if self.drop_last or not rest else 1)

    def __iter__(self) -> Iterator[np.ndarray]:
        for start in range(0, len(self.paths), self.batch_size):
            chunk = self.paths[start:start + self.batch_size]
            if self.drop_last and len(chunk) < self.batch_size:
                return
            yield np.concatenate([self.preprocessor(read_image(p)[0]) for p in chunk], axis=0)

    def samples(self) -> Iterator[np.ndarray]:
        """One (1, 3, H, W) tensor per image."""
        for path in self.paths:
            yield self.load(path)

    def load(self, path: Path) -> np.ndarray:
        """One image as calibrators see it: the preprocessor's tensor for the graph's input contract, e.g.
        (1, 3, H, W) normalised for an exported ONNX, (1, H, W, 3) resized pixels for an IR that normalises
        in its graph."""
        return self.preprocessor(read_image(path)[0])
