"""The live view of a running camera pipeline: a web page with every stream's annotated video (MJPEG),
Prometheus metrics, a health check, snapshots, and an RTSP output. See docs/webview.md.

Device side (Python 3.8, numpy 1.x): OpenCV (JPEG encoding), prometheus-client and PyGObject (RTSP) are
imported only where they are used.
"""
