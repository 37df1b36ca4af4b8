"""A model served over KServe v2 (Triton, ``apps/serve.py``, OpenVINO Model Server) as a :class:`Detector`:
the network runs on the server, pre- and post-processing here.

    load_detector("http://127.0.0.1:8000/ssdlite320_shapes")      # KServe v2 over HTTP/REST
    load_detector("grpc://127.0.0.1:8001/ssdlite320_shapes", timeout=5, retries=2)

The runtime's jobs, one module each: the URL (:mod:`runtimes.kserve_address`), the set-up that reads the
model's configuration and metadata (:mod:`runtimes.kserve_setup`), the configuration and the checks of every
answer against it (:mod:`runtimes.kserve_config`), the clients (:mod:`runtimes.kserve_http` over a bounded
connection, :mod:`runtimes.kserve_grpc`) lent by one pool (:mod:`runtimes.kserve_clients`), the retry
policy (:mod:`runtimes.kserve_retry`) and requests in flight (:mod:`runtimes.kserve_requests`).

A batch is up to the served model's ``max_batch_size`` images (a static-batch model: its batch, padded).
Options: ``timeout`` seconds for each attempt, the whole of it (connecting, sending, the answer's headers and
body); ``retries`` further attempts after no answer or a 5xx (see :mod:`runtimes.kserve_retry`);
``retry_delay`` seconds between attempts. An answer larger than the model's outputs can be is refused
unread, a malformed one is named; neither is retried.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Dict, List, Optional

import numpy as np

from runtimes.detector import Detector, batch_capacity, pad_batch
from runtimes.errors import UserError
from runtimes.kserve_address import SCHEMES, parse_url
from runtimes.kserve_clients import ClientPool
from runtimes.kserve_failures import ServingError
from runtimes.kserve_requests import kserve_requests
from runtimes.kserve_retry import RetryPolicy
from runtimes.kserve_setup import fetch_model_config, model_metadata
from runtimes.loader import Runtime
from runtimes.metadata import METADATA_KEY
from runtimes.requests import Requests

__all__ = ["KServeDetector", "ServingError", "RUNTIME"]

DEFAULT_TIMEOUT_S = 10.0
DEFAULT_RETRY_DELAY_S = 0.5


class KServeDetector(Detector):
    """A detector whose network runs on a KServe v2 server (see the module docstring).

    Args:
        url: ``http://HOST:PORT/NAME``, ``https://...`` or ``grpc://HOST:PORT/NAME``.
        timeout: seconds an attempt may take, connecting and the whole answer included (default 10).
        retries: further attempts after no answer or a 5xx (default 0).
        retry_delay: seconds between attempts (default 0.5).
        max_batch: images per request, up to the served ``max_batch_size`` (default: that).
        metadata: for servers without the metadata parameter: a ``metadata.json`` (written beside
            ``config.pbtxt``) or the ``.onnx`` served.
    """

    backend = "kserve"

    def __init__(self, url: str, *, timeout: float = DEFAULT_TIMEOUT_S, retries: int = 0,
                 retry_delay: float = DEFAULT_RETRY_DELAY_S, max_batch: Optional[int] = None,
                 metadata: "str | Path | None" = None, **thresholds: Any) -> None:
        if not (timeout > 0 and retries >= 0 and retry_delay >= 0):
            raise UserError(f"{url}: timeout must be > 0 s, retries and retry_delay >= 0")
        self.endpoint = parse_url(url)
        self.retry = RetryPolicy(self.endpoint, float(timeout), int(retries), float(retry_delay))
        self.clients = ClientPool(self.endpoint, float(timeout))
        try:
            self.model_config = fetch_model_config(self.clients, self.retry)
            super().__init__(model_metadata(self.endpoint, self.model_config, metadata), url, **thresholds)
            self._set_batch(max_batch)
            self.clients.limit_answers(self.model_config.answer_limit(self.static_batch or self.max_batch))
        except BaseException:
            self.clients.close()
            raise

    def _set_batch(self, max_batch: Optional[int]) -> None:
        """``max_batch`` and ``static_batch`` (None, or the batch every request is padded to)."""
        served, dims = self.model_config.max_batch_size, self.model_config.input.dims
        self.static_batch: Optional[int] = None
        if served > 0:
            if max_batch is not None and not 1 <= int(max_batch) <= served:
                raise UserError(f"{self.endpoint.url}: max_batch={max_batch}, the server takes 1 to {served} images "
                                "a request (its max_batch_size)")
            self.max_batch = int(max_batch) if max_batch is not None else served
        else:
            self.static_batch = dims[0] if dims and dims[0] > 0 else 1
            self.max_batch = batch_capacity(self.static_batch, max_batch, self.endpoint.url)
            dims = dims[1:]
        self._check_input(dims)

    def _check_input(self, dims: List[int]) -> None:
        shape = list(self.prepare(np.zeros((8, 8, 3), np.uint8)).shape[1:])
        if len(shape) != len(dims) or any(d not in (-1, s) for d, s in zip(dims, shape)):
            raise UserError(f"{self.endpoint.url}: the served model takes {dims} per image, its metadata describes "
                            f"{shape} ({self.meta.inputs.layout}): the {METADATA_KEY} parameter belongs to another "
                            "model; regenerate the repository with python export/build_engine.py --target triton")

    def network_batch(self, batch: np.ndarray) -> np.ndarray:
        """``batch`` as the server takes it: contiguous float32, padded to a static batch."""
        batch = np.ascontiguousarray(batch, dtype=np.float32)
        return pad_batch(batch, self.static_batch) if self.static_batch is not None else batch

    def infer(self, batch: np.ndarray) -> Dict[str, np.ndarray]:
        """Safe to call from several threads at once: each call takes a client of its own from the pool."""
        sent = self.network_batch(batch)

        def attempt() -> Dict[str, np.ndarray]:
            with self.clients.lent() as client:
                return client.infer(self.model_config, sent)

        return self.retry.run(attempt)

    @property
    def device(self) -> str:
        return f"server {self.endpoint.address}"

    @property
    def shares_cpu(self) -> bool:
        return self.endpoint.is_loopback  # a server on this machine uses the cores pre-processing uses

    def requests(self, depth: int = 1) -> Requests:
        return kserve_requests(self, depth)

    def close(self) -> None:
        self.clients.close()


RUNTIME = Runtime("kserve", SCHEMES, KServeDetector)
