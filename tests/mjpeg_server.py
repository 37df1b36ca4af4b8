"""A live MJPEG-over-HTTP camera on 127.0.0.1 for the tests, the kind IP cameras serve
(multipart/x-mixed-replace), that drops every connection after ``frames_per_connection`` frames: the app's
live-source path reads it through OpenCV's FFmpeg backend, loses it, and must reopen it."""

from __future__ import annotations

import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import List

import cv2
import numpy as np


class MjpegCamera:
    def __init__(self, image: np.ndarray, frames_per_connection: int, fps: float = 50.0) -> None:
        ok, encoded = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, 95])
        assert ok
        self.jpeg = encoded.tobytes()
        self.frames_per_connection, self.period = frames_per_connection, 1.0 / fps
        self.connections: List[float] = []
        camera = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                camera.connections.append(time.monotonic())
                self.send_response(200)
                self.send_header("Content-Type", "multipart/x-mixed-replace; boundary=frame")
                self.end_headers()
                try:
                    for _ in range(camera.frames_per_connection):
                        self.wfile.write(b"--frame\r\nContent-Type: image/jpeg\r\nContent-Length: %d\r\n\r\n"
                                         % len(camera.jpeg) + camera.jpeg + b"\r\n")
                        time.sleep(camera.period)
                except (BrokenPipeError, ConnectionResetError):
                    pass

            def log_message(self, *args) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/stream.mjpg"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> "MjpegCamera":
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()
