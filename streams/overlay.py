"""Drawing detections, frame rate and per-stage latency onto a frame."""

from __future__ import annotations

from typing import Dict

import cv2
import numpy as np

from runtimes.detections import Detections


def colour_for(label: int):
    hue = (label * 47) % 180
    bgr = cv2.cvtColor(np.array([[[hue, 200, 255]]], dtype=np.uint8), cv2.COLOR_HSV2BGR)[0, 0]
    return tuple(int(c) for c in bgr)


def draw(frame: np.ndarray, detections: Detections, fps: float, stages_ms: Dict[str, float]) -> np.ndarray:
    """Boxes with class name and score, then an FPS and stage-latency panel, drawn in place."""
    for box, score, label, name in zip(detections.boxes, detections.scores, detections.labels, detections.names):
        x1, y1, x2, y2 = (int(round(float(v))) for v in box)
        colour = colour_for(int(label))
        cv2.rectangle(frame, (x1, y1), (x2, y2), colour, 2)
        text = f"{name} {score:.2f}"
        (tw, th), _ = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, 0.5, 1)
        cv2.rectangle(frame, (x1, max(0, y1 - th - 6)), (x1 + tw + 4, y1), colour, -1)
        cv2.putText(frame, text, (x1 + 2, max(th, y1 - 4)), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (0, 0, 0), 1, cv2.LINE_AA)
    lines = [f"{fps:5.1f} FPS"] + [f"{k[:5]} {v:6.1f} ms" for k, v in stages_ms.items()]
    for i, line in enumerate(lines):
        y = 20 + 18 * i
        cv2.putText(frame, line, (8, y), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (0, 0, 0), 3, cv2.LINE_AA)
        cv2.putText(frame, line, (8, y), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (255, 255, 255), 1, cv2.LINE_AA)
    return frame
