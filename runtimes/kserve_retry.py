"""When a KServe request is tried again, and the one error it ends in.

Retried (up to ``retries`` more attempts, ``delay`` seconds apart): no complete answer (the connection
failed, closed early, or the deadline passed) and a 5xx status (the server's own trouble); once the model
has answered (``serving``), also the model being unknown or not ready, which is a server restarting or
reloading it (a wrong name is caught when the detector is made). Not retried: the server refusing the
request (any other status) and answers that are malformed or too large, which another attempt would only
repeat. A request thus fails after at most about ``(retries + 1) * timeout + retries * delay`` seconds.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Callable, TypeVar

from runtimes.kserve_address import Endpoint
from runtimes.kserve_failures import ConnectionFailure, ServerStatus, ServingError

T = TypeVar("T")
_MODEL_AWAY = ("unknown model", "no available versions", "is not ready")


@dataclass(frozen=True)
class RetryPolicy:
    """How often a request to ``endpoint`` is tried (see the module docstring); ``timeout`` is each attempt's."""

    endpoint: Endpoint
    timeout: float
    retries: int
    delay: float

    def retryable(self, failure: BaseException, serving: bool = True) -> bool:
        if isinstance(failure, ConnectionFailure):
            return True
        if isinstance(failure, ServerStatus):
            away = serving and any(words in failure.text.lower() for words in _MODEL_AWAY)
            return failure.server_fault or away
        return False

    def run(self, attempt: Callable[[], T], serving: bool = True) -> T:
        """``attempt()``'s result, trying again while the policy allows; else the :class:`ServingError` of
        the last failure (:meth:`final`)."""
        tried = 1
        while True:
            try:
                return attempt()
            except (ConnectionFailure, ServerStatus) as failure:
                if tried > self.retries or not self.retryable(failure, serving):
                    raise self.final(failure, tried) from failure
            tried += 1
            time.sleep(self.delay)

    def final(self, failure: BaseException, attempts: int) -> BaseException:
        """The one error a request ends in after ``attempts`` attempts ending in ``failure``."""
        where = f"{self.endpoint.url}: "
        if isinstance(failure, ServingError) or not isinstance(failure, (ConnectionFailure, ServerStatus)):
            return failure  # already the one line (malformed, too large), or a bug that keeps its traceback
        if isinstance(failure, ServerStatus) and not self.retryable(failure):
            return ServingError(f"{where}the server refused the request ({failure})")
        what = "no answer from the server" if isinstance(failure, ConnectionFailure) else "the server failed"
        return ServingError(f"{where}{what} at {self.endpoint.address} after {attempts} attempt(s) ({failure}); "
                            f"check that it is running (timeout {self.timeout:g} s, retries {self.retries})")
