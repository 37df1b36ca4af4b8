"""Tracking accuracy of the demo model + ByteTracker on the generated tracking set, measured with
py-motmetrics (calibration/tracking_accuracy.py): MOTA and IDF1 at least 0.80 with the detector on every
frame, ID switches printed; with the detector on every 2nd frame (the tracker's prediction between), MOTA and
IDF1 within 0.03 of every frame, measured on the same detections in the same test.
"""

from __future__ import annotations

import time
from typing import Any, List

import pytest

from analytics.tracker import ByteTracker
from calibration.tracking_accuracy import DetectedSequence, detect_set, evaluate

INTERVAL_TOLERANCE = 0.03  # issue #28's target: interval 2 within this of interval 1, for MOTA and IDF1


@pytest.fixture(scope="module")
def detected(demo_model) -> List[DetectedSequence]:
    """The demo model's detections on every frame of the set, once for all intervals."""
    from runtimes.loader import load_detector

    # A low score floor: ByteTrack's second association uses the detections between 0.1 and 0.5.
    detector = load_detector(demo_model[1], score_threshold=0.05)
    started = time.perf_counter()
    sequences = detect_set(detector)
    frames = sum(len(s.detections) for s in sequences)
    print(f"\n{frames} frames detected in {time.perf_counter() - started:.1f} s")
    return sequences


def _summary(detected: List[DetectedSequence], interval: int) -> Any:
    pytest.importorskip("motmetrics")
    classes = len(detected[0].detections[0].class_names)
    return evaluate(detected, interval, lambda: ByteTracker(num_classes=classes))  # the camera app's defaults


@pytest.mark.slow
def test_demo_model_and_tracker_reach_mota_and_idf1_of_0_8(detected):
    summary = _summary(detected, 1)
    print()
    print(summary.to_string())
    overall = summary.loc["OVERALL"]
    print(f"ID switches: {int(overall['num_switches'])}")
    assert overall["num_objects"] > 1000  # the set really has that much ground truth
    assert overall["mota"] >= 0.80
    assert overall["idf1"] >= 0.80
    assert overall["num_switches"] <= 0.02 * overall["num_objects"]


@pytest.mark.slow
def test_detecting_every_second_frame_keeps_mota_and_idf1_within_0_03(detected):
    overall = {interval: _summary(detected, interval).loc["OVERALL"] for interval in (1, 2, 4)}
    print()
    for interval, row in overall.items():
        print(f"interval {interval}: MOTA {row['mota']:.3f}  IDF1 {row['idf1']:.3f}  switches "
              f"{int(row['num_switches'])}  FP {int(row['num_false_positives'])}  misses {int(row['num_misses'])}")
    assert overall[2]["num_objects"] == overall[1]["num_objects"]  # every frame scored, predicted ones too
    assert overall[2]["mota"] >= overall[1]["mota"] - INTERVAL_TOLERANCE
    assert overall[2]["idf1"] >= overall[1]["idf1"] - INTERVAL_TOLERANCE
