"""Frame sources for the camera app: cameras, Jetson CSI cameras, RTSP/HTTP streams, GStreamer pipelines,
video files and image folders, behind one ``read()``. On a Jetson, RTSP streams are decoded by the hardware
(``nvv4l2decoder``, ``nvvidconv``); elsewhere by GStreamer's or FFmpeg's software decoders.

Live sources always hand out the newest frame: a grab thread keeps only the latest one (and GStreamer
pipelines end in ``appsink drop=true max-buffers=1``), so delay never piles up behind a slow model. A live
source that stops delivering is reopened with exponential back-off and the gap is logged. Files and
folders are read frame by frame, nothing dropped, unless ``realtime`` asks to keep pace with the clock.
"""

from __future__ import annotations

import re
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, List, Optional, Tuple

import numpy as np

from runtimes.errors import UserError

Frame = Tuple[int, float, np.ndarray]  # (index, capture time in seconds since the source opened, BGR frame)
APPSINK = "appsink drop=true max-buffers=1 sync=false"


@dataclass
class CsiOptions:
    sensor_mode: int = -1  # -1: let nvarguscamerasrc choose
    width: int = 1280
    height: int = 720
    fps: int = 30
    flip: int = 0


def csi_pipeline(sensor_id: int, opts: CsiOptions) -> str:
    """nvarguscamerasrc -> NVMM NV12 -> nvvidconv (GPU colour conversion) -> BGR appsink."""
    mode = f" sensor-mode={opts.sensor_mode}" if opts.sensor_mode >= 0 else ""
    return (f"nvarguscamerasrc sensor-id={sensor_id}{mode} ! "
            f"video/x-raw(memory:NVMM),width={opts.width},height={opts.height},framerate={opts.fps}/1,format=NV12 ! "
            f"nvvidconv flip-method={opts.flip} ! video/x-raw,width={opts.width},height={opts.height},format=BGRx ! "
            f"videoconvert ! video/x-raw,format=BGR ! {APPSINK}")


def usb_pipeline(device: str, width: int, height: int, fps: int) -> str:
    return (f"v4l2src device={device} ! video/x-raw,width={width},height={height},framerate={fps}/1 ! "
            f"videoconvert ! video/x-raw,format=BGR ! {APPSINK}")


def rtsp_pipeline(url: str, latency_ms: int = 0, hardware: bool = False) -> str:
    """rtspsrc with a zero jitter buffer (the default 2 s is where RTSP delay comes from); ``hardware``: an
    H.264 stream decoded by a Jetson's NVDEC (``nvv4l2decoder``) and converted by its VIC (``nvvidconv``)
    instead of the CPU's ``decodebin``."""
    source = f"rtspsrc location={url} latency={latency_ms} drop-on-latency=true"
    if hardware:
        return (f"{source} ! rtph264depay ! h264parse ! nvv4l2decoder ! nvvidconv ! video/x-raw,format=BGRx ! "
                f"videoconvert ! video/x-raw,format=BGR ! {APPSINK}")
    return f"{source} ! decodebin ! videoconvert ! video/x-raw,format=BGR ! {APPSINK}"


def is_jetson() -> bool:
    """Whether this is a Jetson (L4T writes its release file there)."""
    return Path("/etc/nv_tegra_release").is_file()


def has_gstreamer() -> bool:
    import cv2

    info = cv2.getBuildInformation()
    match = re.search(r"GStreamer:\s+(\w+)", info)
    return bool(match and match.group(1).upper() == "YES")


@dataclass
class SourceSpec:
    """How to open a source: ``attempts`` are (description, opener args) tried in order."""

    text: str
    live: bool
    attempts: List[Tuple[str, tuple]]
    folder: Optional[Path] = None


def parse_source(text: str, csi: Optional[CsiOptions] = None, gstreamer: Optional[bool] = None,
                 jetson: Optional[bool] = None) -> SourceSpec:
    """Turn ``--source`` into the ways to open it (``gstreamer`` defaults to what this OpenCV supports,
    ``jetson`` to whether this is one: its RTSP streams are decoded in hardware first)."""
    import cv2

    csi = csi or CsiOptions()
    gst = has_gstreamer() if gstreamer is None else gstreamer
    jetson = is_jetson() if jetson is None else jetson
    if text.startswith("csi://"):
        sensor = int(text[len("csi://"):] or 0)
        return SourceSpec(text, True, [(f"GStreamer {csi_pipeline(sensor, csi)}", (csi_pipeline(sensor, csi),
                                                                                      cv2.CAP_GSTREAMER))])
    if "!" in text:  # a raw GStreamer pipeline
        pipeline = text if "appsink" in text else f"{text} ! videoconvert ! video/x-raw,format=BGR ! {APPSINK}"
        return SourceSpec(text, True, [(f"GStreamer {pipeline}", (pipeline, cv2.CAP_GSTREAMER))])
    device = None
    if text.isdigit():
        device = f"/dev/video{text}"
    elif re.fullmatch(r"/dev/video\d+", text):
        device = text
    if device is not None:
        index = int(device[len("/dev/video"):])
        attempts: List[Tuple[str, tuple]] = [(f"V4L2 {device}", (index, cv2.CAP_V4L2)),
                                             (f"OpenCV default backend {device}", (index,))]
        if gst:
            pipe = usb_pipeline(device, csi.width, csi.height, csi.fps)
            attempts.insert(0, (f"GStreamer {pipe}", (pipe, cv2.CAP_GSTREAMER)))
        return SourceSpec(text, True, attempts)
    if re.match(r"^(rtsp|rtsps|http|https)://", text):
        attempts = [(f"FFmpeg {text}", (text, cv2.CAP_FFMPEG))]
        if gst and text.startswith("rtsp"):
            attempts.insert(0, (f"GStreamer {rtsp_pipeline(text)}", (rtsp_pipeline(text), cv2.CAP_GSTREAMER)))
            if jetson:
                hardware = rtsp_pipeline(text, hardware=True)
                attempts.insert(0, (f"GStreamer (NVDEC) {hardware}", (hardware, cv2.CAP_GSTREAMER)))
        return SourceSpec(text, True, attempts)
    path = Path(text)
    if path.is_dir():
        return SourceSpec(text, False, [], folder=path)
    if not path.is_file():
        raise UserError(f"--source {text}: no such file, folder or camera; give a video file, an image folder, "
                        "a camera index or /dev/videoN, csi://N, an rtsp:// or http:// URL, or a GStreamer pipeline")
    return SourceSpec(text, False, [(f"video file {text}", (text,))])


class FrameSource:
    """Base class: ``read()`` returns the next :data:`Frame` or None at the end; ``close()`` stops."""

    description = ""

    def read(self) -> Optional[Frame]:
        raise NotImplementedError

    def close(self) -> None:
        pass


def _open_capture(spec: SourceSpec, opener: Optional[Callable] = None):
    """The first attempt that opens; UserError listing every attempt when none does."""
    import cv2

    tried = []
    for description, args in spec.attempts:
        cap = (opener or cv2.VideoCapture)(*args)
        if cap is not None and cap.isOpened():
            return cap, description
        if cap is not None:
            cap.release()
        tried.append(description)
    raise UserError(f"cannot open --source {spec.text}; tried: " + "; ".join(tried))


class FileSource(FrameSource):
    """A video file, every frame in order (``realtime``: at the file's rate, frames it is late for skipped)."""

    def __init__(self, spec: SourceSpec, realtime: bool = False, opener: Optional[Callable] = None) -> None:
        import cv2

        self.cap, self.description = _open_capture(spec, opener)
        self.fps = float(self.cap.get(cv2.CAP_PROP_FPS) or 0) or 30.0
        self.realtime = realtime
        self.index = -1
        self.start = time.monotonic()

    def read(self) -> Optional[Frame]:
        if self.realtime and self.index >= 0:
            early = self.start + (self.index + 1) / self.fps - time.monotonic()
            if early > 0:
                time.sleep(early)  # the next frame is not due yet: the file's pace, like a camera's
            due = int((time.monotonic() - self.start) * self.fps)
            while self.index + 1 < due:  # drop frames we are late for
                if not self.cap.grab():
                    return None
                self.index += 1
        ok, frame = self.cap.read()
        if not ok or frame is None:
            return None
        self.index += 1
        return self.index, time.monotonic() - self.start, frame

    def close(self) -> None:
        self.cap.release()


class FolderSource(FrameSource):
    """The images of a folder in name order; unreadable files are skipped with a note."""

    def __init__(self, folder: Path, log: Callable[[str], None] = print) -> None:
        from calibration.images import IMAGE_SUFFIXES

        self.paths = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        if not self.paths:
            raise UserError(f"--source {folder}: no images in this folder")
        self.description = f"image folder {folder} ({len(self.paths)} images)"
        self.log = log
        self.position = 0
        self.index = -1
        self.start = time.monotonic()

    def read(self) -> Optional[Frame]:
        from calibration.images import UnreadableImage, read_image

        while self.position < len(self.paths):
            path = self.paths[self.position]
            self.position += 1
            try:
                frame, _ = read_image(path)
            except UnreadableImage as exc:
                self.log(f"skipping {path.name}: {exc}")
                continue
            self.index += 1
            return self.index, time.monotonic() - self.start, frame
        return None


class LiveSource(FrameSource):
    """A camera or stream read by a grab thread that keeps only the newest frame.

    When the source stops delivering for ``stall_s`` (or a read fails), it is reopened with back-off
    (``backoff_s`` doubling up to ``max_backoff_s``); ``read()`` waits for the next fresh frame meanwhile.
    After ``give_up_s`` without a frame it ends (``read()`` returns None).
    """

    def __init__(self, spec: SourceSpec, opener: Optional[Callable] = None, log: Callable[[str], None] = print,
                 stall_s: float = 2.0, backoff_s: float = 0.5, max_backoff_s: float = 8.0,
                 give_up_s: float = 60.0) -> None:
        self.spec, self.opener, self.log = spec, opener, log
        self.stall_s, self.backoff_s, self.max_backoff_s, self.give_up_s = stall_s, backoff_s, max_backoff_s, give_up_s
        self.cap, self.description = _open_capture(spec, opener)
        self.start = time.monotonic()
        self._cond = threading.Condition()
        self._latest: Optional[np.ndarray] = None
        self._latest_time = 0.0
        self._count = 0  # frames grabbed
        self._delivered = -1  # last grab number handed out
        self._stopped = False
        self._ended = False
        self.reopens = 0
        self.dropped = 0
        self._thread = threading.Thread(target=self._grab_loop, name="frame-grabber", daemon=True)
        self._thread.start()

    def _grab_loop(self) -> None:
        last_frame = time.monotonic()
        backoff = self.backoff_s
        while not self._stopped:
            ok, frame = (self.cap.read() if self.cap is not None else (False, None))
            now = time.monotonic()
            if ok and frame is not None:
                with self._cond:
                    if self._count - 1 > self._delivered:
                        self.dropped += 1  # the previous frame was never read: stale, replaced
                    self._latest, self._latest_time = frame, now - self.start
                    self._count += 1
                    self._cond.notify_all()
                last_frame, backoff = now, self.backoff_s
                continue
            if now - last_frame > self.give_up_s:
                self.log(f"source {self.spec.text}: no frame for {now - last_frame:.0f} s; giving up")
                break
            # A failed read: reopen with back-off, logging the gap.
            if self.cap is not None:
                self.cap.release()
                self.cap = None
            self.log(f"source {self.spec.text} lost {now - last_frame:.1f} s ago; reopening in {backoff:.1f} s")
            time.sleep(backoff)
            backoff = min(self.max_backoff_s, backoff * 2)
            try:
                self.cap, _ = _open_capture(self.spec, self.opener)
                self.reopens += 1
                self.log(f"source {self.spec.text} reopened after a {time.monotonic() - last_frame:.1f} s gap")
            except UserError:
                self.cap = None
        with self._cond:
            self._ended = True
            self._cond.notify_all()

    def read(self) -> Optional[Frame]:
        with self._cond:
            while self._count - 1 <= self._delivered and not self._ended and not self._stopped:
                self._cond.wait(timeout=0.5)
            if self._count - 1 <= self._delivered or self._latest is None:
                return None
            self._delivered = self._count - 1
            return self._delivered, self._latest_time, self._latest

    def close(self) -> None:
        self._stopped = True
        self._thread.join(timeout=5)
        if self.cap is not None:
            self.cap.release()


def open_source(spec: SourceSpec, realtime: bool = False, log: Callable[[str], None] = print,
                opener: Optional[Callable] = None) -> FrameSource:
    if spec.folder is not None:
        return FolderSource(spec.folder, log)
    if spec.live:
        return LiveSource(spec, opener, log)
    return FileSource(spec, realtime, opener)

