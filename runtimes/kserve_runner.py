"""A model served over KServe v2 (Triton, ``apps/serve.py``) as a :class:`Detector`: the network runs on the
server, pre- and post-processing here.

    load_detector("http://127.0.0.1:8000/ssdlite320_shapes")      # tritonclient's HTTP client
    load_detector("grpc://127.0.0.1:8001/ssdlite320_shapes", timeout=5, retries=2)

The model's metadata comes from the server's model configuration (Triton's model-config extension): the
``ssd_edge.metadata`` parameter that ``export/build_engine.py --target triton`` and ``apps/serve.py`` put
there; a server without it (OpenVINO Model Server, a hand-written config) needs ``metadata=`` (the
repository's ``metadata.json`` or the model file). A batch is up to the served model's ``max_batch_size``
images (a static-batch model: its batch, padded). Requests in flight: gRPC's ``async_infer``; HTTP through
``depth`` threads with a client each (tritonclient's HTTP ``async_infer`` runs on gevent, whose requests
only advance while the submitting thread waits in gevent, so they would not overlap our pre-processing).

Options: ``timeout`` seconds per request (connect and answer), ``retries`` further attempts after an error
of the connection or of an unavailable server (not after the server refusing a request), ``retry_delay``
seconds between attempts; a request fails after at most about ``(retries + 1) * timeout + retries *
retry_delay`` seconds with one :class:`ServingError` naming the server and what to check.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Dict, List, Mapping, Optional

import numpy as np

from runtimes.detector import Detector, batch_capacity, pad_batch
from runtimes.errors import UserError
from runtimes.loader import Runtime
from runtimes.metadata import METADATA_KEY, ModelMetadata
from runtimes.requests import Requests, ThreadRequests

SCHEMES = ("http://", "https://", "grpc://")
DEFAULT_TIMEOUT_S = 10.0
DEFAULT_RETRY_DELAY_S = 0.5
_RETRYABLE_STATUS = ("UNAVAILABLE", "DEADLINE_EXCEEDED", "502", "503", "504")
_MODEL_AWAY = ("unknown model", "no available versions", "is not ready")
_LOOPBACK = ("127.", "localhost", "[::1]")


class ServingError(UserError):
    """A request to the server failed (after the retries it was allowed)."""


@dataclass
class Endpoint:
    """``grpc://HOST:PORT/NAME`` taken apart: the scheme, ``HOST:PORT`` and the model's name."""

    scheme: str
    address: str
    model: str

    @property
    def url(self) -> str:
        return f"{self.scheme}{self.address}/{self.model}"


def parse_url(url: str) -> Endpoint:
    """The :class:`Endpoint` of ``http[s]://HOST:PORT/NAME`` or ``grpc://HOST:PORT/NAME`` (``/v2/models/NAME``
    is accepted too)."""
    scheme = next((s for s in SCHEMES if url.lower().startswith(s)), None)
    if scheme is None:
        raise UserError(f"{url}: a served model's URL starts with {', '.join(SCHEMES)}")
    rest = url[len(scheme):].rstrip("/")
    address, _, path = rest.partition("/")
    if path.startswith("v2/models/"):
        path = path[len("v2/models/"):]
    if not address or not path or "/" in path:
        raise UserError(f"{url}: name the model after the server's address, e.g. {scheme}127.0.0.1:"
                        f"{8001 if scheme == 'grpc://' else 8000}/MODEL")
    if ":" not in address.rsplit("]", 1)[-1]:
        address += ":8001" if scheme == "grpc://" else ":443" if scheme == "https://" else ":8000"
    return Endpoint(scheme, address, path)


def _import_client(scheme: str) -> Any:
    try:
        if scheme == "grpc://":
            import tritonclient.grpc as client
        else:
            import tritonclient.http as client
    except ImportError:
        raise UserError("KServe URLs need tritonclient: pip install 'tritonclient[http,grpc]'") from None
    return client


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text.splitlines()[0][:200]


def is_retryable(exc: BaseException, serving: bool = False) -> bool:
    """Whether ``exc`` is the connection's or an unavailable server's (worth another attempt), not the
    server refusing the request. ``serving``: the model answered before, so its being unknown or not ready
    is a server restarting or reloading it (a wrong name is caught when the detector is made)."""
    from tritonclient.utils import InferenceServerException

    if isinstance(exc, InferenceServerException):
        status = str(exc.status() or "")
        if serving and any(word in _first_line(exc).lower() for word in _MODEL_AWAY):
            return True
        return any(code in status for code in _RETRYABLE_STATUS) or not status
    return True  # socket errors, timeouts, connection resets


class _Client:
    """One tritonclient client (HTTP or gRPC; neither is thread-safe) and the calls the runtime makes."""

    def __init__(self, endpoint: Endpoint, timeout: float) -> None:
        self.endpoint, self.timeout = endpoint, timeout
        self.grpc = endpoint.scheme == "grpc://"
        self.module = _import_client(endpoint.scheme)
        if self.grpc:
            self.client = self.module.InferenceServerClient(url=endpoint.address)
        else:
            self.client = self.module.InferenceServerClient(
                url=endpoint.address, ssl=endpoint.scheme == "https://", connection_timeout=timeout,
                network_timeout=timeout)

    def config(self) -> Dict[str, Any]:
        """The model's configuration as Triton's JSON: ``max_batch_size``, ``input``/``output`` (name,
        data_type, dims as ints), ``parameters`` (name -> string)."""
        if self.grpc:
            raw = self.client.get_model_config(self.endpoint.model, as_json=True, client_timeout=self.timeout)
            raw = raw.get("config", raw)
        else:
            raw = self.client.get_model_config(self.endpoint.model)

        def tensors(entries: List[Dict[str, Any]]) -> List[Dict[str, Any]]:
            return [{"name": e["name"], "data_type": e.get("data_type", "TYPE_FP32"),
                     "dims": [int(d) for d in e.get("dims", [])]} for e in entries]

        parameters = {k: v.get("string_value", "") for k, v in (raw.get("parameters") or {}).items()}
        return {"max_batch_size": int(raw.get("max_batch_size", 0)), "input": tensors(raw.get("input", [])),
                "output": tensors(raw.get("output", [])), "parameters": parameters}

    def models(self) -> Optional[List[str]]:
        """The models the server has: its repository index, else its statistics (PyTriton restricts the
        repository API); None when it lists neither."""
        for call in (self._index, self._statistics):
            try:
                names = call()
            except Exception:  # restricted or absent on this server: try the next way
                continue
            if names:
                return sorted(set(names))
        return None

    def _index(self) -> List[str]:
        if self.grpc:
            found = self.client.get_model_repository_index(as_json=True, client_timeout=self.timeout)
            return [m["name"] for m in found.get("models", [])]
        return [m["name"] for m in self.client.get_model_repository_index()]

    def _statistics(self) -> List[str]:
        if self.grpc:
            found = self.client.get_inference_statistics(as_json=True, client_timeout=self.timeout)
        else:
            found = self.client.get_inference_statistics()
        return [m["name"] for m in found.get("model_stats", [])]

    def _request(self, input_name: str, datatype: str, batch: np.ndarray, output_names: List[str]) -> Any:
        inputs = [self.module.InferInput(input_name, list(batch.shape), datatype)]
        if self.grpc:
            inputs[0].set_data_from_numpy(batch)
            outputs = [self.module.InferRequestedOutput(name) for name in output_names]
        else:
            inputs[0].set_data_from_numpy(batch, binary_data=True)
            outputs = [self.module.InferRequestedOutput(name, binary_data=True) for name in output_names]
        return inputs, outputs

    def infer(self, input_name: str, datatype: str, batch: np.ndarray,
              output_names: List[str]) -> Dict[str, np.ndarray]:
        inputs, outputs = self._request(input_name, datatype, batch, output_names)
        extra = {"client_timeout": self.timeout} if self.grpc else {}
        result = self.client.infer(self.endpoint.model, inputs, outputs=outputs, **extra)
        return {name: result.as_numpy(name) for name in output_names}

    def infer_async(self, input_name: str, datatype: str, batch: np.ndarray, output_names: List[str],
                    done: Callable[[Optional[Dict[str, np.ndarray]], Optional[BaseException]], None]) -> None:
        """gRPC only: start the request; ``done(outputs, None)`` or ``done(None, error)`` from gRPC's thread."""
        inputs, outputs = self._request(input_name, datatype, batch, output_names)

        def callback(result: Any, error: Any) -> None:
            if error is not None:
                done(None, error)
                return
            try:
                arrays = {name: result.as_numpy(name) for name in output_names}
            except BaseException as exc:
                done(None, exc)
                return
            done(arrays, None)

        self.client.async_infer(self.endpoint.model, inputs, callback, outputs=outputs, client_timeout=self.timeout)

    def close(self) -> None:
        self.client.close()


class KServeDetector(Detector):
    """A detector whose network runs on a KServe v2 server (see the module docstring).

    Args:
        url: ``http://HOST:PORT/NAME``, ``https://...`` or ``grpc://HOST:PORT/NAME``.
        timeout: seconds a request (or connecting) may take (default 10).
        retries: further attempts after a connection error or an unavailable server (default 0).
        retry_delay: seconds between attempts (default 0.5).
        max_batch: images per request, up to the served ``max_batch_size`` (default: that).
        metadata: for servers without the metadata parameter: a ``metadata.json`` (written beside
            ``config.pbtxt``) or the ``.onnx`` served.
    """

    backend = "kserve"

    def __init__(self, url: str, *, timeout: float = DEFAULT_TIMEOUT_S, retries: int = 0,
                 retry_delay: float = DEFAULT_RETRY_DELAY_S, max_batch: Optional[int] = None,
                 metadata: "str | Path | None" = None, **thresholds: Any) -> None:
        if timeout <= 0 or retries < 0 or retry_delay < 0:
            raise UserError(f"{url}: timeout must be > 0 s, retries and retry_delay >= 0")
        self.endpoint = parse_url(url)
        self.timeout, self.retries, self.retry_delay = float(timeout), int(retries), float(retry_delay)
        self._client = _Client(self.endpoint, self.timeout)
        self._lock = threading.Lock()  # tritonclient's clients are not thread-safe
        # The HTTP client runs on gevent, whose connections belong to the thread that made them ("Cannot
        # switch to a different thread" elsewhere): each calling thread gets a client of its own.
        self._local = threading.local()
        self._local.client = self._client
        self._clients = [self._client]
        config = self._server_config()
        super().__init__(self._metadata(config, metadata), url, **thresholds)
        if not config["input"] or not config["output"]:
            raise UserError(f"{url}: the served model declares no inputs or outputs in its configuration")
        graph_input = config["input"][0]
        self.input_name = graph_input["name"]
        self.datatype = graph_input["data_type"].replace("TYPE_", "")
        self.output_names = [o["name"] for o in config["output"]]
        served = config["max_batch_size"]
        if served > 0:
            self.static_batch: Optional[int] = None
            if max_batch is not None and not 1 <= int(max_batch) <= served:
                raise UserError(f"{url}: max_batch={max_batch}, the server takes 1 to {served} images a request "
                                "(its max_batch_size)")
            self.max_batch = int(max_batch) if max_batch is not None else served
            dims = graph_input["dims"]
        else:
            dims = graph_input["dims"][1:]
            self.static_batch = graph_input["dims"][0] if graph_input["dims"] and graph_input["dims"][0] > 0 else 1
            self.max_batch = batch_capacity(self.static_batch, max_batch, url)
        self._check_input(dims)

    # -- set-up ---------------------------------------------------------------------------------------------

    def _server_config(self) -> Dict[str, Any]:
        from tritonclient.utils import InferenceServerException

        try:
            return self._retrying(self._client.config, serving=False)
        except ServingError as exc:
            cause = exc.__cause__
            if isinstance(cause, InferenceServerException) and not is_retryable(cause):
                text = _first_line(cause)
                if "unknown model" in text.lower() or "not found" in text.lower():
                    raise UserError(self._unknown_model()) from None
                raise UserError(f"{self.endpoint.url}: the server cannot describe model '{self.endpoint.model}' "
                                f"({text}); KServe servers without Triton's model-config API need metadata=FILE") \
                    from None
            raise UserError(f"{self.endpoint.url}: cannot reach a KServe server at {self.endpoint.address} "
                            f"({_first_line(cause or exc)}); start one (python apps/serve.py --model M) or check "
                            "the URL") from None

    def _unknown_model(self) -> str:
        names = self._client.models()
        if names is None:
            listing = "it does not list its models to clients"
        else:
            listing = "it serves " + ", ".join(names) + (
                f" (e.g. {self.endpoint.scheme}{self.endpoint.address}/{names[0]})" if names else "")
        return f"{self.endpoint.url}: the server has no model '{self.endpoint.model}'; {listing}"

    def _metadata(self, config: Dict[str, Any], metadata: "str | Path | None") -> ModelMetadata:
        origin = f"{self.endpoint.url} (parameter {METADATA_KEY})"
        if metadata is not None:
            return _metadata_file(Path(metadata))
        text = config["parameters"].get(METADATA_KEY)
        if not text:
            raise UserError(
                f"{self.endpoint.url}: the server's configuration of '{self.endpoint.model}' has no {METADATA_KEY} "
                f"parameter; add parameters {{ key: \"{METADATA_KEY}\" value {{ string_value: \"<the model's "
                "metadata JSON>\" }} to its config.pbtxt (python export/build_engine.py --target triton writes "
                "it), or pass metadata= the repository's metadata.json or the served .onnx")
        return ModelMetadata.from_json(text, origin)

    def _check_input(self, dims: List[int]) -> None:
        shape = list(self.prepare(np.zeros((8, 8, 3), np.uint8)).shape[1:])
        if len(shape) != len(dims) or any(d not in (-1, s) for d, s in zip(dims, shape)):
            raise UserError(f"{self.endpoint.url}: the served model takes {dims} per image, its metadata describes "
                            f"{shape} ({self.meta.inputs.layout}): the {METADATA_KEY} parameter belongs to another "
                            "model; regenerate the repository with python export/build_engine.py --target triton")

    # -- calls ----------------------------------------------------------------------------------------------

    def _error(self, exc: BaseException, attempts: int) -> ServingError:
        if is_retryable(exc, serving=True):
            error = ServingError(f"{self.endpoint.url}: no answer from the server at {self.endpoint.address} after "
                                 f"{attempts} attempt(s) ({_first_line(exc)}); check that it is running "
                                 f"(timeout {self.timeout:g} s, retries {self.retries})")
        else:
            error = ServingError(f"{self.endpoint.url}: the server refused the request ({_first_line(exc)})")
        error.__cause__ = exc
        return error

    def _retrying(self, call: Callable[[], Any], serving: bool = True) -> Any:
        attempt = 1
        while True:
            try:
                return call()
            except Exception as exc:
                if attempt > self.retries or not is_retryable(exc, serving):
                    raise self._error(exc, attempt) from exc
            attempt += 1
            time.sleep(self.retry_delay)

    def _send(self, batch: np.ndarray) -> np.ndarray:
        batch = np.ascontiguousarray(batch, dtype=np.float32)
        return pad_batch(batch, self.static_batch) if self.static_batch is not None else batch

    def infer(self, batch: np.ndarray) -> Dict[str, np.ndarray]:
        batch = self._send(batch)

        def call() -> Dict[str, np.ndarray]:
            client = self._thread_client()
            if client is not self._client:  # this thread's own client
                return client.infer(self.input_name, self.datatype, batch, self.output_names)
            with self._lock:
                return client.infer(self.input_name, self.datatype, batch, self.output_names)

        return self._retrying(call)

    @property
    def device(self) -> str:
        return f"server {self.endpoint.address}"

    @property
    def shares_cpu(self) -> bool:
        host = self.endpoint.address.rsplit(":", 1)[0]
        return host.startswith(_LOOPBACK)  # a server on this machine uses the cores pre-processing uses

    def requests(self, depth: int = 1) -> Requests:
        if self.endpoint.scheme == "grpc://":
            return GrpcRequests(self, depth)
        return HttpRequests(self, depth)

    def close(self) -> None:
        with self._lock:
            for client in self._clients:
                close_quietly(client)
            self._clients = []

    def _thread_client(self) -> "_Client":
        """The client for the calling thread (gRPC: the one client; HTTP: one per thread)."""
        if self.endpoint.scheme == "grpc://":
            return self._client
        client = getattr(self._local, "client", None)
        if client is None:
            client = self._local.client = _Client(self.endpoint, self.timeout)
            with self._lock:
                self._clients.append(client)
        return client


class GrpcRequests(Requests):
    """Requests in flight through gRPC's ``async_infer`` on a client of their own; a failed attempt is
    started again after ``retry_delay`` (on a timer thread) while retries are left."""

    def __init__(self, detector: KServeDetector, depth: int) -> None:
        super().__init__(detector, depth)
        self.kserve = detector
        self.client = _Client(detector.endpoint, detector.timeout)
        self._timers: List[threading.Timer] = []

    def _launch(self, seq: int, batch: np.ndarray) -> None:
        self._attempt(seq, self.kserve._send(batch), 1)

    def _attempt(self, seq: int, batch: np.ndarray, attempt: int) -> None:
        d = self.kserve

        def done(outputs: Optional[Dict[str, np.ndarray]], error: Optional[BaseException]) -> None:
            if error is None and outputs is not None:
                self._finish(seq, outputs)
            elif error is not None and attempt <= d.retries and is_retryable(error, serving=True):
                timer = threading.Timer(d.retry_delay, self._retry, (seq, batch, attempt + 1))
                timer.daemon = True
                self._timers.append(timer)
                timer.start()
            else:
                self._fail(seq, d._error(error or RuntimeError("no outputs"), attempt))

        self.client.infer_async(d.input_name, d.datatype, batch, d.output_names, done)

    def _retry(self, seq: int, batch: np.ndarray, attempt: int) -> None:
        try:
            self._attempt(seq, batch, attempt)
        except BaseException as exc:
            self._fail(seq, self.kserve._error(exc, attempt))

    def _shutdown(self) -> None:
        for timer in self._timers:
            timer.cancel()
        self.client.close()


class HttpRequests(ThreadRequests):
    """Requests in flight over HTTP: ``depth`` threads, each with a client (and connection) of its own."""

    def __init__(self, detector: KServeDetector, depth: int) -> None:
        super().__init__(detector, depth)
        self.kserve = detector
        self._local = threading.local()
        self._clients: List[_Client] = []
        self._clients_lock = threading.Lock()

    def _client(self) -> _Client:
        client = getattr(self._local, "client", None)
        if client is None:
            client = _Client(self.kserve.endpoint, self.kserve.timeout)
            self._local.client = client
            with self._clients_lock:
                self._clients.append(client)
        return client

    def _launch(self, seq: int, batch: np.ndarray) -> None:
        super()._launch(seq, self.kserve._send(batch))

    def _call(self, batch: np.ndarray) -> Mapping[str, np.ndarray]:
        d = self.kserve
        return d._retrying(lambda: self._client().infer(d.input_name, d.datatype, batch, d.output_names))

    def _shutdown(self) -> None:
        super()._shutdown()
        for client in self._clients:
            close_quietly(client)


def close_quietly(client: "_Client") -> None:
    """Close a client; one made on another thread (gevent's HTTP pool) may refuse, and is dropped instead."""
    try:
        client.close()
    except Exception:  # gevent: "Cannot switch to a different thread"; the sockets close when collected
        pass


def _metadata_file(path: Path) -> ModelMetadata:
    if not path.is_file():
        raise UserError(f"{path}: no such metadata file (pass the repository's metadata.json or the served .onnx)")
    if path.suffix.lower() == ".json":
        return ModelMetadata.from_json(path.read_text(encoding="utf-8"), str(path))
    if path.suffix.lower() == ".onnx":
        from runtimes.metadata_io import onnx_file_metadata

        return onnx_file_metadata(path)
    raise UserError(f"{path}: metadata= takes a metadata.json or an .onnx file")


RUNTIME = Runtime("kserve", SCHEMES, KServeDetector)
