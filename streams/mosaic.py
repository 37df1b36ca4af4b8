"""All streams in one window: their latest annotated frames tiled in a grid, each labelled with its name."""

from __future__ import annotations

import math
from typing import List, Optional, Sequence, Tuple

import numpy as np

TILE = (640, 360)  # width, height of one tile


def grid(count: int) -> Tuple[int, int]:
    """(columns, rows) for ``count`` tiles: as square as possible, wider than tall."""
    columns = max(1, math.ceil(math.sqrt(count)))
    return columns, max(1, math.ceil(count / columns))


def mosaic(tiles: Sequence[Tuple[str, Optional[np.ndarray]]], tile: Tuple[int, int] = TILE) -> np.ndarray:
    """One BGR image holding each (name, frame) letterboxed into a ``tile``-sized cell, in order; a single
    frame is returned as it is."""
    import cv2

    if len(tiles) == 1 and tiles[0][1] is not None:
        return tiles[0][1]
    columns, rows = grid(len(tiles))
    width, height = tile
    canvas = np.zeros((rows * height, columns * width, 3), np.uint8)
    cells: List[Tuple[int, int]] = [(i % columns, i // columns) for i in range(len(tiles))]
    for (name, frame), (col, row) in zip(tiles, cells):
        x0, y0 = col * width, row * height
        if frame is not None:
            scale = min(width / frame.shape[1], height / frame.shape[0])
            w, h = max(1, int(frame.shape[1] * scale)), max(1, int(frame.shape[0] * scale))
            ox, oy = x0 + (width - w) // 2, y0 + (height - h) // 2
            canvas[oy:oy + h, ox:ox + w] = cv2.resize(frame, (w, h), interpolation=cv2.INTER_AREA)
        cv2.putText(canvas, name, (x0 + 8, y0 + height - 10), cv2.FONT_HERSHEY_SIMPLEX, 0.6, (0, 0, 0), 3,
                    cv2.LINE_AA)
        cv2.putText(canvas, name, (x0 + 8, y0 + height - 10), cv2.FONT_HERSHEY_SIMPLEX, 0.6, (255, 255, 255), 1,
                    cv2.LINE_AA)
    return canvas
