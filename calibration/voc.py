"""PASCAL VOC reader for the official VOCdevkit layout (VOC2007, VOC2012, and folders laid out alike).

Box convention: annotations store 1-based inclusive pixel corners; :class:`VOCObject` holds them as
continuous 0-based ``(x1, y1, x2, y2)`` = ``(xmin - 1, ymin - 1, xmax, ymax)``, the same frame in which
detectors report boxes, so IoU needs no ``+1`` terms.

Problems are collected, not raised: ids listed in the split with no image or annotation, XML that does not
parse (broken, numbers that are not numbers), objects of unknown classes, objects whose box is empty,
inverted or not finite (dropped) or reaches outside the image (clipped to it). :class:`SkipReport`
summarises them with a count and the first names.
"""

from __future__ import annotations

import math
import xml.etree.ElementTree as ET
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

from runtimes.class_names import read_class_names
from runtimes.errors import UserError
from runtimes.metadata import VOC_CLASSES


@dataclass
class VOCObject:
    name: str
    box: Tuple[float, float, float, float]
    difficult: bool


@dataclass
class VOCSample:
    image_id: str
    image_path: Path
    objects: List[VOCObject]
    width: int = 0
    height: int = 0

    def boxes(self) -> np.ndarray:
        return np.array([o.box for o in self.objects], dtype=np.float32).reshape(-1, 4)


@dataclass
class SkipReport:
    """Reasons things were skipped, each with the names involved (in order of discovery)."""

    reasons: "OrderedDict[str, List[str]]" = field(default_factory=OrderedDict)

    def add(self, reason: str, name: str) -> None:
        self.reasons.setdefault(reason, []).append(name)

    @property
    def total(self) -> int:
        return sum(len(v) for v in self.reasons.values())

    def lines(self, show: int = 3) -> List[str]:
        out = []
        for reason, names in self.reasons.items():
            more = f", ... (+{len(names) - show})" if len(names) > show else ""
            out.append(f"{len(names)} {reason}: {', '.join(names[:show])}{more}")
        return out


def find_year_dir(root: Path, year: str) -> Path:
    """Accept the folder holding VOCdevkit, VOCdevkit itself, or VOC<year> itself."""
    root = Path(root)
    for candidate in (root / "VOCdevkit" / f"VOC{year}", root / f"VOC{year}", root):
        if (candidate / "Annotations").is_dir() or (candidate / "JPEGImages").is_dir():
            return candidate
    raise UserError(f"{root}: no VOCdevkit/VOC{year} with Annotations/ and JPEGImages/ under it; pass the "
                    "folder that holds VOCdevkit (or --year for another VOC year)")


def _number(text: Optional[str], what: str) -> float:
    """A finite number from an XML field; ValueError naming the field otherwise."""
    value = float((text or "").strip())  # ValueError for text that is not a number
    if not math.isfinite(value):
        raise ValueError(f"{what} is {text!r}")
    return value


def parse_annotation(path: Path, problems: Optional[List[str]] = None) -> Tuple[List[VOCObject], int, int]:
    """The objects of a VOC annotation file, and the image (width, height) it states (0 when absent).

    Raises ``ET.ParseError`` for broken XML and ValueError for sizes or corners that are not finite numbers.
    Objects whose box is empty or inverted (negative size) are dropped; boxes reaching outside a stated image
    size are clipped to it; each is named in ``problems`` when given."""
    root = ET.parse(path).getroot()  # raises ET.ParseError on broken XML
    size = root.find("size")
    width = int(_number(size.findtext("width", "0"), "width")) if size is not None else 0
    height = int(_number(size.findtext("height", "0"), "height")) if size is not None else 0
    if width < 0 or height < 0:
        raise ValueError(f"negative image size {width} x {height}")
    objects = []
    for obj in root.iter("object"):
        bb = obj.find("bndbox")
        if bb is None:
            continue
        x1, y1, x2, y2 = (_number(bb.findtext(k), k) for k in ("xmin", "ymin", "xmax", "ymax"))
        box = (x1 - 1.0, y1 - 1.0, x2, y2)
        if width > 0 and height > 0:
            clipped = (min(max(box[0], 0.0), width), min(max(box[1], 0.0), height),
                       min(max(box[2], 0.0), width), min(max(box[3], 0.0), height))
            if clipped != box and clipped[2] > clipped[0] and clipped[3] > clipped[1] and problems is not None:
                problems.append("objects with boxes outside the image (clipped to it)")
            box = clipped
        if not (box[2] > box[0] and box[3] > box[1]):
            if problems is not None:
                problems.append("objects with empty or inverted boxes (dropped)")
            continue
        objects.append(VOCObject(
            name=(obj.findtext("name") or "").strip(),
            box=box,
            difficult=(obj.findtext("difficult") or "0").strip() == "1",
        ))
    return objects, width, height


class VOCDataset:
    """The samples of one VOC split, in the order the split file lists them.

    Args:
        root: folder holding ``VOCdevkit`` (or VOCdevkit, or ``VOC<year>`` itself).
        year: "2007", "2012", ...
        split: a file name in ``ImageSets/Main`` without ``.txt`` ("test", "trainval", "train", "val").
        class_names: the classes to keep (objects of other classes are reported and dropped). Default:
            ``classes.txt`` beside Annotations when present, else VOC's 20 classes.
    """

    def __init__(self, root: Path, year: str = "2007", split: str = "test",
                 class_names: Optional[Sequence[str]] = None) -> None:
        self.year_dir = find_year_dir(Path(root), str(year))
        self.split = split
        classes_file = self.year_dir / "classes.txt"
        if class_names is None:
            class_names = read_class_names(classes_file) if classes_file.is_file() else list(VOC_CLASSES)
        self.class_names = list(class_names)
        self.skipped = SkipReport()
        self.samples = self._load()

    def _split_ids(self) -> List[str]:
        split_file = self.year_dir / "ImageSets" / "Main" / f"{self.split}.txt"
        if not split_file.is_file():
            available = sorted(p.stem for p in (self.year_dir / "ImageSets" / "Main").glob("*.txt")
                               if "_" not in p.stem)
            raise UserError(f"{self.year_dir}: no split '{self.split}' (ImageSets/Main/{self.split}.txt); "
                            f"available: {', '.join(available) or 'none'}")
        return [line.split()[0] for line in split_file.read_text(errors="replace").splitlines() if line.strip()]

    def _load(self) -> List[VOCSample]:
        known = set(self.class_names)
        samples = []
        for image_id in self._split_ids():
            image_path = self.year_dir / "JPEGImages" / f"{image_id}.jpg"
            xml_path = self.year_dir / "Annotations" / f"{image_id}.xml"
            if not image_path.is_file():
                self.skipped.add("listed in the split but have no image", image_id)
                continue
            if not xml_path.is_file():
                self.skipped.add("listed in the split but have no annotation", image_id)
                continue
            problems: List[str] = []
            try:
                objects, width, height = parse_annotation(xml_path, problems)
            except (ET.ParseError, ValueError, LookupError, OSError) as exc:  # LookupError: unknown encoding
                self.skipped.add(f"annotations that do not parse ({type(exc).__name__})", image_id)
                continue
            for problem in problems:
                self.skipped.add(problem, image_id)
            for obj in objects:
                if obj.name not in known:
                    self.skipped.add(f"objects of classes not in the class list ({obj.name})", image_id)
            objects = [o for o in objects if o.name in known]
            samples.append(VOCSample(image_id, image_path, objects, width, height))
        return samples

    def __len__(self) -> int:
        return len(self.samples)

    def label_of(self, name: str) -> int:
        """1-based label (0 is the background), as detectors number classes."""
        return self.class_names.index(name) + 1

    def class_counts(self) -> Dict[str, int]:
        counts: Dict[str, int] = {}
        for sample in self.samples:
            for obj in sample.objects:
                counts[obj.name] = counts.get(obj.name, 0) + 1
        return counts
