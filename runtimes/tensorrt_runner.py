"""TensorRT through pycuda: page-locked host buffers, device buffers, CUDA streams, asynchronous copies.

The named-tensor API (``num_io_tensors``, ``set_input_shape``, ``set_tensor_address``, ``execute_async_v3``)
drives every supported version: 8.5 (JetPack 5) already has it, and its binding-index API is deprecated.
Buffers are sized from the engine's profile (``get_tensor_profile_shape(name, 0)``'s max, as NVIDIA's
``common_runtime.py`` does), so ``max_batch`` is the profile's maximum unless a smaller one is asked for.

The GPU's primary context is retained once for the process (:func:`runtimes.tensorrt_support.primary_context`)
and pushed around every use, on whichever thread: the detector may be created on one thread, used on
another (the camera app's inference thread) and closed on a third. Requests in flight
(:class:`TensorRTRequests`) each get an execution context, a CUDA stream and a buffer set of their own.
"""

from __future__ import annotations

import queue
import threading
from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Tuple

import numpy as np

from runtimes.detector import Detector, batch_capacity, pad_batch
from runtimes.errors import UserError
from runtimes.loader import Runtime
from runtimes.metadata import INPUT_NAME
from runtimes.requests import Requests
from runtimes.tensorrt_engine_file import check_compatible, read_engine
from runtimes.tensorrt_support import (
    GPUIdentity,
    free_pinned,
    import_cuda,
    init_plugins,
    primary_context,
    pushed,
    require_tensorrt,
    tensorrt_logger,
)


def _shape(dims: Any) -> Tuple[int, ...]:
    """A TensorRT ``Dims`` as a tuple (-1 for a dynamic axis)."""
    return tuple(int(dims[i]) for i in range(len(dims)))


@dataclass
class _Buffer:
    name: str
    shape: Tuple[int, ...]  # allocated shape (the profile's maximum), batch axis first
    host: np.ndarray  # page-locked
    device: Any  # pycuda DeviceAllocation


class _Slot:
    """One execution context with its own CUDA stream and input/output buffers: one network call in flight.
    Every method runs with the CUDA context current."""

    def __init__(self, engine: Any, cuda: Any, max_batch: int) -> None:
        self.cuda = cuda
        self.context = engine.create_execution_context()
        if self.context is None:
            raise UserError("TensorRT could not create an execution context (out of GPU memory?); close other "
                            "detectors or lower max_batch")
        self.stream = cuda.Stream()
        self.outputs: List[_Buffer] = []
        self.input: Optional[_Buffer] = None
        try:
            self._set_up(engine, max_batch)
        except BaseException:
            self.free()
            raise

    def _set_up(self, engine: Any, max_batch: int) -> None:
        import tensorrt as trt

        names = [engine.get_tensor_name(i) for i in range(engine.num_io_tensors)]
        inputs = [n for n in names if engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT]
        self.input = self._allocate(inputs[0], (max_batch,) + _shape(engine.get_tensor_shape(inputs[0]))[1:],
                                    trt.nptype(engine.get_tensor_dtype(inputs[0])))
        if not self.context.set_input_shape(self.input.name, self.input.shape):
            raise UserError(f"TensorRT refused input shape {self.input.shape} (see its log above)")
        self.batch = max_batch
        for name in names:
            if name not in inputs:  # output shapes resolved from the input shape just set
                self.outputs.append(self._allocate(name, _shape(self.context.get_tensor_shape(name)),
                                                   trt.nptype(engine.get_tensor_dtype(name))))

    def _allocate(self, name: str, shape: Tuple[int, ...], dtype: Any) -> _Buffer:
        if any(d < 0 for d in shape):
            raise UserError(f"tensor '{name}' has an unresolved dynamic shape {shape}; rebuild the engine from an "
                            "exported ONNX")
        host = self.cuda.pagelocked_empty(shape, dtype)
        buffer = _Buffer(name, shape, host, self.cuda.mem_alloc(max(host.nbytes, 1)))
        self.context.set_tensor_address(name, int(buffer.device))
        return buffer

    def enqueue(self, batch: np.ndarray) -> None:
        """Copy ``batch`` (B <= allocated) in and queue the network call and the output copies on the stream."""
        source = self.input
        assert source is not None
        count = batch.shape[0]
        np.copyto(source.host[:count], batch, casting="same_kind")
        if count != self.batch:  # partial batches: a dynamic batch axis takes the call's size
            if not self.context.set_input_shape(source.name, (count,) + source.shape[1:]):
                raise RuntimeError(f"TensorRT refused a batch of {count} (see its log above)")
            self.batch = count
        self.cuda.memcpy_htod_async(source.device, source.host[:count], self.stream)
        if not self.context.execute_async_v3(self.stream.handle):
            raise RuntimeError("TensorRT execution failed (see the TensorRT log above)")
        for buffer in self.outputs:
            self.cuda.memcpy_dtoh_async(buffer.host[:count], buffer.device, self.stream)

    def results(self, count: int) -> Dict[str, np.ndarray]:
        """The first ``count`` images' outputs, copied (the buffers serve the next call); after the stream
        finished."""
        return {b.name: b.host[:count].copy() for b in self.outputs}

    def free(self) -> None:
        for buffer in ([self.input] if self.input is not None else []) + self.outputs:
            buffer.device.free()
            free_pinned(buffer.host)
        self.input, self.outputs = None, []
        self.context = self.stream = None  # the execution context goes before the engine


class TensorRTDetector(Detector):
    """Runs a ``.engine`` built by ``export/build_engine.py --target tensorrt`` on a CUDA GPU.

    Args:
        path: the engine; its record ``PATH.json`` must sit beside it.
        device: CUDA device index (default 0).
        max_batch: images per :meth:`infer` call (default: the engine profile's maximum for a dynamic
            batch, else the static batch); within the profile's range.
    """

    backend = "tensorrt"

    def __init__(self, path: str, *, device: int = 0, max_batch: Optional[int] = None, **thresholds: Any) -> None:
        require_tensorrt()
        import tensorrt as trt

        cuda = import_cuda()
        plan, record = read_engine(path)
        gpu = GPUIdentity.of_device(cuda, device)
        check_compatible(record, trt.__version__, gpu, path)
        super().__init__(record.metadata, path, **thresholds)
        self.record, self.gpu, self._cuda = record, gpu, cuda
        self._context_owner = primary_context(cuda, device)
        self._slots: List[_Slot] = []
        self._requests: List["TensorRTRequests"] = []
        self._lock = threading.Lock()  # one synchronous call at a time on the shared slot
        with pushed(cuda, self._context_owner):
            try:
                init_plugins(trt)  # an engine holding EfficientNMS_TRT needs the registry filled
                self._runtime = trt.Runtime(tensorrt_logger(trt))
                engine = self._runtime.deserialize_cuda_engine(plan)
                if engine is None:
                    raise UserError(f"{path}: TensorRT could not deserialize the engine (see its log above); "
                                    f"rebuild it: {record.rebuild_command}")
                self._engine: Any = engine
                self._min_batch, self.max_batch = self._batch_range(max_batch)
                self._slots.append(_Slot(engine, cuda, self.max_batch))
            except BaseException:
                self._release()
                raise

    @property
    def device(self) -> str:
        return f"GPU {self.gpu.name}"

    def _batch_range(self, requested: Optional[int]) -> Tuple[int, int]:
        """(smallest, largest) batch one call may have: the profile's range for a dynamic batch axis."""
        import tensorrt as trt

        engine = self._engine
        names = [engine.get_tensor_name(i) for i in range(engine.num_io_tensors)]
        inputs = [n for n in names if engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT]
        if inputs != [INPUT_NAME]:
            raise UserError(f"{self.path}: expected one input named '{INPUT_NAME}', found {inputs}; rebuild it "
                            "from an exported ONNX")
        static = _shape(engine.get_tensor_shape(INPUT_NAME))[0]
        if static != -1:
            return static, batch_capacity(static, requested, self.path)
        low, opt, high = (_shape(s)[0] for s in engine.get_tensor_profile_shape(INPUT_NAME, 0))
        if requested is None:
            return low, high
        wanted = int(requested)
        if not low <= wanted <= high:
            new_low, new_high = min(low, wanted), max(high, wanted)
            raise UserError(f"{self.path}: max_batch={requested} is outside the engine's batch profile {low}..{high} "
                            f"(MIN,OPT,MAX {low},{opt},{high}); pass a max_batch in it, or rebuild with --batch "
                            f"{new_low},{min(max(opt, new_low), new_high)},{new_high}")
        return low, wanted

    # -- running --------------------------------------------------------------------------------------

    def _padded(self, batch: np.ndarray) -> np.ndarray:
        count = batch.shape[0]
        if not 1 <= count <= self.max_batch:
            raise UserError(f"batch of {count} images, but this engine takes 1 to {self.max_batch} per call "
                            f"(max_batch={self.max_batch})")
        return pad_batch(batch, self._min_batch)  # below the profile's minimum: padded, extra rows ignored

    def infer(self, batch: np.ndarray) -> Dict[str, np.ndarray]:
        """(B, 3, H, W) float32, B <= ``max_batch`` -> outputs by name, each (B, ...)."""
        count = batch.shape[0]
        padded = self._padded(batch)
        with self._lock, pushed(self._cuda, self._context_owner):
            if not self._slots:
                raise RuntimeError(f"{self.path}: the detector is closed")
            slot = self._slots[0]
            slot.enqueue(padded)
            slot.stream.synchronize()
            return slot.results(count)

    def requests(self, depth: int = 1) -> Requests:
        """``depth`` requests in flight, each with its own execution context, stream and buffers."""
        requests = TensorRTRequests(self, depth)
        self._requests.append(requests)
        return requests

    def _new_slot(self) -> _Slot:
        with pushed(self._cuda, self._context_owner):
            return _Slot(self._engine, self._cuda, self.max_batch)

    # -- teardown -------------------------------------------------------------------------------------

    def _release(self) -> None:
        """Free buffers, execution contexts, engine, runtime; with the CUDA context current."""
        for slot in self._slots:
            slot.free()
        self._slots = []
        # Execution contexts before the engine before the runtime: TensorRT's required destruction order.
        for name in ("_engine", "_runtime"):
            if hasattr(self, name):
                delattr(self, name)

    def close(self) -> None:
        """Release the GPU resources; from any thread, more than once."""
        for requests in list(getattr(self, "_requests", [])):
            requests.close()
        owner: Optional[Any] = getattr(self, "_context_owner", None)
        if owner is None:
            return
        with self._lock, pushed(self._cuda, owner):
            self._release()
        self._context_owner = None


class TensorRTRequests(Requests):
    """Up to ``depth`` network calls in flight, each on its own execution context, CUDA stream and buffer set.

    ``submit`` (the caller's thread) copies the prepared batch into a free slot's pinned buffer and queues the
    copies and the network call on that slot's stream; the slot's worker thread then waits for its stream
    (``synchronize`` blocks in the driver without holding the GIL) and post-processes, so results complete in
    any order and come out in submission order through the base class.
    """

    def __init__(self, detector: TensorRTDetector, depth: int) -> None:
        super().__init__(detector, depth)
        self.trt_detector = detector
        self._idle: "queue.Queue[_Slot]" = queue.Queue()
        self._workers: List[Tuple[threading.Thread, "queue.Queue[Optional[Tuple[int, int, _Slot]]]"]] = []
        self._slots: List[_Slot] = []  # slot i is waited for by worker i
        self._done = False
        try:
            for index in range(self.depth):
                slot = detector._new_slot()
                self._slots.append(slot)
                self._idle.put(slot)
                jobs: "queue.Queue[Optional[Tuple[int, int, _Slot]]]" = queue.Queue()
                worker = threading.Thread(target=self._work, args=(jobs,), daemon=True,
                                          name=f"tensorrt-request-{index}")
                worker.start()
                self._workers.append((worker, jobs))
        except BaseException:
            self._shutdown()
            raise

    def _launch(self, seq: int, batch: np.ndarray) -> None:
        detector = self.trt_detector
        count = batch.shape[0]
        padded = detector._padded(batch)
        slot = self._idle.get()  # one is free: the base class lets at most ``depth`` requests run
        try:
            with pushed(detector._cuda, detector._context_owner):
                slot.enqueue(padded)
        except BaseException:
            self._idle.put(slot)
            raise
        self._workers[self._slots.index(slot)][1].put((seq, count, slot))

    def _work(self, jobs: "queue.Queue[Optional[Tuple[int, int, _Slot]]]") -> None:
        detector = self.trt_detector
        while True:
            job = jobs.get()
            if job is None:
                return
            seq, count, slot = job
            try:
                with pushed(detector._cuda, detector._context_owner):
                    slot.stream.synchronize()
                    outputs = slot.results(count)
            except BaseException as exc:  # reaches the caller through results()/close()
                self._idle.put(slot)
                self._fail(seq, exc)
                continue
            self._idle.put(slot)
            self._finish(seq, outputs)

    def _shutdown(self) -> None:
        if self._done:
            return
        self._done = True
        for worker, jobs in self._workers:
            jobs.put(None)
            worker.join()
        detector = self.trt_detector
        if self._slots and detector._context_owner is not None:
            with pushed(detector._cuda, detector._context_owner):
                for slot in self._slots:
                    slot.free()
        self._slots = []
        if self in detector._requests:
            detector._requests.remove(self)


def _factory(location: str, **options: Any) -> TensorRTDetector:
    return TensorRTDetector(location, **options)


RUNTIME = Runtime("tensorrt", (".engine", ".plan"), _factory)
