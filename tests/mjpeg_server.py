"""HTTP cameras on 127.0.0.1 for the tests, the kind IP cameras serve (multipart/x-mixed-replace MJPEG):

* :class:`MjpegCamera` serves JPEG frames and drops every connection after ``frames_per_connection`` frames
  (the app's live-source path reads it through OpenCV's FFmpeg backend, loses it, and must reopen it); the
  connections numbered in ``refuse`` are answered 503 instead;
* :class:`BrokenCamera` never sends a frame: after the multipart headers it streams random bytes at
  ``rate`` bytes a second ("garbage"), or one byte every half second ("trickle").
"""

from __future__ import annotations

import os
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Callable, Collection, List

import cv2
import numpy as np

MULTIPART = "multipart/x-mixed-replace; boundary=frame"


class _Server:
    """A threading HTTP server on a free port of 127.0.0.1 whose GET answers with ``serve(handler,
    connection number)``; a context manager that starts and stops it."""

    def __init__(self, serve: Callable[[BaseHTTPRequestHandler, int], None], path: str = "stream.mjpg") -> None:
        self.connections: List[float] = []  # when each connection came, monotonic
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                server.connections.append(time.monotonic())
                try:
                    serve(self, len(server.connections) - 1)
                except (BrokenPipeError, ConnectionResetError):
                    pass

            def log_message(self, *args) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/{path}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.stopped = threading.Event()

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stopped.set()
        self.server.shutdown()
        self.server.server_close()


def _start_multipart(handler: BaseHTTPRequestHandler) -> None:
    handler.send_response(200)
    handler.send_header("Content-Type", MULTIPART)
    handler.end_headers()


class MjpegCamera(_Server):
    def __init__(self, image: np.ndarray, frames_per_connection: int, fps: float = 50.0,
                 refuse: Collection[int] = ()) -> None:
        ok, encoded = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, 95])
        assert ok
        self.jpeg = encoded.tobytes()
        self.frames_per_connection, self.period, self.refuse = frames_per_connection, 1.0 / fps, set(refuse)
        super().__init__(self._serve)

    def _serve(self, handler: BaseHTTPRequestHandler, number: int) -> None:
        if number in self.refuse:
            handler.send_error(503, "camera busy")
            return
        _start_multipart(handler)
        for _ in range(self.frames_per_connection):
            if self.stopped.is_set():
                return
            handler.wfile.write(b"--frame\r\nContent-Type: image/jpeg\r\nContent-Length: %d\r\n\r\n"
                                % len(self.jpeg) + self.jpeg + b"\r\n")
            time.sleep(self.period)


class BrokenCamera(_Server):
    """A camera that never sends a frame: ``mode`` "garbage" (random bytes after a part header without a
    length, at ``rate`` bytes/s: the demuxer looks for the next boundary and keeps all of it) or "trickle"
    (one byte every half second after the headers). ``sent`` counts the bytes of all connections."""

    CHUNK = 64 * 1024

    def __init__(self, mode: str, rate: float = 32e6) -> None:
        assert mode in ("garbage", "trickle")
        self.mode, self.rate, self.sent = mode, rate, 0
        super().__init__(self._serve)

    def _serve(self, handler: BaseHTTPRequestHandler, number: int) -> None:
        _start_multipart(handler)
        handler.wfile.write(b"--frame\r\nContent-Type: image/jpeg\r\n\r\n")
        started, sent = time.monotonic(), 0
        while not self.stopped.is_set():
            if self.mode == "trickle":
                handler.wfile.write(b"\xff")
                handler.wfile.flush()
                self.sent += 1
                time.sleep(0.5)
                continue
            early = started + sent / self.rate - time.monotonic()
            if early > 0:
                time.sleep(early)  # the link's rate
            handler.wfile.write(os.urandom(self.CHUNK))
            sent += self.CHUNK
            self.sent += self.CHUNK
