"""The one pool of KServe clients of a detector, HTTP and gRPC alike.

Neither client may be used by two threads at once (an HTTP connection carries one exchange at a time; a
tritonclient gRPC client is documented as not thread-safe), so a caller takes a client for the length of
a call and gives it back: ``with pool.lent() as client: client.infer(...)``. The pool makes clients as
calls overlap and keeps them for the next calls, so a detector called from several threads, and its
requests in flight, hold as many clients as calls have overlapped.

gRPC fixes the largest message it receives per channel: the pool starts with the limit of a configuration
answer and :meth:`ClientPool.limit_answers` sets the model's (new clients get it; idle ones are dropped).
"""

from __future__ import annotations

import threading
from contextlib import contextmanager
from typing import Iterator, List, Union

from runtimes.kserve_address import Endpoint
from runtimes.kserve_config import CONFIG_ANSWER_LIMIT
from runtimes.kserve_grpc import GrpcClient
from runtimes.kserve_http import HttpClient

Client = Union[HttpClient, GrpcClient]


class ClientPool:
    """Clients of ``endpoint``, each call at most ``timeout`` seconds (see the module docstring)."""

    def __init__(self, endpoint: Endpoint, timeout: float) -> None:
        self.endpoint, self.timeout = endpoint, timeout
        self.receive_limit = CONFIG_ANSWER_LIMIT
        self._idle: List[Client] = []
        self._lock = threading.Lock()
        self._closed = False

    def make(self) -> Client:
        if self.endpoint.scheme == "grpc://":
            return GrpcClient(self.endpoint, self.timeout, self.receive_limit)
        return HttpClient(self.endpoint, self.timeout)

    def take(self) -> Client:
        """A client for the caller alone, until :meth:`give_back`."""
        with self._lock:
            if self._closed:
                raise RuntimeError("the detector is closed")
            if self._idle:
                return self._idle.pop()
        return self.make()

    def give_back(self, client: Client) -> None:
        with self._lock:
            stale = isinstance(client, GrpcClient) and client.receive_limit != self.receive_limit
            keep = not self._closed and not stale
            if keep:
                self._idle.append(client)
        if not keep:
            client.close()

    @contextmanager
    def lent(self) -> Iterator[Client]:
        client = self.take()
        try:
            yield client
        finally:
            self.give_back(client)

    def limit_answers(self, receive_limit: int) -> None:
        """Clients made from now on refuse gRPC answers larger than ``receive_limit`` bytes."""
        with self._lock:
            self.receive_limit = receive_limit
            stale, self._idle = self._idle, []
        for client in stale:
            client.close()

    def close(self) -> None:
        """Close the idle clients; those lent out are closed when given back."""
        with self._lock:
            self._closed = True
            idle, self._idle = self._idle, []
        for client in idle:
            client.close()
