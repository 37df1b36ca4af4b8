"""Running a detector over a VOC split and scoring it with the VOC metric."""

from __future__ import annotations

from typing import Dict, Optional

import numpy as np

from calibration.images import UnreadableImage, read_image
from calibration.progress import progress
from calibration.voc import SkipReport, VOCDataset
from calibration.voc_map import GroundTruth, ImageDetections, MapResult, evaluate
from runtimes.detector import Detector
from runtimes.errors import UserError


def ground_truth(dataset: VOCDataset) -> Dict[str, GroundTruth]:
    return {
        s.image_id: GroundTruth(s.boxes(), [o.name for o in s.objects],
                                np.array([o.difficult for o in s.objects], dtype=bool))
        for s in dataset.samples
    }


def detect_split(detector: Detector, dataset: VOCDataset, limit: Optional[int] = None,
                 show_progress: bool = True, skipped: Optional[SkipReport] = None) -> Dict[str, ImageDetections]:
    """Detections of every readable image of ``dataset`` (the first ``limit``), keyed by image id."""
    samples = dataset.samples[:limit] if limit else dataset.samples
    unknown = sorted(set(dataset.class_names) - set(detector.class_names))
    if len(unknown) == len(dataset.class_names):
        raise UserError(f"the model's classes ({', '.join(detector.class_names[1:6])}, ...) share none with the "
                        f"data set's ({', '.join(dataset.class_names[:5])}, ...); wrong --voc-root or model?")
    results: Dict[str, ImageDetections] = {}
    for sample in progress(samples, len(samples), "evaluating", show_progress):
        try:
            image, _ = read_image(sample.image_path)
        except UnreadableImage as exc:
            if skipped is not None:
                skipped.add(f"images skipped ({exc})", sample.image_id)
            continue
        dets = detector(image)
        results[sample.image_id] = ImageDetections(dets.boxes, dets.scores, dets.names)
    return results


def evaluate_detector(detector: Detector, dataset: VOCDataset, metric: str = "voc07", limit: Optional[int] = None,
                      show_progress: bool = True) -> MapResult:
    """mAP of ``detector`` on ``dataset`` (images that cannot be read are left out of both sides)."""
    detections = detect_split(detector, dataset, limit, show_progress, dataset.skipped)
    truth = {k: v for k, v in ground_truth(dataset).items() if k in detections}
    return evaluate(truth, detections, dataset.class_names, metric)
