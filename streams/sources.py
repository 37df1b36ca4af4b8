"""Frame sources for the camera app: cameras, Jetson CSI cameras, RTSP/HTTP streams, GStreamer pipelines,
video files and image folders, each behind one reader: opened, ``read()`` frame by frame (None at its end or
when it fails), closed. On a Jetson, RTSP streams are decoded by the hardware (``nvv4l2decoder``,
``nvvidconv``); elsewhere by GStreamer's or FFmpeg's software decoders.

A reader has no thread and no policy of its own: streams/capture.py reads it on the stream's grab thread,
keeps the newest frame of a live source and reopens one that fails. What a reader bounds itself: an FFmpeg
capture (HTTP, RTSP) gives up opening or reading after ``timeout_s`` (OpenCV's open and read timeouts), so
a source that sends no frame, or bytes that never make one, costs at most what arrives in that time.
GStreamer pipelines end in ``appsink drop=true max-buffers=1``.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, List, Optional, Tuple

import numpy as np

from runtimes.errors import UserError
from streams.decoding import MAX_DECODER_THREADS

Read = Tuple[int, np.ndarray]  # (frame number since the reader opened, (H, W, 3) uint8 BGR frame)
DEFAULT_TIMEOUT_S = 5.0  # a live source that delivers no frame for this long is given up and reopened
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
        number = text[len("csi://"):] or "0"
        if not number.isdigit():
            raise UserError(f"--source {text}: a CSI camera is csi://N with N its sensor number (csi://0, csi://1)")
        sensor = int(number)
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
    try:
        folder, file = path.is_dir(), path.is_file()
    except OSError as exc:  # e.g. a name longer than the file system allows
        shown = text if len(text) <= 80 else f"{text[:60]}...({len(text)} characters)"
        raise UserError(f"--source {shown}: not a usable path ({exc.strerror}); give an existing video file or "
                        "image folder, a camera, a URL or a GStreamer pipeline") from None
    if folder:
        return SourceSpec(text, False, [], folder=path)
    if not file:
        raise UserError(f"--source {text}: no such file, folder or camera; give a video file, an image folder, "
                        "a camera index or /dev/videoN, csi://N, an rtsp:// or http:// URL, or a GStreamer pipeline")
    return SourceSpec(text, False, [(f"video file {text}", (text,))])


@dataclass(frozen=True)
class PlannedSource:
    """A source with the decoding plans tried first (streams/decoding.py): ``spec`` with them in its attempts,
    ``size`` the source's (width, height) as probed (None: not known, so frames are not scaled)."""

    spec: SourceSpec
    size: Optional[Tuple[int, int]]


def plan_source(spec: SourceSpec, size: Optional[Tuple[int, int]], timeout_s: float = DEFAULT_TIMEOUT_S,
                elements: Optional[frozenset] = None, threads: int = MAX_DECODER_THREADS) -> PlannedSource:
    """A file or ``rtsp://`` source on a GStreamer OpenCV with :func:`streams.decoding.decode_attempts` before
    its own attempts: the cheapest decoder (a software one with ``threads``), frames scaled to ``size`` (None:
    full frame) in the pipeline. The
    source's size comes from a probe; when it cannot be probed, the frames are decoded at full size (boxes
    could not be given in the source's pixels otherwise). Other sources come back as they are."""
    import cv2

    from streams.decoding import DecodeRequest, available_elements, decode_attempts, probe_source

    is_file = not spec.live and spec.folder is None
    if not (is_file or re.match(r"rtsps?://", spec.text)) or not has_gstreamer():
        return PlannedSource(spec, None)
    probe = probe_source(spec.text, timeout_s)
    request = DecodeRequest(spec.text, probe.codec, size if probe.size is not None else None, threads)
    plans = decode_attempts(request, available_elements() if elements is None else elements)
    attempts = [(plan.reason, (plan.launch, cv2.CAP_GSTREAMER)) for plan in plans]
    return PlannedSource(SourceSpec(spec.text, spec.live, attempts + spec.attempts, spec.folder), probe.size)


class FrameReader:
    """Base class: ``read()`` returns the next :data:`Read` or None at the end (or when a live source fails);
    ``close()`` releases it. ``description`` says what was opened, ``fps`` its frame rate (30 when live)."""

    description = ""
    fps = 30.0

    def read(self) -> Optional[Read]:
        raise NotImplementedError

    def close(self) -> None:
        pass


def _open_capture(spec: SourceSpec, timeout_s: float):
    """The first attempt that opens (FFmpeg ones with open and read timeouts of ``timeout_s``); UserError
    listing every attempt when none does."""
    import cv2

    tried = []
    for description, args in spec.attempts:
        if len(args) == 2 and args[1] == cv2.CAP_FFMPEG:
            milliseconds = int(timeout_s * 1000)
            cap = cv2.VideoCapture(*args, [cv2.CAP_PROP_OPEN_TIMEOUT_MSEC, milliseconds,
                                           cv2.CAP_PROP_READ_TIMEOUT_MSEC, milliseconds])
        else:  # GStreamer refuses those properties (OpenCV 4.6)
            cap = cv2.VideoCapture(*args)
        if cap is not None and cap.isOpened():
            return cap, description
        if cap is not None:
            cap.release()
        tried.append(description)
    raise UserError(f"cannot open --source {spec.text}; tried: " + "; ".join(tried))


# A realtime file late by more than this skips frames by decoding them only up to it, then moves its clock on:
# a box that decodes slower than the file's rate fell ever further behind catching up (each catch-up took longer
# than the frames it skipped; 16 1080p files got 6 frames each in 12 s), where a live camera behind a slow
# decoder loses those frames and goes on with the newest.
CATCH_UP_S = 0.25


class VideoReader(FrameReader):
    """A camera, stream, pipeline or video file through OpenCV. A file is read every frame in order, or with
    ``realtime`` at the file's rate (frames it is late for skipped, numbers counting them; beyond
    :data:`CATCH_UP_S` late, its clock moves on and ``lost`` counts the frames)."""

    def __init__(self, spec: SourceSpec, realtime: bool = False, timeout_s: float = DEFAULT_TIMEOUT_S) -> None:
        import cv2

        self.cap, self.description = _open_capture(spec, timeout_s)
        if not spec.live:
            self.fps = float(self.cap.get(cv2.CAP_PROP_FPS) or 0) or 30.0
        self.realtime = realtime and not spec.live
        self.index = -1
        self.start: Optional[float] = None  # a realtime file's frame k is due at start + k / fps
        self.lost = 0  # frames a realtime file was too late for to decode (its clock moved on instead)

    def start_clock(self, at: float) -> None:
        """Count a realtime file's frames as due from ``at`` (a time.monotonic() instant) instead of its
        first read: realtime files played together start at one instant (streams/capture.StartTogether)."""
        self.start = at

    def read(self) -> Optional[Read]:
        if self.start is None:
            self.start = time.monotonic()
        if self.realtime and self.index >= 0:
            early = self.start + (self.index + 1) / self.fps - time.monotonic()
            if early > 0:
                time.sleep(early)  # the next frame is not due yet: the file's pace, like a camera's
            due = int((time.monotonic() - self.start) * self.fps)
            latest = self.index + 1 + max(1, int(CATCH_UP_S * self.fps))
            if due > latest:  # too late to catch up by decoding: the clock moves on, those frames are lost
                self.start += (due - latest) / self.fps
                self.lost += due - latest
                due = latest
            while self.index + 1 < due:  # drop frames we are late for
                if not self.cap.grab():
                    return None
                self.index += 1
        ok, frame = self.cap.read()
        if not ok or frame is None:
            return None
        self.index += 1
        return self.index, frame

    def close(self) -> None:
        self.cap.release()


class FolderReader(FrameReader):
    """The images of a folder in name order; unreadable files are skipped with a note (their numbers too)."""

    def __init__(self, folder: Path, log: Callable[[str], None] = print) -> None:
        from calibration.images import IMAGE_SUFFIXES

        self.paths = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        if not self.paths:
            raise UserError(f"--source {folder}: no images in this folder")
        self.description = f"image folder {folder} ({len(self.paths)} images)"
        self.log = log
        self.position = 0
        self.index = -1

    def read(self) -> Optional[Read]:
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
            return self.index, frame
        return None


def open_reader(spec: SourceSpec, realtime: bool = False, timeout_s: float = DEFAULT_TIMEOUT_S,
                log: Callable[[str], None] = print) -> FrameReader:
    """The reader of ``spec``; UserError when it cannot be opened."""
    if spec.folder is not None:
        return FolderReader(spec.folder, log)
    return VideoReader(spec, realtime, timeout_s)
