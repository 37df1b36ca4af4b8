"""Camera rate beyond the box (issue #28): files played --realtime, like cameras, at more frames than the
box serves: every stream gets its share, the drops are counted and reported, latency stays bounded; and
the realtime files start their clocks together, so none drops frames while the others open."""

from __future__ import annotations

import json
import threading
import time

import numpy as np
import pytest

from streams.capture import DEFAULT_MAX_WAIT_S, CaptureOptions, StreamCapture, StreamSource
from streams.sources import VideoReader, parse_source

SIZE = (160, 120)


def write_video(path, frames: int, fps: float) -> None:
    import cv2

    writer = cv2.VideoWriter(str(path), cv2.VideoWriter.fourcc(*"MJPG"), fps, SIZE)
    for i in range(frames):
        image = np.full((SIZE[1], SIZE[0], 3), (i * 7) % 256, np.uint8)
        cv2.rectangle(image, (i % 100, 20), (i % 100 + 40, 80), (0, 0, 255), -1)
        writer.write(image)
    writer.release()


def test_realtime_files_start_their_clocks_together(tmp_path):
    """One of three 30 FPS files takes 0.6 s to open; the consumer starts once all have tried (as the
    pipeline does). Before, the two quick ones had 0.6 s of frames due by then and dropped ~18 each."""
    fps, slow_open_s = 30.0, 0.6
    video = tmp_path / "clip.avi"
    write_video(video, 60, fps)

    def reader_for(name, source):
        if name != "slow":
            return None  # the usual reader
        time.sleep(slow_open_s)
        return VideoReader(source, realtime=True)

    options = CaptureOptions(realtime=True, reader_for=reader_for)
    wake = threading.Condition()

    def notify():
        with wake:
            wake.notify_all()

    captures = [StreamCapture(StreamSource(name, parse_source(str(video))), options, lambda _: None, notify)
                for name in ("a", "b", "slow")]
    for capture in captures:
        capture.start()
    try:
        for capture in captures:
            assert capture.attempted.wait(10)
        taken = {c.name: [] for c in captures}
        deadline = time.monotonic() + 20 / fps  # the first 20 frames' worth
        while time.monotonic() < deadline:
            with wake:
                if not any(c.has_frame for c in captures):
                    wake.wait(0.05)
            for capture in captures:
                frame = capture.take()
                if frame is not None:
                    taken[capture.name].append(frame)
    finally:
        for capture in captures:
            capture.close()
    starts = [frames[0].captured for frames in taken.values()]
    assert max(starts) - min(starts) < 2 / fps  # one shared start, to within a frame or two
    for name, frames in taken.items():
        assert frames[0].index <= 1, (name, [f.index for f in frames])
        # the 0.6 s of opening is 18 frames; a consumer that keeps up drops a few under a loaded CPU at most
        assert frames[-1].index - frames[0].index + 1 - len(frames) <= 4, (name, [f.index for f in frames])


@pytest.fixture(scope="module")
def model():
    from export.demo_model import demo_onnx

    return demo_onnx(verbose=False)


def frame_cost_s(onnx_path) -> float:
    """The demo model's time per frame of SIZE, one call at a time, on this machine now (median of 15)."""
    from runtimes.loader import load_detector

    image = np.zeros((SIZE[1], SIZE[0], 3), np.uint8)
    with load_detector(onnx_path) as detector:
        detector(image)
        times = []
        for _ in range(15):
            started = time.perf_counter()
            detector(image)
            times.append(time.perf_counter() - started)
    return float(np.median(times))


def test_beyond_the_box_drops_fairly_and_reports(model, tmp_path):
    from apps.camera import build_parser, run

    streams, depth, seconds = 4, 2, 1.5
    # More than the box holds: 2 requests in flight on 2 cores serve at most 2 / cost frames a second even
    # if nothing else ran; the streams deliver 3 times that (and at least 60 FPS each, enough frames to judge).
    fps = max(3 * (2 / frame_cost_s(model)) / streams, 60.0)
    frames_per_file = int(fps * seconds)
    videos = []
    for k in range(streams):
        videos.append(tmp_path / f"cam{k}.avi")
        write_video(videos[-1], frames_per_file, fps)
    args = ["--model", str(model), "--headless", "--realtime", "--batch-size", "1", "--async-depth", str(depth),
            "--json", str(tmp_path / "out.jsonl")]
    for video in videos:
        args += ["--source", str(video)]
    summary = run(build_parser().parse_args(args), threading.Event(), log=lambda _: None)

    per = summary["streams"]
    handled = {name: s["frames"] for name, s in per.items()}
    assert min(handled.values()) >= 0.7 * max(handled.values()) > 0, handled  # no stream starved
    for name, s in per.items():
        # every frame of the file either handled or counted as dropped (the last few may be skipped unread)
        assert 0.9 * frames_per_file <= s["frames"] + s["dropped_stale_frames"] <= frames_per_file, (name, s)
        assert s["dropped_stale_frames"] > 0.2 * frames_per_file, (name, s)  # beyond the box: dropped, and said
    assert summary["dropped_stale_frames"] == sum(s["dropped_stale_frames"] for s in per.values())

    # Latency bounded by what is queued, never growing: a frame waits at most the capture's wait, then a
    # round of the streams and behind the requests in flight; at the rate A the box served, that is about
    # (streams + depth + 1) / A. A queue that grew would put the later frames seconds behind.
    rate = summary["frames"] / summary["seconds"]
    bound_ms = 1000 * (DEFAULT_MAX_WAIT_S + 3 * (streams + depth + 1) / rate)
    lines = [json.loads(line) for line in (tmp_path / "out.jsonl").read_text().splitlines()]
    latencies = [line["latency_ms"] for line in lines]
    third = len(latencies) // 3
    assert np.percentile(latencies, 95) < bound_ms, (np.percentile(latencies, 95), bound_ms)
    assert np.median(latencies[-third:]) < 2 * np.median(latencies[:third]) + 1000 / rate * streams
