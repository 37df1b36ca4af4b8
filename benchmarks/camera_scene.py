"""The simulated cameras of benchmarks/cameras.py: a 1080p25 H.264 or H.265 file of a still scene where an object
moves about 20% of the time, and a local RTSP server that plays such files as cameras do.

Cameras are independent: :data:`PHASES` variants of the file, camera k playing variant k mod PHASES, each with
its motion one second later in the period and its key frames ten frames later than the variant before. With one
file, every camera would move and send a key frame at the same instant, and the box would see the detector's and
the decoder's peaks of all cameras at once, which real cameras do not send it.

Runs where OpenCV has GStreamer and PyGObject has GstRtspServer (the system Python, or a venv made from it with
``--system-site-packages``).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Dict, Iterator, Tuple

import numpy as np

FULL_HD = (1920, 1080)
FPS = 25
PERIOD_S = 5.0  # the object moves for MOVING_S of every PERIOD_S, then stands still: motion 20% of the time
MOVING_S = 1.0
PHASES = 5  # variants, their motion a second apart (the five span PERIOD_S), their key frames KEY_SHIFT apart
KEY_SHIFT = 10  # a cut to the scene after KEY_SHIFT x phase grey frames (within the benchmark's warm-up)
ENCODERS = {  # codec -> encoder and parser; a key frame every 2 s, 4 Mb/s: a common 1080p camera setting
    "h264": "x264enc speed-preset=veryfast key-int-max=50 bitrate=4000 ! h264parse",
    "h265": "x265enc speed-preset=veryfast key-int-max=50 bitrate=4000 ! h265parse",
}


def object_x(frame: int, fps: int = FPS, phase: int = 0) -> int:
    """The moving object's left edge in frame ``frame``: it crosses 800 px in MOVING_S of each PERIOD_S,
    alternately right and left, ``phase`` seconds into the period, and stands still the rest of it."""
    period, moving = int(PERIOD_S * fps), int(MOVING_S * fps)
    cycle, at = divmod(frame - phase * fps, period)
    progress = min(at, moving) / moving
    start, end = (400, 1200) if cycle % 2 == 0 else (1200, 400)
    return int(round(start + (end - start) * progress))


def scene(frames: int, seed: int = 0, phase: int = 0) -> Iterator[np.ndarray]:
    """``frames`` (1080, 1920, 3) uint8 BGR frames: a blocky textured background with sensor noise (4 noise
    fields in turn, so the encoder sees noise like a camera's), an orange ellipse (one of the demo model's
    classes) moving as :func:`object_x` says; variant ``phase`` starts with KEY_SHIFT x ``phase`` grey
    frames, whose cut to the scene the encoder makes a key frame, the key frames after it shifted with it."""
    import cv2

    rng = np.random.default_rng(seed)
    width, height = FULL_HD
    blocks = rng.integers(70, 190, (height // 24 + 1, width // 24 + 1, 3)).astype(np.uint8)
    background = cv2.GaussianBlur(np.kron(blocks, np.ones((24, 24, 1), np.uint8))[:height, :width], (9, 9), 0)
    noise = [rng.integers(-3, 4, (height, width, 3)).astype(np.int16) for _ in range(4)]
    grey = np.full((height, width, 3), 128, np.uint8)
    for t in range(frames):
        if t < KEY_SHIFT * phase:
            yield grey
            continue
        frame = np.clip(background.astype(np.int16) + noise[t % 4], 0, 255).astype(np.uint8)
        x = object_x(t, FPS, phase)
        cv2.ellipse(frame, (x + 150, 560), (150, 100), 0, 0, 360, (0, 140, 255), -1)
        yield frame


def moving_fraction(frames: int, fps: int = FPS) -> float:
    """The share of ``frames`` in which the object moves (differs from the frame before)."""
    return sum(object_x(t, fps) != object_x(t - 1, fps) for t in range(1, frames)) / max(frames - 1, 1)


def make_video(path: Path, codec: str, seconds: float, phase: int = 0) -> Path:
    """``path``: ``seconds`` of :func:`scene` variant ``phase`` at 1080p25 in ``codec`` (``h264``, ``h265``), MP4,
    written through GStreamer (OpenCV's writer into appsrc) to a temporary name renamed into place; a video
    already there is kept. RuntimeError naming the codec when GStreamer cannot write it."""
    import cv2

    if path.is_file() and path.stat().st_size > 0:
        return path
    partial = path.with_name(path.name + ".partial")
    launch = (f"appsrc ! videoconvert ! video/x-raw,format=I420 ! {ENCODERS[codec]} ! mp4mux ! "
              f"filesink location={partial}")
    writer = cv2.VideoWriter(launch, cv2.CAP_GSTREAMER, 0, float(FPS), FULL_HD)
    if not writer.isOpened():
        raise RuntimeError(f"cannot encode {codec} with GStreamer here ({launch}): apt install "
                           "gstreamer1.0-plugins-ugly gstreamer1.0-plugins-bad python3-opencv")
    for frame in scene(int(seconds * FPS), phase=phase):
        writer.write(frame)
    writer.release()  # sends the end of stream: mp4mux writes its index
    if not partial.is_file() or partial.stat().st_size == 0:
        raise RuntimeError(f"GStreamer wrote no {codec} video to {partial}")
    partial.rename(path)
    return path


# -- the RTSP server ------------------------------------------------------------------------------------------

def serve(videos: Dict[str, str]) -> None:
    """Serve each ``{mount: MP4 path}`` at rtsp://127.0.0.1:PORT/mount, every client its own playback from the
    file's start, at the file's rate (the RTSP media's clock); print ``port N`` and serve until stdin closes."""
    import threading

    import gi

    gi.require_version("Gst", "1.0")
    gi.require_version("GstRtspServer", "1.0")
    from gi.repository import GLib, Gst, GstRtspServer

    Gst.init(None)
    server = GstRtspServer.RTSPServer.new()
    server.set_address("127.0.0.1")
    server.set_service("0")
    for mount, path in videos.items():
        codec = "h265" if mount.startswith("h265") else "h264"  # (mounts: CODEC or CODEC-pPHASE)
        factory = GstRtspServer.RTSPMediaFactory.new()  # not shared: each camera plays from its own start
        factory.set_launch(f"( filesrc location={path} ! qtdemux ! {codec}parse ! rtp{codec}pay name=pay0 pt=96 )")
        server.get_mount_points().add_factory(f"/{mount}", factory)
    server.attach(None)
    loop = GLib.MainLoop()
    threading.Thread(target=loop.run, daemon=True).start()
    print(f"port {server.get_bound_port()}", flush=True)
    sys.stdin.read()  # the benchmark closes it (or ends) to stop the server


def parse_mounts(words: Tuple[str, ...]) -> Dict[str, str]:
    """``("h264=/a.mp4", ...)`` -> ``{"h264": "/a.mp4"}``."""
    return dict(word.split("=", 1) for word in words)


if __name__ == "__main__":  # python benchmarks/camera_scene.py h264=/path.mp4 h265=/path.mp4
    serve(parse_mounts(tuple(sys.argv[1:])))
