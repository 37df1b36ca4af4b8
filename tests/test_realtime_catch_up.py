"""A realtime file late by more than streams.sources.CATCH_UP_S moves its clock on instead of decoding every
frame it is late for (16 1080p files on 2 cores fell ever further behind that way: 6 frames each in 12 s), and
the capture layer counts those frames as dropped."""

from __future__ import annotations

import time

import cv2
import numpy as np

from streams.sources import CATCH_UP_S, VideoReader, parse_source


def _video(path, frames: int, fps: float = 25.0) -> None:
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), fps, (64, 48))
    for i in range(frames):
        writer.write(np.full((48, 64, 3), i % 256, np.uint8))
    writer.release()


def test_a_file_far_behind_moves_its_clock_on_and_counts_the_frames_lost(tmp_path):
    _video(tmp_path / "v.avi", 200)
    reader = VideoReader(parse_source(str(tmp_path / "v.avi")), realtime=True)
    try:
        assert reader.read()[0] == 0
        reader.start_clock(time.monotonic() - 4.0)  # as if decoding had stalled for 4 s: 100 frames due
        index, _ = reader.read()
        catch_up = max(1, int(CATCH_UP_S * reader.fps))
        assert index == 1 + catch_up  # skipped by decoding up to the bound, not all 100
        assert 100 - catch_up - 2 <= reader.lost <= 100 - catch_up + 2
        late = time.monotonic() - reader.start - (index + 1) / reader.fps
        assert late < 2 * CATCH_UP_S  # its clock moved on: the next frame is (nearly) due, not 4 s overdue
        before = reader.lost
        assert reader.read()[0] == index + 1 and reader.lost == before  # on time again: nothing more lost
    finally:
        reader.close()
