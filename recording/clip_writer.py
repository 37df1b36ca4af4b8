"""Encoded units to a playable MP4 without re-encoding: appsrc -> h264parse/h265parse -> mp4mux -> filesink,
into a temporary file that the caller renames into place once :meth:`ClipWriter.finish` saw the muxer's
end of stream (mp4mux writes the index last, so only a finished file plays)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

from recording.gst import import_gst, parser_for
from recording.units import NS, EncodedUnit

FINISH_TIMEOUT_S = 30.0


class ClipWriter:
    """One clip being written to ``temp``. Timestamps are moved so the clip starts at 0 and keep the source's
    spacing (continuous). ``error`` holds GStreamer's message once writing failed (a full disk: the file
    sink's "No space left on device"); pushes after that are ignored."""

    def __init__(self, caps: str, temp: Path) -> None:
        self._Gst = Gst = import_gst()
        self.pipeline = Gst.parse_launch(f"appsrc name=src format=time ! {parser_for(caps)} ! mp4mux ! "
                                         "filesink name=sink")
        self._src = self.pipeline.get_by_name("src")
        self._src.set_property("caps", Gst.Caps.from_string(caps))
        self._src.set_property("max-bytes", 0)  # the clip's pre-roll goes in at once; the muxer takes it fast
        self.pipeline.get_by_name("sink").set_property("location", str(temp))
        self.temp = temp
        self.error: Optional[str] = None
        self._base: Optional[int] = None
        self.first: Optional[EncodedUnit] = None
        self.last: Optional[EncodedUnit] = None
        self.units = 0
        self.bytes = 0
        if self.pipeline.set_state(Gst.State.PLAYING) == Gst.StateChangeReturn.FAILURE:
            self._check_bus()
            self.error = self.error or f"cannot write {temp}"

    def push(self, unit: EncodedUnit) -> None:
        Gst = self._Gst
        if self.error is not None:
            return
        if self._base is None:
            self._base = min(unit.pts_ns, unit.dts_ns if unit.dts_ns is not None else unit.pts_ns)
        if unit.pts_ns < self._base:
            return  # a leading picture of an open GOP: its references are before the clip
        buffer = Gst.Buffer.new_wrapped(unit.data)
        buffer.pts = unit.pts_ns - self._base
        buffer.dts = unit.dts_ns - self._base if unit.dts_ns is not None and unit.dts_ns >= self._base \
            else Gst.CLOCK_TIME_NONE
        if unit.duration_ns is not None:
            buffer.duration = unit.duration_ns
        if not unit.keyframe:
            buffer.set_flags(Gst.BufferFlags.DELTA_UNIT)
        if self._src.emit("push-buffer", buffer) != Gst.FlowReturn.OK:
            self._check_bus()
            self.error = self.error or "the clip's pipeline stopped taking video"
            return
        self.first = self.first or unit
        self.last = unit
        self.units += 1
        self.bytes += unit.size
        if self.units % 30 == 0:
            self._check_bus()

    def _check_bus(self) -> None:
        message = self.pipeline.get_bus().pop_filtered(self._Gst.MessageType.ERROR)
        if message is not None and self.error is None:
            self.error = message.parse_error()[0].message

    def finish(self, timeout_s: float = FINISH_TIMEOUT_S) -> bool:
        """End the clip and wait until the muxer has written it; True when the file is complete. Blocks:
        call it off the streaming thread."""
        Gst = self._Gst
        try:
            if self.error is None and self.units:
                self._src.emit("end-of-stream")
                message: Any = self.pipeline.get_bus().timed_pop_filtered(
                    int(timeout_s * NS), Gst.MessageType.EOS | Gst.MessageType.ERROR)
                if message is None:
                    self.error = f"the muxer did not finish within {timeout_s:g} s"
                elif message.type == Gst.MessageType.ERROR:
                    self.error = message.parse_error()[0].message
            elif self.error is None:
                self.error = "no video reached the clip"
        finally:
            self.pipeline.set_state(Gst.State.NULL)
        return self.error is None
