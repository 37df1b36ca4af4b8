"""Requests in flight: frames go in, detections come out in submission order, while the network works.

One interface for every runtime (``Detector.requests(depth)``); each runtime supplies how a request runs:

* :class:`SyncRequests`: the network call runs inside ``submit`` (the fallback; depth is 1);
* :class:`ThreadRequests`: a pool of ``depth`` threads, for runtimes whose sessions take concurrent calls
  (ONNX Runtime);
* OpenVINO's ``AsyncInferQueue`` and TensorRT's execution contexts live in their runners' files.

A request is one batch of up to ``detector.max_batch`` frames. ``submit`` prepares it on the caller's thread,
so preparing the next batch overlaps the running ones; post-processing runs where the request finishes.
"""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Dict, Iterator, List, Mapping, Optional, Sequence, Tuple

import numpy as np

from runtimes.detections import Detections

if TYPE_CHECKING:
    from runtimes.detector import Detector


@dataclass
class RequestResult:
    """One finished request: the caller's ``tag``, one :class:`Detections` per frame submitted, and the
    seconds each stage took (``preprocess`` on the caller's thread, ``inference`` from launch to outputs,
    ``postprocess``)."""

    tag: Any
    detections: List[Detections]
    timings: Dict[str, float] = field(default_factory=dict)


@dataclass
class _Pending:
    tag: Any
    sizes: List[Tuple[int, int]]
    preprocess_s: float
    launched: float
    result: Optional[RequestResult] = None
    error: Optional[BaseException] = None


class Requests:
    """Up to ``depth`` requests in flight on ``detector``.

    ``submit(frames, tag)`` blocks while ``depth`` requests are busy; ``results()`` yields the finished ones
    in submission order (``wait=True``: every request submitted so far); ``close()`` waits for all and
    returns what was not yet taken. An exception raised inside a request is raised by ``results()`` or
    ``close()`` at that request's place, after the results before it.

    Subclasses implement :meth:`_launch` and report through :meth:`_finish` or :meth:`_fail`.
    """

    def __init__(self, detector: "Detector", depth: int) -> None:
        if int(depth) < 1:
            raise ValueError(f"requests in flight must be at least 1, got {depth}")
        self.detector = detector
        self.depth = int(depth)
        self._free = threading.Semaphore(self.depth)
        self._cond = threading.Condition()
        self._pending: Dict[int, _Pending] = {}
        self._submitted = 0
        self._next_out = 0
        self._closed = False
        self.on_settled: Callable[[], None] = lambda: None  # called (on any thread) when a request finishes

    # -- the caller's side ----------------------------------------------------------------------------

    def submit(self, frames: Sequence[np.ndarray], tag: Any = None) -> None:
        """Start one request on up to ``detector.max_batch`` (H, W, 3) uint8 BGR frames."""
        if self._closed:
            raise RuntimeError("these requests are closed")
        if not 1 <= len(frames) <= self.detector.max_batch:
            raise ValueError(f"a request takes 1 to {self.detector.max_batch} frames (the model's batch), "
                             f"got {len(frames)}")
        started = time.perf_counter()
        batch, sizes = self.detector.prepare_batch(frames)
        prepared = time.perf_counter()
        self._free.acquire()
        with self._cond:
            seq = self._submitted
            self._submitted += 1
            self._pending[seq] = _Pending(tag, sizes, prepared - started, time.perf_counter())
        try:
            self._launch(seq, batch)
        except BaseException as exc:  # the request could not start: it fails in its place
            self._fail(seq, exc)

    def results(self, wait: bool = False) -> Iterator[RequestResult]:
        """Finished results in submission order; with ``wait``, until every request submitted is done."""
        while True:
            with self._cond:
                if wait:
                    while self._next_out < self._submitted and self._head_unfinished():
                        self._cond.wait()
                if self._next_out >= self._submitted or self._head_unfinished():
                    return
                pending = self._pending.pop(self._next_out)
                self._next_out += 1
            if pending.error is not None:
                raise pending.error
            assert pending.result is not None
            yield pending.result

    def close(self) -> List[RequestResult]:
        """Wait for every submitted request; the results not yet taken, in order."""
        try:
            return list(self.results(wait=True))
        finally:
            self._closed = True
            self._shutdown()

    def __enter__(self) -> "Requests":
        return self

    def __exit__(self, *exc: object) -> None:
        if exc[0] is None:
            self.close()
        else:
            self._closed = True
            self._shutdown()

    @property
    def in_flight(self) -> int:
        """Requests submitted and not yet taken by ``results()``."""
        with self._cond:
            return self._submitted - self._next_out

    @property
    def has_result(self) -> bool:
        """Whether ``results()`` would yield (or raise) something now."""
        with self._cond:
            return self._next_out < self._submitted and not self._head_unfinished()

    # -- the runtime's side ---------------------------------------------------------------------------

    def _launch(self, seq: int, batch: np.ndarray) -> None:
        """Start inference of ``batch`` (the prepared network input, batch axis first); when it is done,
        from any thread, call ``self._finish(seq, outputs)`` or ``self._fail(seq, exc)``."""
        raise NotImplementedError

    def _shutdown(self) -> None:
        """Release what the runtime holds for these requests (after every request has finished)."""

    def _finish(self, seq: int, outputs: Mapping[str, np.ndarray]) -> None:
        """Post-process a finished request's outputs (here, on the finishing thread) and hand them on."""
        inferred = time.perf_counter()
        with self._cond:
            pending = self._pending[seq]
        try:
            detections = self.detector.postprocessor.batch(outputs, pending.sizes)
        except BaseException as exc:
            self._fail(seq, exc)
            return
        timings = {"preprocess": pending.preprocess_s, "inference": inferred - pending.launched,
                   "postprocess": time.perf_counter() - inferred}
        self._settle(seq, RequestResult(pending.tag, detections, timings), None)

    def _fail(self, seq: int, error: BaseException) -> None:
        self._settle(seq, None, error)

    def _settle(self, seq: int, result: Optional[RequestResult], error: Optional[BaseException]) -> None:
        with self._cond:
            pending = self._pending[seq]
            if pending.result is not None or pending.error is not None:
                return  # settled already (a runtime reported twice)
            pending.result, pending.error = result, error
            self._cond.notify_all()
        self._free.release()
        self.on_settled()

    def _head_unfinished(self) -> bool:
        head = self._pending.get(self._next_out)
        return head is not None and head.result is None and head.error is None


class SyncRequests(Requests):
    """The network call runs inside ``submit``: no overlap, the same interface (depth 1)."""

    def __init__(self, detector: "Detector", depth: int = 1) -> None:
        super().__init__(detector, 1)

    def _launch(self, seq: int, batch: np.ndarray) -> None:
        self._finish(seq, self.detector.infer(batch))


class ThreadRequests(Requests):
    """``depth`` worker threads calling ``detector.infer`` concurrently: for runtimes whose sessions accept
    calls from several threads at once (ONNX Runtime's ``InferenceSession.run`` does)."""

    def __init__(self, detector: "Detector", depth: int) -> None:
        super().__init__(detector, depth)
        self._pool = ThreadPoolExecutor(max_workers=self.depth, thread_name_prefix=f"{detector.backend}-request")

    def _launch(self, seq: int, batch: np.ndarray) -> None:
        self._pool.submit(self._run, seq, batch)

    def _run(self, seq: int, batch: np.ndarray) -> None:
        try:
            outputs = self._call(batch)
        except BaseException as exc:
            self._fail(seq, exc)
            return
        self._finish(seq, outputs)

    def _call(self, batch: np.ndarray) -> Mapping[str, np.ndarray]:
        """The network call a worker thread makes (a subclass may give each thread a client of its own)."""
        return self.detector.infer(batch)

    def _shutdown(self) -> None:
        self._pool.shutdown(wait=True)
