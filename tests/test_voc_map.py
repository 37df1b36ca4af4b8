"""The VOC metric against hand-computed cases and against perturbed copies of real annotations."""

from __future__ import annotations

import math

import numpy as np
import pytest

from calibration.evaluation import ground_truth
from calibration.voc import VOCDataset
from calibration.voc_map import GroundTruth, ImageDetections, average_precision, evaluate


def gt(boxes, labels, difficult=None):
    return GroundTruth(np.array(boxes, float).reshape(-1, 4), labels,
                       np.array(difficult if difficult is not None else [False] * len(labels)))


def dets(boxes, scores, labels):
    return ImageDetections(np.array(boxes, float).reshape(-1, 4), np.array(scores, float), labels)


def test_hand_computed_ap_both_metrics():
    # 3 objects; detections by score: TP, FP, TP, FP -> recall 1/3, 1/3, 2/3, 2/3; precision 1, 1/2, 2/3, 1/2.
    truth = {"a": gt([[0, 0, 10, 10], [20, 20, 30, 30]], ["cat", "cat"]), "b": gt([[0, 0, 10, 10]], ["cat"])}
    found = {
        "a": dets([[0, 0, 10, 10], [50, 50, 60, 60], [20, 20, 30, 31]], [0.9, 0.8, 0.7], ["cat"] * 3),
        "b": dets([[40, 40, 50, 50]], [0.6], ["cat"]),
    }
    # VOC07: thresholds 0..0.3 -> 1.0 (4 of them), 0.4..0.6 -> 2/3 (3), 0.7..1.0 -> 0 (4).
    assert evaluate(truth, found, ["cat"], "voc07").per_class["cat"] == pytest.approx((4 + 3 * 2 / 3) / 11, abs=1e-12)
    # VOC12: area under the envelope: 1/3 * 1 + 1/3 * 2/3.
    assert evaluate(truth, found, ["cat"], "voc12").per_class["cat"] == pytest.approx(1 / 3 + 2 / 9, abs=1e-12)


def test_duplicates_are_false_positives_and_difficult_is_ignored():
    truth = {"a": gt([[0, 0, 10, 10], [20, 20, 30, 30]], ["dog", "dog"], [False, True])}
    found = {"a": dets([[0, 0, 10, 10], [0, 0, 10, 10], [20, 20, 30, 30]], [0.9, 0.8, 0.7], ["dog"] * 3)}
    result = evaluate(truth, found, ["dog"], "voc12")
    # TP (recall 1, precision 1), then a duplicate FP; the difficult match is ignored: AP = 1.
    assert result.per_class["dog"] == pytest.approx(1.0)
    assert result.positives["dog"] == 1


def test_iou_must_exceed_one_half():
    truth = {"a": gt([[0, 0, 10, 10]], ["cat"])}
    # IoU exactly 0.5 (10x10 vs 10x20 overlapping in 10x10): not a match, as in the devkit (ov > 0.5).
    assert evaluate(truth, {"a": dets([[0, 0, 10, 20]], [0.9], ["cat"])}, ["cat"]).map == 0.0
    assert evaluate(truth, {"a": dets([[0, 0, 10, 19]], [0.9], ["cat"])}, ["cat"]).map == 1.0


def test_11_point_interpolation_on_a_known_curve():
    recall = np.array([0.2, 0.4, 0.4, 0.8])
    precision = np.array([1.0, 1.0, 0.5, 0.6])
    # t=0..0.4 -> 1.0 (5 points), t=0.5..0.8 -> 0.6 (4 points), t=0.9, 1.0 -> 0.
    assert average_precision(recall, precision, "voc07") == pytest.approx((5 + 4 * 0.6) / 11)


def test_on_real_voc_annotations_perfect_shifted_and_missing(voc_mini):
    dataset = VOCDataset(voc_mini, "2007", "test")
    truth = ground_truth(dataset)
    perfect = {k: dets(v.boxes, np.linspace(1, 0.5, len(v.labels)), v.labels) for k, v in truth.items()}
    shifted = {k: dets(v.boxes + np.array([6, 6, 6, 6]), np.linspace(1, 0.5, len(v.labels)), v.labels)
               for k, v in truth.items()}
    no_person = {k: dets(v.boxes[[n != "person" for n in v.labels]], np.ones(sum(n != "person" for n in v.labels)),
                         [n for n in v.labels if n != "person"]) for k, v in truth.items()}
    names = dataset.class_names
    r_perfect = evaluate(truth, perfect, names)
    r_shifted = evaluate(truth, shifted, names)
    r_missing = evaluate(truth, no_person, names)
    assert r_perfect.map == 1.0
    assert 0.0 < r_shifted.map < r_perfect.map
    assert r_missing.per_class["person"] == 0.0 and r_missing.per_class["car"] == 1.0
    assert r_missing.map < r_perfect.map
    # Classes absent from voc-mini (bird, boat, cow, motorbike, sheep) have no AP and stay out of the mean.
    absent = [n for n, ap in r_perfect.per_class.items() if math.isnan(ap)]
    assert sorted(absent) == ["bird", "boat", "cow", "motorbike", "sheep"]
