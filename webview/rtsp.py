"""The annotated streams over RTSP: GStreamer's RTSP server (gst-rtsp-server through PyGObject), one mount point
per stream, H.264 from ``nvv4l2h264enc`` on a Jetson (when the element exists) and ``x264enc`` elsewhere.

    out = RtspOut(["cam0"], "127.0.0.1", 8554, "live")   # rtsp://127.0.0.1:8554/live
    out.publish("cam0", bgr_frame)                       # any thread; returns at once
    out.close()

With several streams the mount points are PATH/STREAM. A mount point appears with its stream's first frame
(its size fixes the caps; a later frame of another size is resized to it). Clients share one encoder per stream
(a shared media). ``publish`` only keeps a reference to the newest frame; a feeder thread pushes it into the
encoders, and frames the encoder is not ready for are dropped, never queued (a leaky queue behind appsrc).

PyGObject is imported here lazily: importing this module needs no GStreamer.
"""

from __future__ import annotations

import threading
from typing import Any, Dict, List, Optional
from urllib.parse import quote

import numpy as np

from runtimes.errors import UserError
from runtimes.gstreamer import require_gi_modules

INSTALL_HINT = ("--rtsp-out needs GStreamer's RTSP server for Python: on Debian/Ubuntu "
                "apt install python3-gi gir1.2-gst-rtsp-server-1.0 gstreamer1.0-plugins-ugly "
                "(on a Jetson: python3-gi gir1.2-gst-rtsp-server-1.0 with JetPack's GStreamer)")
X264 = ("videoconvert ! video/x-raw,format=I420 ! "
        "x264enc tune=zerolatency speed-preset=ultrafast key-int-max={gop} bitrate={kbps} ! "
        "video/x-h264,profile=constrained-baseline")
# Jetson: nvvidconv takes BGRx (not BGR) into NVMM memory for the hardware encoder.
NVENC = ("videoconvert ! video/x-raw,format=BGRx ! nvvidconv ! video/x-raw(memory:NVMM),format=NV12 ! "
         "nvv4l2h264enc insert-sps-pps=true iframeinterval={gop} idrinterval={gop} bitrate={bps} maxperf-enable=true ! "
         "h264parse")


def import_gi() -> Any:
    """(Gst, GstRtspServer, GLib), initialised; :class:`UserError` with what to install when missing."""
    return require_gi_modules(INSTALL_HINT, "Gst", "GstRtspServer", "GLib")


def encoder_chain(has_element, fps: int = 30, kbps: int = 2000) -> str:
    """The encoding part of the launch line: ``has_element(name) -> bool`` says which elements exist."""
    gop = max(1, int(fps))  # a key frame a second: a client that joins sees video within a second
    if has_element("nvv4l2h264enc") and has_element("nvvidconv"):
        return NVENC.format(gop=gop, bps=kbps * 1000)
    if not has_element("x264enc"):
        raise UserError("--rtsp-out: no H.264 encoder: apt install gstreamer1.0-plugins-ugly (x264enc), "
                        "or on a Jetson use JetPack's GStreamer (nvv4l2h264enc)")
    return X264.format(gop=gop, kbps=kbps)


def launch_line(width: int, height: int, fps: int, encoder: str) -> str:
    """appsrc (BGR frames, stamped on arrival) -> leaky 2-buffer queue -> encoder -> RTP payloader pay0."""
    caps = f"video/x-raw,format=BGR,width={width},height={height},framerate={fps}/1"
    return (f"( appsrc name=src is-live=true format=time do-timestamp=true caps={caps} ! "
            f"queue leaky=downstream max-size-buffers=2 max-size-bytes=0 max-size-time=0 ! "
            f"{encoder} ! rtph264pay name=pay0 pt=96 config-interval=1 )")


def mount_paths(names: List[str], path: str) -> Dict[str, str]:
    """Stream -> mount point: "/PATH" for one stream, "/PATH/STREAM" for several."""
    base = "/" + path.strip("/")
    if len(names) == 1:
        return {names[0]: base}
    return {name: f"{base.rstrip('/')}/{quote(name, safe='')}" for name in names}


class _Feed:
    def __init__(self, mount: str) -> None:
        self.mount = mount
        self.frame: Optional[np.ndarray] = None
        self.seq = 0
        self.pushed_seq = 0
        self.size: Optional[tuple] = None  # (width, height) fixed by the first frame
        self.sources: List[Any] = []  # appsrc elements of the prepared media (one per shared media)
        self.pushed = 0
        self.dropped = 0


class RtspOut:
    """An RTSP server publishing each stream's frames. Raises :class:`UserError` when gi or an encoder is
    missing, or the address cannot be bound."""

    def __init__(self, names: List[str], host: str = "127.0.0.1", port: int = 8554, path: str = "live",
                 log=print, fps: int = 30, kbps: int = 2000) -> None:
        Gst, GstRtspServer, GLib = import_gi()
        self._Gst, self._GstRtspServer = Gst, GstRtspServer
        self.fps = int(fps)

        def has(name: str) -> bool:
            return Gst.ElementFactory.find(name) is not None

        self.encoder = encoder_chain(has, fps, kbps)
        self.host = host
        self._feeds = {name: _Feed(mount) for name, mount in mount_paths(names, path).items()}
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._stopping = False
        self._server = GstRtspServer.RTSPServer.new()
        self._server.set_address(host)
        self._server.set_service(str(port))
        self._context = GLib.MainContext.new()
        try:
            self._source = self._server.create_source(None)
        except GLib.Error as exc:
            raise UserError(f"--rtsp-out {host}:{port}: cannot listen there ({exc.message}); "
                            f"choose another port or address") from None
        self._source.attach(self._context)
        self.port = int(self._server.get_bound_port())
        self._loop = GLib.MainLoop.new(self._context, False)
        self._loop_thread = threading.Thread(target=self._run_loop, name="rtsp-server", daemon=True)
        self._loop_thread.start()
        self._feeder = threading.Thread(target=self._feed_loop, name="rtsp-feeder", daemon=True)
        self._feeder.start()
        self.encoder_name = "nvv4l2h264enc" if "nvv4l2h264enc" in self.encoder else "x264enc"
        log(f"rtsp: {', '.join(self.urls().values())} ({self.encoder_name}; each appears with its first frame)")

    def urls(self) -> Dict[str, str]:
        host = "127.0.0.1" if self.host in ("0.0.0.0", "") else self.host
        return {name: f"rtsp://{host}:{self.port}{feed.mount}" for name, feed in self._feeds.items()}

    def _run_loop(self) -> None:
        self._context.push_thread_default()
        try:
            self._loop.run()
        finally:
            self._context.pop_thread_default()

    def publish(self, name: str, frame: np.ndarray) -> None:
        """Hand over the newest (H, W, 3) uint8 BGR frame of ``name``; never blocks, never copies."""
        feed = self._feeds.get(name)
        if feed is None:
            return
        feed.frame = frame
        feed.seq += 1
        self._wake.set()

    # -- the feeder thread: mount points on first frames, frames into the encoders ------------------------------
    def _feed_loop(self) -> None:
        while not self._stopping:
            self._wake.wait(0.5)
            self._wake.clear()
            for feed in self._feeds.values():
                frame, seq = feed.frame, feed.seq
                if frame is None or seq == feed.pushed_seq:
                    continue
                if feed.size is None:
                    feed.size = (int(frame.shape[1]), int(frame.shape[0]))
                    self._mount(feed)
                feed.pushed_seq = seq
                with self._lock:
                    sources = list(feed.sources)
                if sources:
                    self._push(feed, frame, sources)

    def _mount(self, feed: _Feed) -> None:
        assert feed.size is not None  # set from the first frame just before
        factory = self._GstRtspServer.RTSPMediaFactory.new()
        factory.set_launch(launch_line(feed.size[0], feed.size[1], self.fps, self.encoder))
        factory.set_shared(True)  # every client of this stream watches one encoder
        factory.connect("media-configure", self._on_media_configure, feed)
        self._server.get_mount_points().add_factory(feed.mount, factory)

    def _on_media_configure(self, _factory: Any, media: Any, feed: _Feed) -> None:
        source = media.get_element().get_child_by_name("src")
        with self._lock:
            feed.sources.append(source)

        def forget(_media: Any) -> None:
            with self._lock:
                if source in feed.sources:
                    feed.sources.remove(source)

        media.connect("unprepared", forget)

    def _push(self, feed: _Feed, frame: np.ndarray, sources: List[Any]) -> None:
        Gst = self._Gst
        if (frame.shape[1], frame.shape[0]) != feed.size:
            import cv2

            frame = cv2.resize(frame, feed.size)
        data = np.ascontiguousarray(frame, dtype=np.uint8).tobytes()
        for source in sources:
            # appsrc keeps what the encoder has not taken; over two frames, this one is dropped instead
            if source.get_property("current-level-bytes") > 2 * len(data):
                feed.dropped += 1
                continue
            if source.emit("push-buffer", Gst.Buffer.new_wrapped(data)) == Gst.FlowReturn.OK:
                feed.pushed += 1

    def stats(self) -> Dict[str, Dict[str, int]]:
        return {name: {"pushed": feed.pushed, "dropped": feed.dropped} for name, feed in self._feeds.items()}

    def close(self, timeout_s: float = 2.0) -> None:
        """Disconnect clients, stop the server and its threads; bounded by ``timeout_s`` per thread."""
        self._stopping = True
        self._wake.set()
        self._feeder.join(timeout_s)
        remove = self._GstRtspServer.RTSPFilterResult.REMOVE
        self._server.client_filter(lambda _server, _client, *_: remove, None)
        for feed in self._feeds.values():
            self._server.get_mount_points().remove_factory(feed.mount)
        self._source.destroy()
        self._loop.quit()
        self._loop_thread.join(timeout_s)
