"""Motion gating (streams/motion.py): a static scene is skipped but for a detection every max_skip frames,
a moving object makes every frame it moves in need the detector and gets a motion box around it, a mask hides
motion, bad options are one line."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from analytics.tracker import iou_matrix
from runtimes.errors import UserError
from streams.motion import MotionGate, MotionOptions, parse_mask
from tests.motion_scene import moving_square_scene as _scene
from tests.system_python import run_system_python

ROOT = Path(__file__).resolve().parents[1]
def test_a_static_scene_is_detected_only_every_max_skip_frames():
    gate = MotionGate(MotionOptions(max_skip=10))
    results = [gate.check(frame) for frame, _ in _scene(40, moving_from=10 ** 6)]
    assert [t for t, r in enumerate(results) if r.detect] == [0, 10, 20, 30]  # the first frame, then max_skip
    assert not any(r.moving for r in results) and all(r.boxes.shape == (0, 4) for r in results)


def test_a_moving_object_needs_the_detector_and_its_motion_box_covers_it():
    gate = MotionGate(MotionOptions(max_skip=100))
    results, boxes = [], []
    for frame, box in _scene(30, moving_from=15):
        results.append(gate.check(frame))
        boxes.append(box)
    assert [t for t, r in enumerate(results) if r.detect] == [0] + list(range(15, 30))
    for t in range(16, 30):  # the square is where motion is boxed (plus what is left of its trail in the average)
        found = results[t].boxes
        assert found.dtype == np.float32 and found.shape[1] == 4
        x1, y1, x2, y2 = boxes[t]
        inside_w = np.clip(np.minimum(found[:, 2], x2) - np.maximum(found[:, 0], x1), 0, None)
        inside_h = np.clip(np.minimum(found[:, 3], y2) - np.maximum(found[:, 1], y1), 0, None)
        assert (inside_w * inside_h / (120 * 120)).max() >= 0.8, (t, found.tolist())  # one box covers the square
        assert iou_matrix(found, np.array([boxes[t]], np.float32)).max() > 0.3  # and not the whole frame


def test_motion_inside_the_mask_is_ignored():
    mask = parse_mask("0,280 1280,280 1280,440 0,440")  # the square's whole path
    gate = MotionGate(MotionOptions(max_skip=100, mask=mask))
    results = [gate.check(frame) for frame, _ in _scene(30, moving_from=15)]
    assert [t for t, r in enumerate(results) if r.detect] == [0] and not any(r.moving for r in results)


@pytest.mark.parametrize("make, words", [
    (lambda: MotionOptions(max_skip=0), "--motion-max-skip 0: below 1"),
    (lambda: MotionOptions(threshold=300), "--motion-threshold 300"),
    (lambda: parse_mask("0,0 10,0 nope"), "is not points like"),
    (lambda: parse_mask("0,0 10,0"), "has 2 points"),
    (lambda: MotionGate(MotionOptions(mask=parse_mask("0,0 1400,0 1400,50"))).check(np.zeros((720, 1280, 3),
                                                                                             np.uint8)),
     "point (1400, 0) is outside the 1280x720 frame"),
])
def test_bad_motion_options_are_one_line_naming_the_fix(make, words):
    with pytest.raises(UserError) as error:
        make()
    message = str(error.value)
    assert words in message and "\n" not in message and ("give" in message or "separate" in message)


def test_the_same_verdicts_under_the_device_python():
    """Debian's /usr/bin/python3 (numpy 1.x, OpenCV 4.6) stands in for JetPack."""
    code = f"""
import sys, json
sys.path.insert(0, {str(ROOT)!r})
import numpy as np
from streams.motion import MotionGate, MotionOptions
from tests.motion_scene import moving_square_scene as _scene
gate = MotionGate(MotionOptions(max_skip=10))
print(json.dumps([gate.check(frame).detect for frame, _ in _scene(30, moving_from=20)]))
"""
    result = run_system_python(code, "python3-opencv python3-numpy")
    assert result.returncode == 0, result.stderr[-2000:]
    gate = MotionGate(MotionOptions(max_skip=10))
    assert json.loads(result.stdout.strip().splitlines()[-1]) == [gate.check(f).detect for f, _ in _scene(30, 20)]
