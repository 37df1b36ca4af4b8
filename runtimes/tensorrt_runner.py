"""TensorRT through pycuda: page-locked host buffers, device buffers, one CUDA stream, asynchronous copies.

The detector owns the GPU's primary context and pushes it around every call, so it may be created on one
thread and used from another (the camera app's inference thread) without leaking a context; ``close``
frees the buffers and releases the context. Both TensorRT APIs are driven: binding indices with
``execute_async_v2`` on 8.x (JetPack 5) and named tensors with ``execute_async_v3`` on 10+ (JetPack 6).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Tuple

import numpy as np

from runtimes.detector import Detector
from runtimes.errors import UserError
from runtimes.metadata import INPUT_NAME
from runtimes.tensorrt_engine_file import check_compatible, read_engine
from runtimes.tensorrt_support import Capabilities, GPUIdentity, import_cuda, parse_version, require_tensorrt


def _shape(dims: Any) -> Tuple[int, ...]:
    """A TensorRT ``Dims`` as a tuple (-1 for a dynamic axis)."""
    return tuple(int(dims[i]) for i in range(len(dims)))


@dataclass
class _Buffer:
    name: str
    index: int  # binding index (8.x API); position among the I/O tensors otherwise
    is_input: bool
    shape: Tuple[int, ...]  # allocated shape, batch axis first
    host: np.ndarray  # page-locked
    device: Any  # pycuda DeviceAllocation


class TensorRTDetector(Detector):
    """Runs a ``.engine`` built by ``export/build_engine.py --target tensorrt`` on a CUDA GPU.

    Args:
        path: the engine; its record ``PATH.json`` must sit beside it.
        device: CUDA device index (default 0).
        max_batch: images per :meth:`infer` call the buffers are sized for (default 1; at most the engine
            profile's maximum).
    """

    backend = "tensorrt"

    def __init__(self, path: str, *, device: int = 0, max_batch: int = 1, **thresholds: Any) -> None:
        require_tensorrt()
        import tensorrt as trt

        cuda = import_cuda()
        plan, record = read_engine(path)
        gpu = GPUIdentity.of_device(cuda, device)
        check_compatible(record, trt.__version__, gpu, path)
        super().__init__(record.metadata, path, **thresholds)
        self.record, self.gpu, self._cuda = record, gpu, cuda
        self._api = Capabilities(parse_version(trt.__version__)).tensor_api
        self._context_owner = cuda.Device(device).retain_primary_context()
        self._context_owner.push()
        try:
            self._logger = trt.Logger(trt.Logger.WARNING)
            self._runtime = trt.Runtime(self._logger)
            engine = self._runtime.deserialize_cuda_engine(plan)
            if engine is None:
                raise UserError(f"{path}: TensorRT could not deserialize the engine (see its log above); "
                                f"rebuild it: {record.rebuild_command}")
            self._engine: trt.ICudaEngine = engine
            self._context: trt.IExecutionContext = engine.create_execution_context()
            self._stream = cuda.Stream()
            self._buffers = self._allocate(int(max_batch))
        except BaseException:
            self._release()
            raise
        finally:
            cuda.Context.pop()

    @property
    def device(self) -> str:
        return f"GPU {self.gpu.name}"

    # -- set-up ---------------------------------------------------------------------------------------

    def _io(self) -> List[Tuple[str, int, bool, Any, Tuple[int, ...]]]:
        """(name, index, is_input, numpy dtype, engine shape with -1 for dynamic axes) of every I/O tensor."""
        import tensorrt as trt

        engine = self._engine
        if self._api == "tensors":
            out: List[Tuple[str, int, bool, Any, Tuple[int, ...]]] = []
            for i in range(engine.num_io_tensors):
                name = engine.get_tensor_name(i)
                out.append((name, i, engine.get_tensor_mode(name) == trt.TensorIOMode.INPUT,
                            trt.nptype(engine.get_tensor_dtype(name)), _shape(engine.get_tensor_shape(name))))
            return out
        # TensorRT 8.x binding API: these methods are gone from TensorRT 10, so the 10.x stubs lack them.
        return [(engine.get_binding_name(i), i, engine.binding_is_input(i),  # type: ignore[attr-defined]  # 8.x API
                 trt.nptype(engine.get_binding_dtype(i)),  # type: ignore[attr-defined]  # 8.x API
                 _shape(engine.get_binding_shape(i)))  # type: ignore[attr-defined]  # 8.x API
                for i in range(engine.num_bindings)]  # type: ignore[attr-defined]  # 8.x API

    def _set_input_shape(self, buffer: _Buffer, shape: Tuple[int, ...]) -> None:
        if self._api == "tensors":
            self._context.set_input_shape(buffer.name, shape)
        else:
            self._context.set_binding_shape(buffer.index, shape)  # type: ignore[attr-defined]  # 8.x API

    def _output_shape(self, buffer: _Buffer) -> Tuple[int, ...]:
        if self._api == "tensors":
            return _shape(self._context.get_tensor_shape(buffer.name))
        return _shape(self._context.get_binding_shape(buffer.index))  # type: ignore[attr-defined]  # 8.x API

    def _allocate(self, max_batch: int) -> List[_Buffer]:
        io = self._io()
        inputs = [entry for entry in io if entry[2]]
        if len(inputs) != 1 or inputs[0][0] != INPUT_NAME:
            raise UserError(f"{self.path}: expected one input named '{INPUT_NAME}', found "
                            f"{[entry[0] for entry in inputs]}; rebuild it from an exported ONNX")
        input_shape = inputs[0][4]
        if input_shape[0] != -1 and max_batch != input_shape[0]:
            raise UserError(f"{self.path}: this engine has a static batch of {input_shape[0]}; rebuild with "
                            f"--batch 1,{max_batch},{max_batch} for batch {max_batch}")
        buffers: List[_Buffer] = []
        for name, index, is_input, dtype, shape in sorted(io, key=lambda entry: not entry[2]):
            if is_input:
                shape = (max_batch,) + tuple(shape[1:])
                buffer = _Buffer(name, index, True, shape, self._cuda.pagelocked_empty(shape, dtype),
                                 self._cuda.mem_alloc(int(np.prod(shape)) * np.dtype(dtype).itemsize))
                self._set_input_shape(buffer, shape)
            else:
                placeholder = _Buffer(name, index, False, (), np.empty(0, dtype), None)
                shape = self._output_shape(placeholder)  # resolved from the input shape just set
                buffer = _Buffer(name, index, False, shape, self._cuda.pagelocked_empty(shape, dtype),
                                 self._cuda.mem_alloc(int(np.prod(shape)) * np.dtype(dtype).itemsize))
            buffers.append(buffer)
            if self._api == "tensors":
                self._context.set_tensor_address(name, int(buffer.device))
        return buffers

    # -- running --------------------------------------------------------------------------------------

    def infer(self, batch: np.ndarray) -> Dict[str, np.ndarray]:
        """(B, 3, H, W) float32 -> outputs by name, each (B, ...); B at most ``max_batch``."""
        cuda = self._cuda
        source = self._buffers[0]
        count = batch.shape[0]
        if count > source.shape[0]:
            raise UserError(f"batch of {count} images, but the buffers hold {source.shape[0]}: "
                            f"pass max_batch={count} when loading the engine")
        self._context_owner.push()
        try:
            view = source.host[:count]
            np.copyto(view, batch, casting="same_kind")
            if count != source.shape[0]:
                self._set_input_shape(source, (count,) + source.shape[1:])
            cuda.memcpy_htod_async(source.device, source.host, self._stream)
            if self._api == "tensors":
                ok = self._context.execute_async_v3(self._stream.handle)
            else:
                bindings = [0] * len(self._buffers)
                for buffer in self._buffers:
                    bindings[buffer.index] = int(buffer.device)
                ok = self._context.execute_async_v2(  # type: ignore[attr-defined]  # 8.x API
                    bindings=bindings, stream_handle=self._stream.handle)
            for buffer in self._buffers[1:]:
                cuda.memcpy_dtoh_async(buffer.host, buffer.device, self._stream)
            self._stream.synchronize()
            if count != source.shape[0]:
                self._set_input_shape(source, source.shape)
        finally:
            cuda.Context.pop()
        if not ok:
            raise RuntimeError(f"{self.path}: TensorRT execution failed (see the TensorRT log above)")
        return {b.name: b.host[:count].copy() for b in self._buffers[1:]}

    # -- teardown -------------------------------------------------------------------------------------

    def _release(self) -> None:
        for buffer in getattr(self, "_buffers", []):
            if buffer.device is not None:
                buffer.device.free()
        self._buffers = []
        # Execution context before engine before runtime: TensorRT's required destruction order.
        for name in ("_context", "_engine", "_runtime", "_stream"):
            if hasattr(self, name):
                delattr(self, name)

    def close(self) -> None:
        owner: Optional[Any] = getattr(self, "_context_owner", None)
        if owner is None:
            return
        owner.push()
        try:
            self._release()
        finally:
            self._cuda.Context.pop()
            owner.detach()
            self._context_owner = None
