"""Requests in flight on a KServe detector.

gRPC: ``async_infer`` on one client taken from the detector's pool for these requests; a failed attempt
is started again after the retry policy's delay (on a timer thread) while it allows. HTTP: ``depth``
threads calling the detector (tritonclient's HTTP ``async_infer`` ran on gevent, whose requests advance only
while the submitting thread waits in gevent, so they would not overlap our pre-processing; the detector's
pool gives each overlapping call a connection of its own).
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Dict, List, Optional

import numpy as np

from runtimes.kserve_grpc import GrpcClient
from runtimes.requests import Requests, ThreadRequests

if TYPE_CHECKING:
    from runtimes.kserve_runner import KServeDetector


def kserve_requests(detector: "KServeDetector", depth: int) -> Requests:
    if detector.endpoint.scheme == "grpc://":
        return GrpcRequests(detector, depth)
    return ThreadRequests(detector, depth)


class GrpcRequests(Requests):
    """Up to ``depth`` requests in flight through gRPC's ``async_infer`` (see the module docstring)."""

    def __init__(self, detector: "KServeDetector", depth: int) -> None:
        super().__init__(detector, depth)
        self.kserve = detector
        client = detector.clients.take()
        assert isinstance(client, GrpcClient)  # the pool of a grpc:// detector
        self.client = client
        self._timers: List[threading.Timer] = []

    def _launch(self, seq: int, batch: np.ndarray) -> None:
        self._attempt(seq, self.kserve.network_batch(batch), 1)

    def _attempt(self, seq: int, batch: np.ndarray, attempt: int) -> None:
        policy = self.kserve.retry

        def done(outputs: Optional[Dict[str, np.ndarray]], failure: Optional[BaseException]) -> None:
            if failure is None and outputs is not None:
                self._finish(seq, outputs)
            elif failure is not None and attempt <= policy.retries and policy.retryable(failure):
                timer = threading.Timer(policy.delay, self._attempt, (seq, batch, attempt + 1))
                timer.daemon = True
                self._timers.append(timer)
                timer.start()
            else:
                self._fail(seq, policy.final(failure or RuntimeError("gRPC gave neither outputs nor an error"),
                                             attempt))

        self.client.infer_async(self.kserve.model_config, batch, done)

    def _shutdown(self) -> None:
        for timer in self._timers:
            timer.cancel()
        self.kserve.clients.give_back(self.client)
