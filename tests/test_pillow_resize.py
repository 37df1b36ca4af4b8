"""runtimes/pillow_resize.py gives Pillow's own bilinear resize, pixel for pixel, on the shapes where its
arithmetic branches: shrinking (the filter widens), enlarging, one axis only, and both pass orders."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from runtimes.pillow_resize import pillow_bilinear

SHAPES = [
    ((375, 500), (300, 300)),  # landscape shrink: horizontal pass first
    ((500, 353), (300, 300)),  # the height shrinks over twice the width's: vertical pass first
    ((330, 310), (300, 300)),  # same rule, close to its edge
    ((401, 400), (300, 300)),  # just inside the horizontal-first side
    ((7, 5), (240, 320)),  # enlarging
    ((300, 640), (300, 300)),  # width only
    ((1080, 1920), (240, 320)),  # a camera frame, wide filters
]


@pytest.mark.parametrize("source,target", SHAPES)
def test_equals_pillow(source, target):
    rng = np.random.default_rng(sum(source))
    image = rng.integers(0, 256, (*source, 3), dtype=np.uint8)
    image[: source[0] // 2] //= 4  # an edge, so rounding between the passes matters
    height, width = target
    want = np.asarray(Image.fromarray(image).resize((width, height), Image.Resampling.BILINEAR))
    got = pillow_bilinear(image, width, height)
    assert got.dtype == np.uint8 and got.shape == want.shape
    assert np.array_equal(got, want), np.abs(got.astype(int) - want).max()
