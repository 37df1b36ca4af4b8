"""The cheapest way to decode a source, as a GStreamer launch line for OpenCV's ``CAP_GSTREAMER``.

A 1080p H.264/H.265 frame costs as much CPU to decode and resize as an INT8 SSDLite inference, so each
source is decoded by the best decoder the box has and scaled inside the pipeline, before Python copies it,
to the size the model and the outputs need (the full frame only when an output asks for it):

- a hardware decoder when one exists for the codec: NVDEC on a Jetson (``nvv4l2decoder``, H.264 and H.265;
  scaled by the VIC, ``nvvidconv``), VA-API (``vah264dec``/``vah265dec`` + ``vapostproc``, or gstreamer-vaapi's
  ``vaapih264dec``/``vaapih265dec`` + ``vaapipostproc``), Intel Quick Sync (``qsvh264dec`` + ``qsvvpp``, or
  Media SDK's ``msdkh264dec`` + ``msdkvpp``);
- otherwise software (``avdec_h264``/``avdec_h265``, else ``openh264dec``/``libde265dec``) with its threads bounded
  (each stream would otherwise start a thread per core; :func:`decoder_threads`), scaled by ``videoscale`` in the
  decoder's own YUV, then ``videoconvert`` to BGR at the small size (``videoconvertscale`` in one pass where there
  is no ``videoscale``: the one pass costs more CPU a frame, docs/multistream.md, "Scaling in YUV");
- a codec that is not known (the probe failed, or neither H.264 nor H.265): ``decodebin`` chooses.

:func:`plan_decoding` is pure: (:class:`DecodeRequest`, the GStreamer elements there are) -> :class:`DecodePlan`,
whose ``reason`` is the line to print at start. :func:`available_elements` and :func:`probe_source` ask this
box's GStreamer (PyGObject, else ``gst-inspect-1.0``); importing this module needs neither.

    elements = available_elements()                       # once per process
    probe = probe_source("rtsp://cam/1")                  # codec and size, or codec "" when unknown
    plans = decode_attempts(DecodeRequest("rtsp://cam/1", probe.codec, (320, 320)), elements)
    log(plans[0].reason); cv2.VideoCapture(plans[0].launch, cv2.CAP_GSTREAMER)   # plans[1:]: fallbacks
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from dataclasses import dataclass
from typing import FrozenSet, Iterable, List, Optional, Sequence, Tuple

from runtimes.errors import UserError
from runtimes.gstreamer import gi_modules

Size = Tuple[int, int]  # (width, height) in pixels
CODECS = {"h264": "H.264", "h265": "H.265"}
LIVE_APPSINK = "appsink drop=true max-buffers=1 sync=false"  # a live source: the newest frame, stale ones dropped
FILE_APPSINK = "appsink drop=false max-buffers=1 sync=false"  # a file: every frame, read as fast as it is taken
TO_BGR = "videoconvert ! video/x-raw,format=BGR"
MAX_DECODER_THREADS = 2


@dataclass(frozen=True)
class HardwareDecoder:
    """A family of hardware decoders: its decoder per codec, and the element that scales in its memory.
    ``scale`` is the chain after the decoder, ``{caps}`` the size caps (``,width=W,height=H``) or nothing."""

    name: str
    decoders: Tuple[Tuple[str, str], ...]  # (codec, element)
    scaler: str
    scale: str


HARDWARE = (
    # nvvidconv copies out of NVMM memory; it gives BGRx, not BGR, so one cheap conversion at the small size.
    HardwareDecoder("Jetson NVDEC", (("h264", "nvv4l2decoder"), ("h265", "nvv4l2decoder")), "nvvidconv",
                    "nvvidconv ! video/x-raw,format=BGRx{caps} ! " + TO_BGR),
    HardwareDecoder("VA-API", (("h264", "vah264dec"), ("h265", "vah265dec")), "vapostproc",
                    "vapostproc ! video/x-raw{caps} ! " + TO_BGR),
    HardwareDecoder("VA-API (gstreamer-vaapi)", (("h264", "vaapih264dec"), ("h265", "vaapih265dec")),
                    "vaapipostproc", "vaapipostproc ! video/x-raw{caps} ! " + TO_BGR),
    HardwareDecoder("Intel Quick Sync", (("h264", "qsvh264dec"), ("h265", "qsvh265dec")), "qsvvpp",
                    "qsvvpp ! video/x-raw{caps} ! " + TO_BGR),
    HardwareDecoder("Intel Media SDK", (("h264", "msdkh264dec"), ("h265", "msdkh265dec")), "msdkvpp",
                    "msdkvpp ! video/x-raw{caps} ! " + TO_BGR),
)
# Software decoders by preference, and whether each takes ``max-threads``.
SOFTWARE = {"h264": (("avdec_h264", True), ("openh264dec", False)),
            "h265": (("avdec_h265", True), ("libde265dec", True))}
SOFTWARE_SCALERS = ("videoscale", "videoconvertscale")  # (_software_scale says which is taken)
PARSERS = {"h264": ("rtph264depay", "h264parse"), "h265": ("rtph265depay", "h265parse")}
ELEMENTS = frozenset({e for f in HARDWARE for _, e in f.decoders} | {f.scaler for f in HARDWARE}
                     | {e for d in SOFTWARE.values() for e, _ in d} | set(SOFTWARE_SCALERS)
                     | {e for p in PARSERS.values() for e in p}
                     | {"filesrc", "rtspsrc", "parsebin", "decodebin", "videoconvert", "appsink"})


@dataclass(frozen=True)
class DecodeRequest:
    """What to decode. location: a file path or an ``rtsp://``/``rtsps://`` URL. codec: ``"h264"``, ``"h265"``
    or ``""`` (unknown). size: (width, height) the frames reach Python at, None for the full frame.
    threads: a software decoder's threads at most. latency_ms: RTSP jitter buffer (0: none)."""

    location: str
    codec: str = ""
    size: Optional[Size] = None
    threads: int = MAX_DECODER_THREADS
    latency_ms: int = 0

    def __post_init__(self) -> None:
        if self.codec not in ("", *CODECS):
            raise UserError(f"decoding {self.location}: codec {self.codec!r} is not known here; give h264, h265 or "
                            "'' (unknown: decodebin chooses)")
        if self.size is not None and (len(self.size) != 2 or min(self.size) < 16):
            raise UserError(f"decoding {self.location}: a decoded size of {self.size} is too small; give "
                            "(width, height) of 16 pixels or more, or None for the full frame")
        if self.threads < 1:
            raise UserError(f"decoding {self.location}: {self.threads} decoder threads; give 1 or more")

    @property
    def live(self) -> bool:
        return bool(re.match(r"rtsps?://", self.location))


@dataclass(frozen=True)
class DecodePlan:
    """launch: the launch line, ending in appsink (BGR frames). decoder, scaler: the elements chosen (scaler ""
    at full size). hardware: whether the decoder is. reason: one line saying what was chosen and why."""

    launch: str
    decoder: str
    scaler: str
    hardware: bool
    reason: str


def _quoted(value: str) -> str:
    """A launch-line property value: in double quotes, with backslashes and quotes escaped."""
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _source(request: DecodeRequest) -> str:
    """The source up to the decoder's input: depayloaded and parsed when the codec is known."""
    if request.live:
        head = f"rtspsrc location={_quoted(request.location)} latency={request.latency_ms} drop-on-latency=true"
        return f"{head} ! {' ! '.join(PARSERS[request.codec])}" if request.codec else head
    head = f"filesrc location={_quoted(request.location)}"
    # parsebin finds the container's demuxer; the parser after it gives the byte-stream NVDEC wants
    return f"{head} ! parsebin ! {PARSERS[request.codec][1]}" if request.codec else head


def _caps(size: Optional[Size]) -> str:
    return "" if size is None else f",width={size[0]},height={size[1]}"


def _size_words(size: Optional[Size], scaler: str) -> str:
    if size is None:
        return "full size (an output asks for it)"
    return f"scaled to {size[0]}x{size[1]} by {scaler} before Python"


def _software_scale(size: Optional[Size], has) -> Tuple[str, str]:
    """(chain, scaler) from a software decoder's frames to BGR at ``size`` (add-borders=false: stretched to
    exactly that size, as the model's own resize does, never letterboxed)."""
    if size is None:
        return TO_BGR, ""
    if has("videoconvertscale") and not has("videoscale"):
        return f"videoconvertscale add-borders=false ! video/x-raw,format=BGR{_caps(size)}", "videoconvertscale"
    # Scaled in the decoder's YUV (1.5 bytes a pixel), converted once small: cheaper than one pass that
    # converts and scales together (docs/multistream.md, "Scaling in YUV").
    return f"videoscale add-borders=false ! video/x-raw{_caps(size)} ! {TO_BGR}", "videoscale"


def _hardware_plan(request: DecodeRequest, has) -> Optional[DecodePlan]:
    for family in HARDWARE:
        decoder = dict(family.decoders).get(request.codec, "")
        if decoder and has(decoder) and has(family.scaler):
            chain = family.scale.format(caps=_caps(request.size))
            sink = LIVE_APPSINK if request.live else FILE_APPSINK
            reason = (f"{CODECS[request.codec]} {request.location}: {decoder} ({family.name}), "
                      f"{_size_words(request.size, family.scaler)}")
            return DecodePlan(f"{_source(request)} ! {decoder} ! {chain} ! {sink}", decoder, family.scaler, True,
                              reason)
    return None


def _software_plan(request: DecodeRequest, has, why: str) -> DecodePlan:
    sink = LIVE_APPSINK if request.live else FILE_APPSINK
    scale, scaler = _software_scale(request.size, has)
    if not request.codec:
        return DecodePlan(f"{_source(request)} ! decodebin ! {scale} ! {sink}", "decodebin", scaler, False,
                          f"codec unknown {request.location}: decodebin (its own choice of decoder and threads), "
                          f"{_size_words(request.size, scaler)}")
    choices = SOFTWARE[request.codec]
    decoder, threaded = next(((e, t) for e, t in choices if has(e)), choices[0])
    element = f"{decoder} max-threads={request.threads}" if threaded else decoder
    threads = f"{request.threads} thread{'s' if request.threads > 1 else ''}" if threaded else "its own threads"
    return DecodePlan(f"{_source(request)} ! {element} ! {scale} ! {sink}", decoder, scaler, False,
                      f"{CODECS[request.codec]} {request.location}: {decoder} (software, {threads}; {why}), "
                      f"{_size_words(request.size, scaler)}")


def decoder_threads(streams: int, cores: Optional[int] = None) -> int:
    """A software decoder's threads for each of ``streams`` streams on ``cores`` cores (None: this machine's):
    the cores a stream has to itself, 1 to :data:`MAX_DECODER_THREADS`. A second thread only speeds a stream up
    where a core would idle beside it, and costs CPU of its own (it hands frames to and waits for the first):
    with a stream for every core, one thread each decodes more frames on the same cores
    (docs/multistream.md, "Frames waiting; one decoder thread a camera")."""
    cores = cores if cores is not None else os.cpu_count() or 1
    return max(1, min(MAX_DECODER_THREADS, cores // max(streams, 1)))


def plan_decoding(request: DecodeRequest, available: Optional[Iterable[str]], hardware: bool = True) -> DecodePlan:
    """The cheapest decoding of ``request`` with the ``available`` GStreamer elements (None: not known, the
    usual software elements assumed); ``hardware=False`` asks for the software plan."""
    known = None if available is None else frozenset(available)

    def has(element: str) -> bool:
        return known is None or element in known

    if request.codec and hardware and known is not None:
        plan = _hardware_plan(request, has)
        if plan is not None:
            return plan
    if known is None:
        why = "GStreamer's elements not known here"
    elif not hardware:
        why = "software asked for"
    else:
        names = ", ".join(dict(f.decoders)[request.codec] for f in HARDWARE) if request.codec else ""
        why = f"no hardware {CODECS.get(request.codec, '')} decoder here ({names})"
    return _software_plan(request, has, why)


def decode_attempts(request: DecodeRequest, available: Optional[Iterable[str]]) -> List[DecodePlan]:
    """The plans to try in order: the cheapest, then software when that is hardware (a decoder element can
    exist while its device is busy or absent)."""
    first = plan_decoding(request, available)
    return [first, plan_decoding(request, available, hardware=False)] if first.hardware else [first]


def decode_size(model_size: Size, output_sizes: Sequence[Optional[Size]] = ()) -> Optional[Size]:
    """The size to decode at: large enough for the model's input and every output's (width, height), None
    (the full frame) when an output asks for it with None."""
    if any(size is None for size in output_sizes):
        return None
    sizes = [model_size, *(s for s in output_sizes if s is not None)]
    return max(s[0] for s in sizes), max(s[1] for s in sizes)


def available_elements(names: Iterable[str] = ELEMENTS) -> Optional[FrozenSet[str]]:
    """Which of ``names`` this box's GStreamer has: PyGObject's registry, else ``gst-inspect-1.0``'s listing;
    None when neither is there to ask."""
    modules = gi_modules("Gst")
    if modules is None:
        return _inspected_elements(names)
    gst = modules[0]
    return frozenset(n for n in names if gst.ElementFactory.find(n) is not None)


def _inspected_elements(names: Iterable[str]) -> Optional[FrozenSet[str]]:
    inspect = shutil.which("gst-inspect-1.0")
    if inspect is None:
        return None
    try:
        listing = subprocess.run([inspect], capture_output=True, text=True, timeout=60).stdout
    except (OSError, subprocess.TimeoutExpired):
        return None
    # lines like "libav:  avdec_h264: libav H.264 / AVC / ... decoder"
    found = {m.group(1) for m in re.finditer(r"^[\w-]+:\s+([\w-]+):", listing, re.MULTILINE)}
    return frozenset(n for n in names if n in found)


@dataclass(frozen=True)
class SourceProbe:
    """What GStreamer's discoverer found: codec ``"h264"``, ``"h265"`` or ``""``, the frame size (None when
    unknown), and ``note``: why the codec is unknown, or ""."""

    codec: str
    size: Optional[Size]
    note: str = ""


def probe_source(location: str, timeout_s: float = 5.0) -> SourceProbe:
    """The codec and size of a file or RTSP stream (GStreamer's discoverer, through PyGObject)."""
    modules = gi_modules("Gst", "GstPbutils", "GLib")
    if modules is None:
        return SourceProbe("", None, "no PyGObject with GstPbutils to probe with")
    Gst, GstPbutils, GLib = modules
    uri = location if re.match(r"\w+://", location) else Gst.filename_to_uri(location)
    try:
        info = GstPbutils.Discoverer.new(int(timeout_s * Gst.SECOND)).discover_uri(uri)
    except GLib.Error as exc:
        return SourceProbe("", None, f"the probe failed: {exc.message}")
    videos = info.get_video_streams()
    if not videos:
        return SourceProbe("", None, "no video stream found")
    caps = videos[0].get_caps().to_string()
    codec = next((c for c in CODECS if caps.startswith(f"video/x-{c}")), "")
    return SourceProbe(codec, (videos[0].get_width(), videos[0].get_height()),
                       "" if codec else f"not H.264 or H.265 ({caps.split(',')[0]})")
