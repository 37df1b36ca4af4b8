"""The camera's score threshold, in one place: its default and the load option that carries it to
:func:`runtimes.loader.load_detector`. The pipeline reads the threshold in use from ``detector.score_threshold``."""

from __future__ import annotations

from typing import Dict, Optional

# A model's own score threshold is for mAP: SSD's 0.01 keeps hundreds of boxes a frame, and their
# post-processing and records cost the host more CPU than decoding the frame. A camera keeps confident ones.
CAMERA_SCORE_THRESHOLD = 0.25


def score_options(given: Optional[float], track_low_score: Optional[float] = None) -> Dict[str, float]:
    """The load option for the camera's detector: ``given`` (``--score-threshold``) as ``score_threshold``;
    else the camera's default as ``default_score_threshold`` (never below a threshold built into the model),
    lowered to ``track_low_score`` when tracking: ByteTrack's second association needs those detections."""
    if given is not None:
        return {"score_threshold": given}
    low = CAMERA_SCORE_THRESHOLD if track_low_score is None else min(CAMERA_SCORE_THRESHOLD, track_low_score)
    return {"default_score_threshold": low}
