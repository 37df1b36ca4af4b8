"""A fake KServe v2 HTTP server on 127.0.0.1 for the answers a real server never sends: malformed, wrong
shapes, trickled, oversized. The real server (Triton, tests/test_kserve.py) covers every well-formed answer.

A test gives a ``handler(request, reply)`` per route (``"config"``, ``"infer"``, ``"index"``, ``"stats"``); the
server parses each request and calls it; the handler writes the answer through :class:`Reply` (which counts
the bytes the client took). Without a handler a route answers as a good server would, from the demo model's
configuration: so a test scripts only the answer it is about.
"""

from __future__ import annotations

import json
import socket
import threading
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Optional, Tuple

import numpy as np

MODEL = "ssd"
ANCHORS, CLASSES, SIDE = 3234, 6, 320  # the demo model's outputs (3234, 4) and (3234, 6), input (3, 320, 320)
OUTPUTS = {"bbox_regression": (ANCHORS, 4), "cls_logits": (ANCHORS, CLASSES)}


@dataclass
class Request:
    method: str
    path: str
    headers: Dict[str, str]
    body: bytes

    @property
    def route(self) -> str:
        if self.path.endswith("/config"):
            return "config"
        if self.path.endswith("/infer"):
            return "infer"
        if self.path.startswith("/v2/repository/index"):
            return "index"
        return "stats" if self.path.endswith("/stats") else "other"

    def infer_json(self) -> Dict[str, Any]:
        """The JSON part of an inference request (binary tensor extension or not)."""
        size = int(self.headers.get("inference-header-content-length", len(self.body)))
        return json.loads(self.body[:size])


class Reply:
    """The answer to one request, written straight to the socket; ``sent`` counts the bytes the client took
    before it stopped reading (a client that refuses an oversized answer closes early)."""

    def __init__(self, sock: socket.socket, stopping: threading.Event) -> None:
        self.sock, self.stopping = sock, stopping
        self.sent = 0

    def raw(self, data: bytes) -> bool:
        """Send ``data``; False once the client has gone."""
        view = memoryview(data)
        try:
            while view and not self.stopping.is_set():
                n = self.sock.send(view)
                self.sent += n
                view = view[n:]
        except OSError:
            return False
        return not view

    def answer(self, status: int, body: bytes, headers: Optional[Dict[str, str]] = None) -> bool:
        lines = [f"HTTP/1.1 {status} X", f"Content-Length: {len(body)}"]
        lines += [f"{k}: {v}" for k, v in (headers or {"Content-Type": "application/json"}).items()]
        return self.raw(("\r\n".join(lines) + "\r\n\r\n").encode() + body)

    def json(self, value: Any, status: int = 200) -> bool:
        return self.answer(status, json.dumps(value).encode())

    def stream(self, head: bytes, total: int, chunk: bytes = b"\0" * 65536) -> None:
        """``head``, then ``total`` filler bytes (or until the client goes)."""
        if not self.raw(head):
            return
        left = total
        while left > 0 and self.raw(chunk[:left]):
            left -= len(chunk)


Handler = Callable[[Request, Reply], None]


def demo_config(metadata_json: str, max_batch: int = 8) -> Dict[str, Any]:
    """Triton's JSON model configuration of the demo model with a dynamic batch axis."""
    return {"name": MODEL, "max_batch_size": max_batch,
            "input": [{"name": "images", "data_type": "TYPE_FP32", "dims": [3, SIDE, SIDE]}],
            "output": [{"name": n, "data_type": "TYPE_FP32", "dims": list(s)} for n, s in OUTPUTS.items()],
            "parameters": {"ssd_edge.metadata": {"string_value": metadata_json}}}


def infer_answer(request: Request, seed: int = 0) -> Tuple[Dict[str, Any], bytes]:
    """A well-formed answer to ``request`` (JSON part and binary part): seeded random outputs of the shapes
    the demo model has, for the batch the request sent."""
    return outputs_answer(int(request.infer_json()["inputs"][0]["shape"][0]), seed)


def outputs_answer(batch: int, seed: int = 0) -> Tuple[Dict[str, Any], bytes]:
    """A well-formed answer's JSON part and binary part for ``batch`` images (see :func:`infer_answer`)."""
    rng = np.random.default_rng(seed)
    header: Dict[str, Any] = {"model_name": MODEL, "outputs": []}
    blobs = []
    for name, shape in OUTPUTS.items():
        data = rng.normal(0, 1, (batch,) + shape).astype(np.float32).tobytes()
        header["outputs"].append({"name": name, "datatype": "FP32", "shape": [batch, *shape],
                                  "parameters": {"binary_data_size": len(data)}})
        blobs.append(data)
    return header, b"".join(blobs)


def binary_answer(reply: Reply, header: Dict[str, Any], blob: bytes, status: int = 200) -> bool:
    text = json.dumps(header).encode()
    return reply.answer(status, text + blob, {"Content-Type": "application/octet-stream",
                                               "Inference-Header-Content-Length": str(len(text))})


def good_infer(request: Request, reply: Reply) -> None:
    binary_answer(reply, *infer_answer(request))


@dataclass
class FakeKServe:
    """The server: ``FakeKServe(metadata_json, infer=handler)``; ``url()``, ``requests`` (every request
    parsed, in order), ``replies`` (the Reply of each), ``stop()``."""

    metadata_json: str
    handlers: Dict[str, Handler] = field(default_factory=dict)
    max_batch: int = 8
    requests: List[Request] = field(default_factory=list)
    replies: List[Reply] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.listener.settimeout(0.2)
        self.port = self.listener.getsockname()[1]
        self._stopping = threading.Event()
        self._threads: List[threading.Thread] = []
        self._accepting = threading.Thread(target=self._accept, daemon=True)
        self._accepting.start()

    def url(self, model: str = MODEL) -> str:
        return f"http://127.0.0.1:{self.port}/{model}"

    def count(self, route: str) -> int:
        return sum(r.route == route for r in self.requests)

    def stop(self) -> None:
        self._stopping.set()
        self._accepting.join(5)
        self.listener.close()
        for thread in self._threads:
            thread.join(5)

    def __enter__(self) -> "FakeKServe":
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _accept(self) -> None:
        while not self._stopping.is_set():
            try:
                conn, _ = self.listener.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            thread = threading.Thread(target=self._serve, args=(conn,), daemon=True)
            self._threads.append(thread)
            thread.start()

    def _serve(self, conn: socket.socket) -> None:
        conn.settimeout(0.2)
        reader = _Reader(conn, self._stopping)
        with conn:
            while not self._stopping.is_set():
                request = reader.request()
                if request is None:
                    return
                self.requests.append(request)
                reply = Reply(conn, self._stopping)
                self.replies.append(reply)
                conn.settimeout(10)  # a client that neither reads nor closes
                self.handlers.get(request.route, self._default)(request, reply)
                conn.settimeout(0.2)

    def _default(self, request: Request, reply: Reply) -> None:
        if request.route == "config":
            reply.json(demo_config(self.metadata_json, self.max_batch))
        elif request.route == "infer":
            good_infer(request, reply)
        elif request.route == "index":
            reply.json([{"name": MODEL, "state": "READY"}])
        else:
            reply.json({"error": "not found"}, 404)


class _Reader:
    """Parses HTTP/1.1 requests off one connection (Content-Length bodies only: what the client sends)."""

    def __init__(self, conn: socket.socket, stopping: threading.Event) -> None:
        self.conn, self.stopping, self.buffer = conn, stopping, b""

    def _fill(self) -> bool:
        while not self.stopping.is_set():
            try:
                data = self.conn.recv(1 << 20)
            except socket.timeout:
                continue
            except OSError:
                return False
            self.buffer += data
            return bool(data)
        return False

    def request(self) -> Optional[Request]:
        while b"\r\n\r\n" not in self.buffer:
            if not self._fill():
                return None
        head, self.buffer = self.buffer.split(b"\r\n\r\n", 1)
        first, *lines = head.decode("latin-1").split("\r\n")
        method, path, _ = first.split(" ", 2)
        headers = {k.strip().lower(): v.strip() for k, v in (line.split(":", 1) for line in lines)}
        size = int(headers.get("content-length", 0))
        while len(self.buffer) < size:
            if not self._fill():
                return None
        body, self.buffer = self.buffer[:size], self.buffer[size:]
        return Request(method, path, headers, body)


def trickle(body: bytes, lines: int, interval_s: float = 1.0, headers: Optional[Dict[str, str]] = None) -> Handler:
    """A handler that sends a status line, then one header line every ``interval_s`` seconds, then (if the
    client is still there) ``headers`` and ``body``: a client without a deadline gets a good answer, late."""
    def handler(request: Request, reply: Reply) -> None:
        if not reply.raw(b"HTTP/1.1 200 OK\r\n"):
            return
        for i in range(lines):
            if reply.stopping.wait(interval_s) or not reply.raw(f"X-Slow-{i}: {i}\r\n".encode()):
                return
        extra = "".join(f"{k}: {v}\r\n" for k, v in (headers or {}).items())
        reply.raw(f"{extra}Content-Length: {len(body)}\r\n\r\n".encode() + body)
    return handler


class FakeGrpc:
    """A KServe v2 gRPC server on 127.0.0.1 (grpcio with tritonclient's service definitions): ``config`` and
    ``infer`` are ``f(request, context) -> response`` protobuf handlers; the defaults answer as the demo model
    would. ``calls`` counts the requests by method."""

    def __init__(self, metadata_json: str, config: Optional[Callable[..., Any]] = None,
                 infer: Optional[Callable[..., Any]] = None, max_batch: int = 8) -> None:
        from concurrent.futures import ThreadPoolExecutor

        import grpc
        from google.protobuf import json_format
        from tritonclient.grpc import service_pb2, service_pb2_grpc

        self.calls: Dict[str, int] = {"config": 0, "infer": 0}
        config_json = demo_config(metadata_json, max_batch)
        fake = self

        class Servicer(service_pb2_grpc.GRPCInferenceServiceServicer):
            def ModelConfig(self, request: Any, context: Any) -> Any:
                fake.calls["config"] += 1
                if config is not None:
                    return config(request, context)
                return service_pb2.ModelConfigResponse(
                    config=json_format.ParseDict(config_json, service_pb2.model__config__pb2.ModelConfig()))

            def ModelInfer(self, request: Any, context: Any) -> Any:
                fake.calls["infer"] += 1
                return (infer or grpc_outputs)(request, context)

        self.server = grpc.server(ThreadPoolExecutor(4), options=[("grpc.max_send_message_length", -1)])
        service_pb2_grpc.add_GRPCInferenceServiceServicer_to_server(Servicer(), self.server)
        self.port = self.server.add_insecure_port("127.0.0.1:0")
        self.server.start()

    def url(self, model: str = MODEL) -> str:
        return f"grpc://127.0.0.1:{self.port}/{model}"

    def count(self, route: str) -> int:
        return self.calls.get(route, 0)

    def stop(self) -> None:
        self.server.stop(grace=None).wait(5)

    def __enter__(self) -> "FakeGrpc":
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def grpc_outputs(request: Any, context: Any, shapes: Optional[Dict[str, Tuple[int, ...]]] = None) -> Any:
    """A ModelInferResponse with seeded random FP32 outputs of ``shapes`` (default: the demo model's) for the
    request's batch."""
    from tritonclient.grpc import service_pb2

    batch = int(request.inputs[0].shape[0])
    rng = np.random.default_rng(0)
    response = service_pb2.ModelInferResponse(model_name=MODEL)
    for name, shape in (shapes or OUTPUTS).items():
        full = (batch,) + tuple(shape)
        response.outputs.add(name=name, datatype="FP32", shape=full)
        response.raw_output_contents.append(rng.normal(0, 1, full).astype(np.float32).tobytes())
    return response
