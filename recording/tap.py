"""A source's video parsed once and tee'd: (a) decoded BGR frames for the detector, (b) the encoded access
units for the ring buffer, so recording never decodes twice and never re-encodes an encoded source.

    source -> parsebin -> h264parse/h265parse config-interval=-1 (SPS/PPS before every keyframe)
           -> tee -> queue -> appsink "units"                       (EncodedUnit to ``on_unit``)
                  -> queue -> decodebin -> videoconvert -> appsink "frames"  (TapFrame from ``read()``)

A raw source (MJPEG, a USB or CSI camera through a ``gst:`` launch line) is decoded, tee'd, and its
encoded branch goes through recording/encoders.py's encoder instead. Both branches number frames from 0
and time them from the first unit, so a decoded frame and the unit it came from carry the same index and
time. Standalone (the tests, the benchmark) or as a capture layer's reader. A :class:`StreamClock` carries a
stream's time and unit numbers across the taps that read it in turn (an RTSP source reopened after a loss).
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Optional, Tuple

import numpy as np

from recording.encoders import raw_encoder_chain
from recording.gst import has_element, import_gst, parser_for
from recording.units import NS, EncodedUnit
from runtimes.errors import UserError

ENCODED = ("video/x-h264", "video/x-h265")
BYTE_STREAM = "stream-format=byte-stream,alignment=au"


@dataclass
class TapFrame:
    """``index``: frame number from 0; ``time_s``: stream time (the unit's pts); ``image``: (H, W, 3) BGR."""

    index: int
    time_s: float
    image: np.ndarray


def source_description(source: str, rtsp_latency_ms: int = 200) -> str:
    """The launch line's source: ``gst:DESCRIPTION`` as given; a URI or a file path through urisourcebin."""
    if source.startswith("gst:"):
        return source[4:]
    uri = source if "://" in source else Path(source).resolve().as_uri()
    return f'urisourcebin name=uri uri="{uri}"'


# The decoder of the decoded branch, best first: a Jetson's NVDEC (its NVMM output converted by the VIC), then
# FFmpeg's. Named, not decodebin: decodebin's pads appear late and a launch line inside a bin cannot link them.
DECODERS = {
    "video/x-h264": (("nvv4l2decoder", "nvv4l2decoder ! nvvidconv ! video/x-raw,format=BGRx"),
                     ("avdec_h264", "avdec_h264")),
    "video/x-h265": (("nvv4l2decoder", "nvv4l2decoder ! nvvidconv ! video/x-raw,format=BGRx"),
                     ("avdec_h265", "avdec_h265")),
    "image/jpeg": (("jpegdec", "jpegparse ! jpegdec"),),
}


def decoder_chain(media: str) -> str:
    """The launch-line fragment decoding ``media`` (raw video: none); UserError when no decoder exists."""
    if media == "video/x-raw":
        return "identity"
    for element, chain in DECODERS.get(media, ()):
        if has_element(element):
            return chain
    raise UserError(f"--record: no GStreamer decoder for {media} here; apt install gstreamer1.0-libav "
                    "(or on a Jetson use JetPack's GStreamer)")


def branch_description(caps: str, decode: bool, units: bool, live: bool, gop: int, kbps: int) -> str:
    """The bin linked to parsebin's video pad, by what it gives (``caps``)."""
    frames = (f"appsink name=frames sync=false emit-signals=false max-buffers={1 if live else 4} "
              f"drop={'true' if live else 'false'}")
    to_bgr = "videoconvert ! video/x-raw,format=BGR"
    unit_sink = "appsink name=units sync=false emit-signals=true"
    if caps.startswith(ENCODED):
        media = caps.split(",")[0]
        parts = [f"{parser_for(caps)} config-interval=-1 ! {media},{BYTE_STREAM} ! tee name=t"]
        if units:
            parts.append(f"t. ! queue max-size-buffers=0 max-size-time=0 max-size-bytes=0 ! {unit_sink}")
        if decode:
            parts.append(f"t. ! queue ! {decoder_chain(media)} ! {to_bgr} ! {frames}")
        return " ".join(parts)
    parts = [f"{decoder_chain(caps.split(',')[0])} ! tee name=t"]
    if units:
        chain = raw_encoder_chain(has_element, gop=gop, kbps=kbps)
        parts.append(f"t. ! queue ! {chain} ! h264parse config-interval=-1 ! video/x-h264,{BYTE_STREAM} ! "
                     f"{unit_sink}")
    if decode:
        parts.append(f"t. ! queue ! {to_bgr} ! {frames}")
    return " ".join(parts)


class StreamClock:
    """One stream's clock across taps: a reopened source starts its pts (and the tap its unit numbers) at 0
    again, which would put the new units before the old ones in the ring and the events back in time. The
    next tap's times start where the last unit ended plus the wall time the source was away (stream time
    keeps counting real seconds across a gap), its units' numbers after the last one."""

    def __init__(self) -> None:
        self.next_index = 0
        self._end_ns: Optional[int] = None  # the end of the newest unit so far (pts + duration)
        self._end_wall = 0.0

    def resume(self, wall_time: float) -> int:
        """The offset in ns for a tap whose first unit arrives at ``wall_time``: 0 for the first tap."""
        if self._end_ns is None:
            return 0
        return self._end_ns + int(max(0.0, wall_time - self._end_wall) * NS)

    def saw(self, unit: EncodedUnit) -> None:
        end = unit.pts_ns + (unit.duration_ns or 0)
        if self._end_ns is None or end > self._end_ns:
            self._end_ns = end
        self._end_wall = unit.wall_time
        self.next_index = unit.index + 1


class EncodedTap:
    """Open ``source`` (a file, a URI such as rtsp://..., or ``gst:`` + a raw source's launch line).
    ``on_unit(unit)`` is called on GStreamer's thread for every encoded unit; :meth:`read` gives decoded
    frames. ``live``: frames not read in time are dropped (never for files, where the reader paces the
    pipeline); ``decode``/``units``: build only one branch (the benchmark's baseline has no units branch).
    ``gop``/``kbps``: the encoder's settings for raw sources; ``clock``: the stream's, when this tap reads
    it after another (times and unit numbers go on from the last tap's)."""

    def __init__(self, source: str, on_unit: Optional[Callable[[EncodedUnit], None]] = None, decode: bool = True,
                 live: Optional[bool] = None, gop: int = 30, kbps: int = 4000,
                 clock: Optional[StreamClock] = None) -> None:
        self._Gst = Gst = import_gst()
        self.live = live if live is not None else source.startswith(("rtsp:", "rtsps:", "http:", "https:", "gst:"))
        self._on_unit = on_unit
        self._decode = decode
        self._settings = (gop, kbps)
        self._lock = threading.Lock()
        self._base: Optional[int] = None
        self._clock = clock if clock is not None else StreamClock()
        self._offset = 0  # ns added to every time: where the stream's clock stood when this tap started
        self._first_index = self._clock.next_index
        self._units = 0
        self._frames = 0
        self._frame_sink: Any = None
        self._linked = threading.Event()
        self.caps: Optional[str] = None  # the encoded stream's caps once known
        self.error: Optional[str] = None
        self.pipeline = Gst.parse_launch(f"{source_description(source)} ! parsebin name=parse")
        self.pipeline.get_by_name("parse").connect("pad-added", self._on_pad)
        uri_source = self.pipeline.get_by_name("uri")
        if uri_source is not None:
            uri_source.connect("source-setup", self._on_source_setup)
        self.pipeline.set_state(Gst.State.PLAYING)

    def _on_source_setup(self, _bin: Any, source: Any) -> None:
        if source.find_property("latency") is not None:  # rtspsrc: 2 s of jitter buffer by default
            source.set_property("latency", 200)
        if source.find_property("buffer-mode") is not None:
            # the sender's RTP times as they are: the default ("slave") smooths them by arrival, which puts
            # a B-frame after the reference frame it precedes (x265 over RTSP: by 130 ms) and cut clips short
            source.set_property("buffer-mode", 0)

    def _on_pad(self, _parsebin: Any, pad: Any) -> None:
        caps = (pad.get_current_caps() or pad.query_caps(None)).to_string()
        if not caps.startswith("video/") and not caps.startswith("image/"):
            return  # audio and the rest: not ours
        if self._linked.is_set():
            return  # the first video stream only
        Gst = self._Gst
        description = branch_description(caps, self._decode, self._on_unit is not None, self.live, *self._settings)
        branch = Gst.parse_bin_from_description(description, True)
        self.pipeline.add(branch)
        branch.get_by_name("t").get_static_pad("sink").add_probe(Gst.PadProbeType.BUFFER, self._on_first, None)
        units = branch.get_by_name("units")
        if units is not None:
            units.connect("new-sample", self._on_unit_sample)
        self._frame_sink = branch.get_by_name("frames")
        branch.sync_state_with_parent()
        pad.link(branch.get_static_pad("sink"))
        self._linked.set()

    def _on_first(self, _pad: Any, info: Any, _data: Any) -> Any:
        buffer = info.get_buffer()
        with self._lock:
            if self._base is None and buffer.pts != self._Gst.CLOCK_TIME_NONE:
                self._base = buffer.pts
                self._offset = self._clock.resume(time.time())
        return self._Gst.PadProbeReturn.OK if self._base is None else self._Gst.PadProbeReturn.REMOVE

    def _stream_ns(self, value: int) -> Optional[int]:
        if value == self._Gst.CLOCK_TIME_NONE:
            return None
        return value - (self._base or 0) + self._offset

    def _on_unit_sample(self, sink: Any) -> Any:
        Gst = self._Gst
        sample = sink.emit("pull-sample")
        buffer = sample.get_buffer()
        if self.caps is None:
            self.caps = sample.get_caps().to_string()
        pts = self._stream_ns(buffer.pts)
        duration = None if buffer.duration == Gst.CLOCK_TIME_NONE else int(buffer.duration)
        unit = EncodedUnit(self._first_index + self._units, pts if pts is not None else self._offset,
                           self._stream_ns(buffer.dts), duration,
                           not buffer.has_flags(Gst.BufferFlags.DELTA_UNIT), buffer.extract_dup(0, buffer.get_size()),
                           self.caps, time.time())
        self._units += 1
        self._clock.saw(unit)
        if self._on_unit is not None:
            self._on_unit(unit)
        return Gst.FlowReturn.OK

    def read(self, timeout_s: float = 5.0) -> Optional[TapFrame]:
        """The next decoded frame; None at the end, on an error (``error`` says which) or after ``timeout_s``."""
        deadline = time.monotonic() + timeout_s
        while self._frame_sink is None:
            if self._poll_error() or time.monotonic() > deadline:
                return None
            self._linked.wait(0.05)
        sample = self._frame_sink.emit("try-pull-sample", int(max(0.0, deadline - time.monotonic()) * NS))
        if sample is None:
            self._poll_error()
            return None
        buffer, structure = sample.get_buffer(), sample.get_caps().get_structure(0)
        height, width = structure.get_value("height"), structure.get_value("width")
        # writable (a bytearray, not bytes): the outputs draw on the frame, and OpenCV 5 refuses a read-only one
        image = np.frombuffer(bytearray(buffer.extract_dup(0, buffer.get_size())), np.uint8).reshape(height, width, 3)
        pts = self._stream_ns(buffer.pts)
        frame = TapFrame(self._frames, (pts if pts is not None else self._offset) / NS, image)
        self._frames += 1
        return frame

    def _poll_error(self) -> bool:
        message = self.pipeline.get_bus().pop_filtered(self._Gst.MessageType.ERROR)
        if message is not None:
            error, _debug = message.parse_error()
            self.error = error.message
        return self.error is not None

    def wait_end(self, timeout_s: float) -> bool:
        """Wait for the end of the stream (a file without a decoded branch); False on an error or timeout."""
        Gst = self._Gst
        message = self.pipeline.get_bus().timed_pop_filtered(int(timeout_s * NS),
                                                             Gst.MessageType.EOS | Gst.MessageType.ERROR)
        if message is not None and message.type == Gst.MessageType.ERROR:
            self.error = message.parse_error()[0].message
        return message is not None and message.type == Gst.MessageType.EOS

    def close(self) -> None:
        self.pipeline.set_state(self._Gst.State.NULL)


class TapReader:
    """An :class:`EncodedTap` as a capture layer's reader (streams/capture.py): ``read()`` gives (index, BGR
    image) or None (the end, an error, ``timeout_s`` without a frame), ``time_s`` the last frame's stream time
    (its unit's pts: the clock the recorder's units have)."""

    fps = 30.0

    def __init__(self, source: str, on_unit: Callable[[EncodedUnit], None], live: bool, timeout_s: float,
                 clock: Optional[StreamClock] = None) -> None:
        self.tap = EncodedTap(source, on_unit=on_unit, live=live, clock=clock)
        self.timeout_s = timeout_s
        self.time_s = 0.0
        self.description = f"{source} (GStreamer: parsed once, decoded and recorded)"

    def read(self) -> Optional[Tuple[int, np.ndarray]]:
        frame = self.tap.read(self.timeout_s)
        if frame is None:
            return None
        self.time_s = frame.time_s
        return frame.index, frame.image

    def close(self) -> None:
        self.tap.close()


def tappable(source: str, live: bool) -> bool:
    """Whether the camera reads ``source`` through a tap with --record: a video file or an rtsp:// stream."""
    return source.startswith(("rtsp://", "rtsps://")) or (not live and Path(source).is_file())
