"""The H.264 encoder for sources that give raw frames (USB, CSI, MJPEG): the box's hardware encoder when it
has one (a Jetson's nvv4l2h264enc, Intel's VAAPI or Quick Sync), x264 otherwise. Sources that are already
H.264/H.265 (RTSP cameras, files) are never encoded again."""

from __future__ import annotations

from typing import Callable

from runtimes.errors import UserError

# Each chain takes raw video of any format and gives H.264; {gop} frames between keyframes (a clip starts on
# one, so it bounds how far before its pre-roll a clip may start), {kbps} the bitrate.
CHAINS = (
    ("nvv4l2h264enc", "nvvidconv",
     "videoconvert ! video/x-raw,format=BGRx ! nvvidconv ! video/x-raw(memory:NVMM),format=NV12 ! "
     "nvv4l2h264enc insert-sps-pps=true iframeinterval={gop} idrinterval={gop} bitrate={bps}"),
    ("vaapih264enc", "vaapih264enc", "videoconvert ! vaapih264enc keyframe-period={gop} bitrate={kbps}"),
    ("qsvh264enc", "qsvh264enc", "videoconvert ! video/x-raw,format=NV12 ! qsvh264enc gop-size={gop} bitrate={kbps}"),
    ("x264enc", "x264enc",
     "videoconvert ! video/x-raw,format=I420 ! x264enc tune=zerolatency speed-preset=veryfast "
     "key-int-max={gop} bitrate={kbps}"),
)


def raw_encoder_chain(has_element: Callable[[str], bool], gop: int = 30, kbps: int = 4000) -> str:
    """The launch-line fragment of the first encoder whose elements exist (``has_element(name) -> bool``)."""
    for encoder, helper, chain in CHAINS:
        if has_element(encoder) and has_element(helper):
            return chain.format(gop=max(1, int(gop)), kbps=int(kbps), bps=int(kbps) * 1000)
    raise UserError("--record on a raw source (USB, CSI, MJPEG) needs an H.264 encoder: apt install "
                    "gstreamer1.0-plugins-ugly (x264enc), or use the box's own (nvv4l2h264enc, VAAPI, Quick Sync)")


def encoder_name(chain: str) -> str:
    return next(encoder for encoder, _, _ in CHAINS if encoder in chain)
