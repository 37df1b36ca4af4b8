"""What can go wrong in one exchange with a KServe server, one type each, so that the retry policy
(runtimes/kserve_retry.py) decides on the type and never on an error's wording.

* :class:`ConnectionFailure`: no complete answer (refused, reset, closed early, past the deadline); worth
  another attempt.
* :class:`ServerStatus`: the server answered with an error status (HTTP 4xx/5xx, a gRPC status); 5xx is
  the server's own trouble (retried), the rest is the server refusing the request (not retried).
* :class:`MalformedAnswer` and :class:`AnswerTooLarge`: the server answered, with something that is not a
  KServe v2 answer or is larger than the model's outputs can be; asking again gets the same, so these are
  final, and already the one line the user sees.
"""

from __future__ import annotations

from runtimes.errors import UserError


def one_line(text: object, limit: int = 200) -> str:
    """``text`` (a server's words: any length, any characters) fit for a one-line message."""
    words = " ".join(str(text).split())
    return (words if len(words) <= limit else words[:limit] + "...") or "no message"


class ServingError(UserError):
    """A request to the server failed (after the retries it was allowed)."""


class ConnectionFailure(Exception):
    """No complete answer: the connection failed, closed early, or the deadline passed."""


class ServerStatus(Exception):
    """An error status: ``status`` as the server put it ("503", "NOT_FOUND"), ``text`` its message."""

    def __init__(self, status: str, text: str, server_fault: bool) -> None:
        self.status, self.text, self.server_fault = one_line(status, 40), one_line(text), server_fault
        super().__init__(f"{'HTTP ' if status.isdigit() else ''}{self.status}: {self.text}")


class MalformedAnswer(ServingError):
    """The answer is not what the KServe v2 protocol says (``what``: "inference response", "model
    configuration", ...)."""

    def __init__(self, url: str, what: str, problem: str) -> None:
        super().__init__(f"{url}: the server's answer is not a KServe v2 {what}: {one_line(problem, 300)}; check "
                         "that the URL "
                         "names a KServe v2 server (Triton, OpenVINO Model Server, apps/serve.py) and its model")


class AnswerTooLarge(ServingError):
    """The answer is larger than the model's outputs (or a configuration) can be."""

    def __init__(self, url: str, size: str, limit: int, what: str) -> None:
        super().__init__(f"{url}: the server's answer is larger than {what} can be ({one_line(size)}, at most {limit} "
                         "bytes expected); refused unread: check that the URL names the model the server runs")
