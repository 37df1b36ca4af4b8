"""A scene for motion gating tests, importable without pytest (the device Python runs it too)."""

from __future__ import annotations

from typing import Iterator, Optional, Tuple

import numpy as np

SIZE = (1280, 720)  # width, height


def moving_square_scene(frames: int, moving_from: int, seed: int = 0
                        ) -> Iterator[Tuple[np.ndarray, Optional[Tuple[int, int, int, int]]]]:
    """A textured still background with sensor noise; from ``moving_from`` a textured 120 px square crosses
    it at 25 px a frame (a plain one would show only its edges: its inside overlaps its last position)."""
    rng = np.random.default_rng(seed)
    square = np.kron(rng.integers(0, 256, (12, 12, 3)), np.ones((10, 10, 1))).astype(np.uint8)
    background = rng.integers(60, 200, (SIZE[1] // 16, SIZE[0] // 16, 3)).astype(np.uint8)
    background = np.kron(background, np.ones((16, 16, 1), np.uint8))
    for t in range(frames):
        frame = np.clip(background + rng.normal(0, 3, background.shape), 0, 255).astype(np.uint8)
        box = None
        if t >= moving_from:
            x = 100 + 25 * (t - moving_from)
            box = (x, 300, x + 120, 420)
            frame[300:420, x:x + 120] = square
        yield frame, box
