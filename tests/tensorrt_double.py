"""TEST DOUBLE, NOT TENSORRT: stand-ins for the ``tensorrt`` and ``pycuda.driver`` modules.

They record what the toolkit asks for and behave, where NVIDIA documents the behaviour, the way TensorRT and
pycuda do, so that the offline tests catch what a Jetson would. They prove nothing about TensorRT itself:
that is tests/gpu/ on a device. Each modelled behaviour and its source:

* Plugin registry [P]: one per process (``getPluginRegistry()``, NvInferRuntime.h); only
  ``trt.init_libnvinfer_plugins(logger, "")`` fills it with NVIDIA's plugins (EfficientNMS_TRT). Parsing an ONNX
  node of a plugin op or deserialising a plan that holds one fails without it. The ONNX parser of 8.x
  registered the plugins itself; from 10.0 it does not (issue #20), hence NVIDIA's samples
  (samples/python/efficientdet/build_engine.py and infer.py) and Polygraphy (backend/trt/loader.py,
  NetworkFromOnnxBytes and EngineFromBytes) call it before parsing and before deserialising. Each
  :func:`fake_tensorrt` is a fresh process as far as the registry goes.
* Calibrator callbacks [C]: python/src/infer/pyInt8.cpp wraps get_batch_size, get_batch,
  read_calibration_cache and write_calibration_cache in ``try { ... } catch (std::exception const& e)``,
  prints ``[ERROR] Exception caught in get_batch(): ...`` and returns -1 / false / nullptr: an exception
  (pybind11 turns a Python one, KeyboardInterrupt included, into ``error_already_set``) in get_batch reads
  as "no more data", in read_calibration_cache as "no cache"; write_calibration_cache's is dropped.
* Calibration shape [S]: for an explicit-batch network the batch comes from the network, not from
  ``get_batch_size`` (IInt8Calibrator::getBatchSize, NvInfer.h 10.3: "Deprecated in TensorRT 10.0. Implicit
  batch support is removed"; NVIDIA/TensorRT#2978: the value returned changes nothing): TensorRT reads
  volume(network input) bytes, or volume(calibration profile's OPT) for a dynamic input
  (IBuilderConfig::setCalibrationProfile: "MIN and MAX values will be overwritten by kOPT"; without one, the
  first optimization profile), from each pointer ``get_batch`` returns. Reading past an allocation is an
  illegal memory access: the build fails.
* Profiles [O]: a dynamic input needs a profile; a profile's dimensions must equal the network's static ones
  (IOptimizationProfile docs; the efficientdet sample adds a profile only when ``input.shape[0] == -1``).
  At run time ``set_input_shape`` outside profile 0 fails; ``get_tensor_profile_shape(name, 0)`` gives
  (min, opt, max), a static input's shape thrice (the default profile), as ``common_runtime.py``'s
  ``allocate_buffers`` reads it.
* DLA [D]: "DLA does not support dynamic dimensions, so the profile's min, max, and opt values must be equal"
  (TensorRT docs, DLA Supported Layers and Restrictions, General Restrictions): such a build fails.
* Timing cache [T]: IBuilderConfig::setTimingCache "returns true if set successfully, false otherwise"; "a
  failure will be reported if the CUDA device property in the provided cache is different" (NvInfer.h 10.3);
  ``get_timing_cache`` returns None when no cache is set (python/docstrings/infer/pyCoreDoc.h).
* One logger [L]: "TensorRT maintains only a single logger pointer at any given time, so the existing value
  ... will be used instead" (TensorRT's warning, NVIDIA/TensorRT#1475): a second Logger handed to a Builder
  or Runtime while another is in use is logged and counted.
* API per version [A]: 8.5's bindings (python/src/infer/pyCore.cpp, release/8.5) keep the binding-index
  methods behind ``utils::deprecateMember`` (a DeprecationWarning) beside the named-tensor API
  (num_io_tensors, get_tensor_name/mode/dtype/shape, get_tensor_profile_shape, set_input_shape,
  set_tensor_address, execute_async_v3); 10.x has only the named API. 11 (NvInfer.h, main): no
  EXPLICIT_BATCH, ``STRONGLY_TYPED`` = 0 "deprecated ... ignored" (using it warns), no FP16/INT8 builder
  flags and no calibrators.
* CUDA contexts [X] (inducer/pycuda src/cpp/cuda.hpp): ``Context.pop`` pops pycuda's and the driver's
  stack; ``detach`` of a current primary context releases it (cuDevicePrimaryCtxRelease) and pops only
  pycuda's stack, not the driver's; ``detach`` of a non-current context pushes it first on the creating
  thread, and on any other thread silently does nothing; freeing memory activates the owning context
  (``scoped_context_activation``), which fails for a dead context or from another thread when it is not
  current; memory or streams alive when their context dies are leaked. TensorRT's enqueue fails without a
  current context.

The "network" an engine of this double runs is a tiny numpy function of each image (see :func:`_network`),
so batch rows, partial batches and results in flight can be told apart.
"""

from __future__ import annotations

import json
import sys
import threading
import types
import warnings
import weakref
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np

PLAN_MAGIC = b"FAKE-PLAN\n"
TIMING_MAGIC = b"FAKE-TIMING "
KNOWN_PLUGINS = ("EfficientNMS_TRT",)
GPU_NAME, GPU_CC = "Fake GPU", (8, 7)


class _Enum:
    def __init__(self, **values: int) -> None:
        for name, value in values.items():
            setattr(self, name, _Value(name, value))


class _Value(int):
    def __new__(cls, name: str, value: int) -> "_Value":
        obj = super().__new__(cls, value)
        obj.label = name
        return obj


class _DeprecatedEnum(_Enum):
    """An enum whose listed members warn when used ([A]: TRT_DEPRECATED_ENUM)."""

    def __init__(self, deprecated: Sequence[str], **values: int) -> None:
        super().__init__(**values)
        object.__setattr__(self, "_deprecated", tuple(deprecated))

    def __getattribute__(self, name: str) -> Any:
        if not name.startswith("_") and name in object.__getattribute__(self, "_deprecated"):
            warnings.warn(f"{name} is deprecated and ignored", DeprecationWarning, stacklevel=2)
        return object.__getattribute__(self, name)


# -- pycuda ---------------------------------------------------------------------------------------------

class IllegalAccess(Exception):
    pass


class FakeGPU:
    """Device memory, contexts and live objects shared by the two fake modules of one test ("process")."""

    def __init__(self) -> None:
        self.memory: Dict[int, bytearray] = {}
        self.next_address = 1 << 20
        self.retained = 0  # cuDevicePrimaryCtxRetain minus Release
        self.leaked: List[str] = []
        self.local = threading.local()
        self.copies: List[float] = []  # host-to-device copies, as checksums

    # per-thread stacks
    def driver_stack(self) -> List[Any]:
        if not hasattr(self.local, "driver"):
            self.local.driver, self.local.pycuda = [], []
        return self.local.driver

    def pycuda_stack(self) -> List[Any]:
        self.driver_stack()
        return self.local.pycuda

    def alive(self) -> bool:
        return self.retained > 0

    def alloc(self, size: int) -> int:
        if not self.driver_stack():
            raise _LogicError("cuMemAlloc failed: invalid device context")
        address = self.next_address
        self.next_address += max(int(size), 1) + 4096
        self.memory[address] = bytearray(int(size))
        return address

    def write(self, address: int, data: bytes) -> None:
        self._span(address, len(data))[:] = data

    def read(self, address: int, size: int) -> bytes:
        return bytes(self._span(address, size))

    def _span(self, address: int, size: int) -> memoryview:
        for start, block in self.memory.items():
            if start <= address < start + len(block):
                if address - start + size > len(block):
                    raise IllegalAccess(f"an illegal memory access was encountered ({size} bytes at offset "
                                        f"{address - start} of a {len(block)}-byte allocation)")
                return memoryview(block)[address - start:address - start + size]
        raise IllegalAccess(f"an illegal memory access was encountered (address {address:#x})")


class _LogicError(Exception):
    """pycuda._driver.LogicError."""


def fake_cuda() -> types.ModuleType:
    """A ``pycuda.driver`` with one GPU; ``cuda.gpu`` is its :class:`FakeGPU`."""
    cuda = types.ModuleType("pycuda.driver")
    gpu = FakeGPU()
    cuda.gpu = gpu
    cuda.copies = gpu.copies
    cuda.LogicError = _LogicError

    class PrimaryContext:
        def __init__(self) -> None:
            self.thread = threading.get_ident()
            self.valid = True

        def push(self) -> None:
            gpu.driver_stack().append(self)
            gpu.pycuda_stack().append(self)

        def detach(self) -> None:  # [X] pycuda context::detach with primary_context::detach_internal
            if not self.valid:
                raise _LogicError("cannot detach from invalid context")
            stack = gpu.pycuda_stack()
            if stack and stack[-1] is self:
                gpu.retained -= 1
                stack.pop()  # pycuda's stack only: the driver keeps the context current
            elif self.thread == threading.get_ident():
                gpu.driver_stack().append(self)
                gpu.retained -= 1
            self.valid = False

    class Context:
        @staticmethod
        def pop() -> None:
            stack = gpu.pycuda_stack()
            if not stack:
                raise _LogicError("context::pop: cannot pop non-current context")
            stack.pop()
            driver = gpu.driver_stack()
            if driver:
                driver.pop()

        @staticmethod
        def get_current() -> Any:
            stack = gpu.pycuda_stack()
            return stack[-1] if stack else None

    class Device:
        @staticmethod
        def count() -> int:
            return 1

        def __init__(self, index: int) -> None:
            self.index = index

        def name(self) -> str:
            return GPU_NAME

        def compute_capability(self) -> tuple:
            return GPU_CC

        def retain_primary_context(self) -> PrimaryContext:
            gpu.retained += 1
            return PrimaryContext()

    def activate(owner: Any, what: str) -> bool:
        """[X] scoped_context_activation for freeing ``what``: False (leaked) when it cannot be done."""
        current = gpu.pycuda_stack()
        if not gpu.alive():
            gpu.leaked.append(f"{what}: its context is gone")
            return False
        if not current and owner != threading.get_ident():
            raise _LogicError(f"{what}: cannot activate out-of-thread context")
        return True

    class Allocation(int):
        def __new__(cls, size: int) -> "Allocation":
            obj = super().__new__(cls, gpu.alloc(size))
            obj.thread = threading.get_ident()
            obj.freed = False
            return obj

        def free(self) -> None:
            if not self.freed and activate(self.thread, "device memory"):
                gpu.memory.pop(int(self), None)
            self.freed = True

        def __del__(self) -> None:
            if not self.freed and not gpu.alive():
                gpu.leaked.append("device memory: its context is gone")

    class Stream:
        def __init__(self) -> None:
            if not gpu.driver_stack():
                raise _LogicError("cuStreamCreate failed: invalid device context")
            self.handle = gpu.next_address
            gpu.next_address += 16
            thread = threading.get_ident()
            weakref.finalize(self, lambda: gpu.alive() or gpu.leaked.append(f"stream of thread {thread}"))

        def synchronize(self) -> None:
            pass

    class HostAllocation(np.ndarray):
        """The buffer under a page-locked array (pycuda: the array's base has ``free()``)."""

        def free(self) -> None:
            self.freed = True

    def pagelocked_empty(shape: Any, dtype: Any) -> np.ndarray:
        if not gpu.driver_stack():
            raise _LogicError("cuMemHostAlloc failed: invalid device context")
        dtype = np.dtype(dtype)
        owner = HostAllocation((int(np.prod(shape)) * dtype.itemsize,), np.uint8)  # owns its memory
        weakref.finalize(owner, lambda: gpu.alive() or gpu.leaked.append("page-locked host memory"))
        return np.ndarray(shape, dtype, buffer=owner)  # base: the allocation, as pycuda's

    def htod(dst: Any, src: np.ndarray, stream: Any = None) -> None:
        data = np.ascontiguousarray(src)
        gpu.write(int(dst), data.tobytes())
        gpu.copies.append(float(data.astype(np.float64).sum()))

    def dtoh(dst: np.ndarray, src: Any, stream: Any = None) -> None:
        dst.reshape(-1).view(np.uint8)[:] = np.frombuffer(gpu.read(int(src), dst.nbytes), np.uint8)

    cuda.init = lambda: None
    cuda.Device, cuda.Context, cuda.Stream = Device, Context, Stream
    cuda.mem_alloc = Allocation
    cuda.pagelocked_empty = pagelocked_empty
    cuda.memcpy_htod_async, cuda.memcpy_htod = htod, htod
    cuda.memcpy_dtoh_async, cuda.memcpy_dtoh = dtoh, dtoh
    cuda.driver_current = lambda: (gpu.driver_stack() or [None])[-1]  # cuCtxGetCurrent
    return cuda


# -- ONNX, as TensorRT's parser sees it -----------------------------------------------------------------

_NP = {1: "float32", 10: "float16", 6: "int32", 7: "int32", 9: "bool"}  # TensorRT has no int64 I/O (cast)


def _read_onnx(data: bytes) -> Dict[str, Any]:
    import onnx

    model = onnx.load_model_from_string(data)
    graph = model.graph
    initializers = {i.name for i in graph.initializer}

    def tensor(value: Any) -> Dict[str, Any]:
        dims = [d.dim_value if d.HasField("dim_value") else -1 for d in value.type.tensor_type.shape.dim]
        return {"name": value.name, "shape": dims, "dtype": _NP.get(value.type.tensor_type.elem_type, "float32")}

    return {"inputs": [tensor(v) for v in graph.input if v.name not in initializers],
            "outputs": [tensor(v) for v in graph.output],
            "ops": sorted({n.op_type for n in graph.node})}


def _network(images: np.ndarray, outputs: List[Dict[str, Any]], num_classes: int) -> Dict[str, np.ndarray]:
    """The double's "network": per image, a 4 x 4 grid of cells; each cell's mean input picks its class and
    score, so every image has its own detections. For "boxes"/"scores" (decoded SSD outputs: normalised
    xyxy, probabilities) these are real detections; other outputs get a deterministic function of the
    image's mean."""
    batch = images.shape[0]
    grid = 4
    h, w = images.shape[2] // grid, images.shape[3] // grid
    cells = images[:, :, :h * grid, :w * grid].reshape(batch, -1, grid, h, grid, w).mean(axis=(1, 3, 5))
    cells = cells.reshape(batch, grid * grid).astype(np.float64)
    result: Dict[str, np.ndarray] = {}
    for spec in outputs:
        shape = [batch] + list(spec["shape"][1:])
        dtype = np.dtype(spec["dtype"])
        if spec["name"] == "boxes":
            ys, xs = np.divmod(np.arange(grid * grid), grid)
            corners = np.stack([xs, ys, xs + 1, ys + 1], axis=1).astype(np.float32) / grid
            boxes = np.zeros(shape, np.float32)
            boxes[:, :grid * grid] = corners[None] + np.float32(0.02) * np.array([1, 1, -1, -1], np.float32)
            result["boxes"] = boxes
        elif spec["name"] == "scores":
            scores = np.zeros(shape, np.float32)
            classes = shape[2]
            scores[..., 0] = 1.0
            label = 1 + (np.floor(np.abs(cells) * 7.0).astype(np.int64) % (classes - 1))
            score = (0.35 + 0.6 * np.abs(np.tanh(cells * 3.0))).astype(np.float32)
            rows, cols = np.indices(label.shape)
            scores[rows, cols, label] = score
            scores[rows, cols, 0] = 1.0 - score
            result["scores"] = scores
        else:
            size = int(np.prod(shape[1:]))
            base = np.sin(np.arange(size, dtype=np.float64)[None] * 0.37 + cells.mean(axis=1, keepdims=True))
            result[spec["name"]] = (base.reshape(shape) if dtype.kind == "f" else np.zeros(shape)).astype(dtype)
    return result


# -- tensorrt -------------------------------------------------------------------------------------------

def fake_tensorrt(version: str, cuda: Optional[types.ModuleType] = None, parse_ok: bool = True,
                  build_ok: bool = True) -> types.ModuleType:
    """A ``tensorrt`` module for ``version`` (see the module docstring for what it models); ``cuda`` is the
    :func:`fake_cuda` whose memory the engines and calibration read."""
    trt = types.ModuleType("tensorrt")
    major = int(version.split(".")[0])
    gpu: FakeGPU = cuda.gpu if cuda is not None else FakeGPU()
    calls: Dict[str, Any] = {"flags": [], "batches": [], "parsed": None, "profiles": [], "errors": [],
                             "calibration_images": [], "loggers": 0, "logger_conflicts": 0}
    registry: List[str] = []  # [P]
    trt.calls, trt.plugin_registry = calls, registry
    trt.__version__ = version
    if major >= 11:  # [A]
        trt.NetworkDefinitionCreationFlag = _DeprecatedEnum(["STRONGLY_TYPED"], STRONGLY_TYPED=0)
    else:
        trt.NetworkDefinitionCreationFlag = _DeprecatedEnum(["EXPLICIT_BATCH"] if major >= 10 else [],
                                                            EXPLICIT_BATCH=0, STRONGLY_TYPED=1)
    flags = {"GPU_FALLBACK": 3, "TF32": 7}
    if major < 11:
        flags.update(FP16=0, INT8=1)
    trt.BuilderFlag = _Enum(**flags)
    trt.MemoryPoolType = _Enum(WORKSPACE=0)
    trt.DeviceType = _Enum(GPU=0, DLA=1)
    trt.TensorIOMode = _Enum(NONE=0, INPUT=1, OUTPUT=2)
    trt.DataType = _Enum(FLOAT=0, HALF=1, INT8=2, INT32=3, BOOL=4)
    dtype_of = {"float32": trt.DataType.FLOAT, "float16": trt.DataType.HALF, "int32": trt.DataType.INT32,
                "bool": trt.DataType.BOOL}
    numpy_of = {int(v): k for k, v in dtype_of.items()}
    trt.nptype = lambda t: np.dtype(numpy_of[int(t)]).type
    trt.volume = lambda shape: int(np.prod(list(shape)))
    active_logger: List[Any] = []

    def log_error(text: str) -> None:
        calls["errors"].append(text)
        print(f"[TRT] [E] {text}", file=sys.stderr)

    class Logger:
        WARNING = 2
        ERROR = 1
        INFO = 3

        def __init__(self, severity: int = 2) -> None:
            self.severity = severity
            calls["loggers"] += 1

    def use_logger(logger: Any) -> None:  # [L]
        if active_logger and active_logger[0] is not logger:
            calls["logger_conflicts"] += 1
            print("[TRT] [W] The logger passed into createInferRuntime differs from one already provided; "
                  "TensorRT maintains only a single logger pointer at any given time", file=sys.stderr)
        elif not active_logger:
            active_logger.append(logger)

    def init_libnvinfer_plugins(logger: Any, namespace: str) -> bool:  # [P]
        use_logger(logger)
        for name in KNOWN_PLUGINS:
            if name not in registry:
                registry.append(name)
        return True

    trt.init_libnvinfer_plugins = init_libnvinfer_plugins

    class Dims(list):
        pass

    class Profile:
        def __init__(self) -> None:
            self.shapes: Dict[str, Tuple[List[int], List[int], List[int]]] = {}

        def set_shape(self, name: str, low: Any, opt: Any, high: Any) -> None:
            self.shapes[name] = (list(low), list(opt), list(high))
            calls["profiles"].append((name, list(low), list(opt), list(high)))

    class TimingCache:  # [T]
        def __init__(self, data: bytes) -> None:
            calls["timing_cache_in"] = bytes(data)
            self.device = data[len(TIMING_MAGIC):].split(b"\n")[0].decode() if data.startswith(TIMING_MAGIC) \
                else _device_key()

        def serialize(self) -> bytes:
            return TIMING_MAGIC + _device_key().encode() + b"\n"

    def _device_key() -> str:
        return f"{GPU_NAME} sm{GPU_CC[0]}{GPU_CC[1]}"

    class Config:
        def __init__(self) -> None:
            self.int8_calibrator: Any = None
            self.default_device_type = trt.DeviceType.GPU
            self.DLA_core = -1
            self.profiles: List[Profile] = []
            self.calibration_profile: Optional[Profile] = None
            self.flags: List[str] = []
            self._cache: Optional[TimingCache] = None

        def set_memory_pool_limit(self, pool: Any, size: int) -> None:
            calls["workspace"] = size

        def set_flag(self, flag: Any) -> None:
            calls["flags"].append(flag.label)
            self.flags.append(flag.label)

        def create_timing_cache(self, data: bytes) -> TimingCache:
            return TimingCache(data)

        def set_timing_cache(self, cache: TimingCache, ignore_mismatch: bool) -> bool:
            if cache.device != _device_key() and not ignore_mismatch:
                log_error(f"timing cache made on {cache.device} does not match this device ({_device_key()})")
                return False
            self._cache = cache
            return True

        def get_timing_cache(self) -> Optional[TimingCache]:
            return self._cache

        def add_optimization_profile(self, profile: Profile) -> int:
            self.profiles.append(profile)
            return len(self.profiles) - 1

        def set_calibration_profile(self, profile: Profile) -> bool:
            self.calibration_profile = profile
            calls["calibration_profile"] = profile.shapes
            return True

    class Tensor:
        def __init__(self, spec: Dict[str, Any]) -> None:
            self.name, self.shape, self.spec = spec["name"], Dims(spec["shape"]), spec

    class Network:
        def __init__(self, flags: int) -> None:
            calls["network_flags"] = flags
            self.graph: Dict[str, Any] = {"inputs": [], "outputs": [], "ops": []}

        @property
        def num_inputs(self) -> int:
            return len(self.graph["inputs"])

        def get_input(self, index: int) -> Tensor:
            return Tensor(self.graph["inputs"][index])

    class Builder:
        num_DLA_cores = 2

        def __init__(self, logger: Any) -> None:
            use_logger(logger)

        def create_network(self, flags: int = 0) -> Network:
            return Network(flags)

        def create_builder_config(self) -> Config:
            return Config()

        def create_optimization_profile(self) -> Profile:
            return Profile()

        def build_serialized_network(self, network: Network, config: Config) -> Any:
            calls["calibrator"] = type(config.int8_calibrator) if config.int8_calibrator is not None else None
            calls["dla"] = (config.default_device_type, config.DLA_core)
            problem = _check_profiles(network, config)
            if problem is not None:
                log_error(problem)
                return None
            if config.int8_calibrator is not None and "INT8" in config.flags:
                try:
                    _calibrate(network, config)
                except IllegalAccess as exc:
                    log_error(f"calibration: {exc}")
                    return None
            if not build_ok:
                return None
            inputs = []
            for spec in network.graph["inputs"]:
                profile = config.profiles[0].shapes.get(spec["name"]) if config.profiles else None
                inputs.append(dict(spec, profile=profile or [spec["shape"]] * 3))
            plan = {"inputs": inputs, "outputs": network.graph["outputs"], "built_by": version,
                    "plugins": [op for op in network.graph["ops"] if op in KNOWN_PLUGINS],
                    "device": "DLA" if int(config.default_device_type) == 1 else "GPU"}
            return bytearray(PLAN_MAGIC + json.dumps(plan).encode())

    def _check_profiles(network: Network, config: Config) -> Optional[str]:  # [O], [D]
        for spec in network.graph["inputs"]:
            dynamic = [i for i, d in enumerate(spec["shape"]) if d == -1]
            if dynamic and not config.profiles:
                return (f"{spec['name']}: network has dynamic or shape inputs, but no optimization profile has "
                        "been defined")
            for profile in config.profiles:
                shapes = profile.shapes.get(spec["name"])
                if shapes is None:
                    if dynamic:
                        return f"{spec['name']}: optimization profile is missing values for a dynamic input"
                    continue
                for which, dims in zip(("min", "opt", "max"), shapes):
                    if len(dims) != len(spec["shape"]):
                        return (f"{spec['name']}: profile {which} has {len(dims)} dimensions, network "
                                f"{len(spec['shape'])}")
                    for axis, (got, want) in enumerate(zip(dims, spec["shape"])):
                        if want != -1 and got != want:
                            return (f"{spec['name']}: for dimension number {axis} in profile 0 does not match "
                                    f"network definition (got {which}={got}, network={want})")
                if int(config.default_device_type) == 1 and any(shapes[0][a] != shapes[2][a] for a in dynamic):
                    return (f"{spec['name']}: DLA does not support dynamic dimensions: the profile's min, opt and "
                            "max must be equal")
        return None

    def _trampoline(name: str, call: Any, failed: Any) -> Any:  # [C] pyInt8.cpp
        try:
            return call()
        except BaseException as exc:  # pybind11 catches KeyboardInterrupt too
            print(f"[ERROR] Exception caught in {name}(): {exc}", file=sys.stderr)
            calls.setdefault("swallowed", []).append(f"{name}: {type(exc).__name__}")
            return failed

    def _calibrate(network: Network, config: Config) -> None:  # [S], [C]
        calibrator = config.int8_calibrator
        spec = network.graph["inputs"][0]
        shape = list(spec["shape"])
        if -1 in shape:
            profile = config.calibration_profile or config.profiles[0]
            shape = profile.shapes[spec["name"]][1]
        _trampoline("get_batch_size", calibrator.get_batch_size, -1)  # called; ignored for explicit batch
        table = _trampoline("read_calibration_cache", calibrator.read_calibration_cache, None)
        if table:
            calls["cache_read"] = bytes(table)
            return
        count = int(np.prod(shape))
        while True:
            pointers = _trampoline("get_batch", lambda: calibrator.get_batch([spec["name"]]), None)
            if not pointers:
                break
            calls["batches"].append(pointers)
            data = np.frombuffer(gpu.read(int(pointers[0]), count * 4), np.float32).reshape(shape)
            calls["calibration_images"].extend(float(image.astype(np.float64).sum()) for image in data)
        table_bytes = b"TRT-FAKE-EntropyCalibration2\nimages: 3c010a14\n"
        _trampoline("write_calibration_cache", lambda: calibrator.write_calibration_cache(memoryview(table_bytes)),
                    None)

    class OnnxParser:
        def __init__(self, network: Network, logger: Any) -> None:
            self.network = network
            self.errors: List[str] = []
            if major < 10:  # [P] the 8.x parser registered NVIDIA's plugins itself
                init_libnvinfer_plugins(logger, "")

        @property
        def num_errors(self) -> int:
            return len(self.errors)

        def parse(self, data: bytes) -> bool:
            calls["parsed"] = data
            if not parse_ok:
                self.errors = [f"In node {i} (importModel): UNSUPPORTED_NODE: No importer registered for op: "
                               f"FancyOp{i}" for i in range(2)]
                return False
            graph = _read_onnx(bytes(data))
            missing = [op for op in graph["ops"] if op in KNOWN_PLUGINS and op not in registry]
            if missing:
                self.errors = [f"In node 0 (importFallbackPluginImporter): UNSUPPORTED_NODE: Assertion failed: "
                               f"creator && \"Plugin not found, are the plugin name, version, and namespace "
                               f"correct?\" ({missing[0]})"]
                return False
            self.network.graph = graph
            return True

        def get_error(self, index: int) -> str:
            return self.errors[index]

    class _Calibrator:
        def __init__(self) -> None:
            calls["calibrator_base_init"] = type(self).__mro__

    # -- runtime ----------------------------------------------------------------------------------------

    class Engine:
        def __init__(self, plan: Dict[str, Any]) -> None:
            self.plan = plan
            self.tensors = [(s, True) for s in plan["inputs"]] + [(s, False) for s in plan["outputs"]]
            self.by_name = {s["name"]: (s, is_input) for s, is_input in self.tensors}

        num_optimization_profiles = 1

        @property
        def num_io_tensors(self) -> int:
            return len(self.tensors)

        def get_tensor_name(self, index: int) -> str:
            return self.tensors[index][0]["name"]

        def get_tensor_mode(self, name: str) -> Any:
            return trt.TensorIOMode.INPUT if self.by_name[name][1] else trt.TensorIOMode.OUTPUT

        def get_tensor_dtype(self, name: str) -> Any:
            return dtype_of[self.by_name[name][0]["dtype"]]

        def get_tensor_shape(self, name: str) -> Dims:
            return Dims(self.by_name[name][0]["shape"])

        def get_tensor_profile_shape(self, name: str, profile: int) -> List[Dims]:
            spec, is_input = self.by_name[name]
            if not is_input or profile != 0:
                return [Dims([-1])] * 3
            return [Dims(s) for s in spec["profile"]]

        def create_execution_context(self) -> "ExecutionContext":
            return ExecutionContext(self)

    def _deprecated(name: str, use: str) -> None:  # [A] utils::deprecateMember
        warnings.warn(f"Use {use} instead.", DeprecationWarning, stacklevel=3)

    class ExecutionContext:
        def __init__(self, engine: Engine) -> None:
            self.engine = engine
            self.shapes = {s["name"]: list(s["shape"]) for s in engine.plan["inputs"]}
            self.addresses: Dict[str, int] = {}
            self.runs = 0

        def set_input_shape(self, name: str, shape: Any) -> bool:
            spec, _ = self.engine.by_name[name]
            shape = list(shape)
            low, _, high = spec["profile"]
            if len(shape) != len(low) or any(not lo <= s <= hi for s, lo, hi in zip(shape, low, high)):
                log_error(f"IExecutionContext::setInputShape: {name}: {shape} is outside profile 0 "
                          f"[{low}, {high}]")
                return False
            self.shapes[name] = shape
            return True

        def get_tensor_shape(self, name: str) -> Dims:
            spec, is_input = self.engine.by_name[name]
            if is_input:
                return Dims(self.shapes[name])
            batch = self.shapes[self.engine.plan["inputs"][0]["name"]][0]
            return Dims([batch] + list(spec["shape"][1:]))

        def set_tensor_address(self, name: str, address: int) -> bool:
            self.addresses[name] = int(address)
            return True

        def execute_async_v3(self, stream_handle: int) -> bool:
            if not gpu.driver_stack():  # [X] no current CUDA context on this thread
                log_error("IExecutionContext::enqueueV3: invalid device context (no current CUDA context)")
                return False
            spec = self.engine.plan["inputs"][0]
            shape = self.shapes[spec["name"]]
            if -1 in shape or set(self.addresses) != set(self.engine.by_name):
                log_error("IExecutionContext::enqueueV3: input shapes or tensor addresses not all set")
                return False
            try:
                data = gpu.read(self.addresses[spec["name"]], int(np.prod(shape)) * 4)
                images = np.frombuffer(data, np.float32).reshape(shape)
                outputs = _network(images, self.engine.plan["outputs"], 0)
                for name, value in outputs.items():
                    gpu.write(self.addresses[name], np.ascontiguousarray(value).tobytes())
            except IllegalAccess as exc:
                log_error(f"enqueueV3: {exc}")
                return False
            self.runs += 1
            return True

        # 8.x binding API ([A]): present, deprecated
        if major < 10:
            def set_binding_shape(self, index: int, shape: Any) -> bool:
                _deprecated("set_binding_shape", "set_input_shape")
                return self.set_input_shape(self.engine.get_tensor_name(index), shape)

            def get_binding_shape(self, index: int) -> Dims:
                _deprecated("get_binding_shape", "get_tensor_shape")
                return self.get_tensor_shape(self.engine.get_tensor_name(index))

            def execute_async_v2(self, bindings: List[int], stream_handle: int) -> bool:
                _deprecated("execute_async_v2", "execute_async_v3")
                for index, address in enumerate(bindings):
                    self.addresses[self.engine.get_tensor_name(index)] = address
                return self.execute_async_v3(stream_handle)

    if major < 10:
        def _binding(name: str, use: str, get: Any) -> Any:
            def method(self: Engine, index: int) -> Any:
                _deprecated(name, use)
                return get(self, index)
            return method

        Engine.num_bindings = property(lambda self: (_deprecated("num_bindings", "num_io_tensors"),
                                                      len(self.tensors))[1])
        Engine.get_binding_name = _binding("get_binding_name", "get_tensor_name", Engine.get_tensor_name)
        Engine.binding_is_input = _binding("binding_is_input", "get_tensor_mode", lambda s, i: s.tensors[i][1])
        Engine.get_binding_dtype = _binding("get_binding_dtype", "get_tensor_dtype",
                                            lambda s, i: s.get_tensor_dtype(s.get_tensor_name(i)))
        Engine.get_binding_shape = _binding("get_binding_shape", "get_tensor_shape",
                                            lambda s, i: s.get_tensor_shape(s.get_tensor_name(i)))

    class Runtime:
        def __init__(self, logger: Any) -> None:
            use_logger(logger)

        def deserialize_cuda_engine(self, data: bytes) -> Optional[Engine]:
            data = bytes(data)
            if not data.startswith(PLAN_MAGIC):
                log_error("IRuntime::deserializeCudaEngine: not a plan (magic tag mismatch)")
                return None
            plan = json.loads(data[len(PLAN_MAGIC):].decode())
            for plugin in plan["plugins"]:
                if plugin not in registry:  # [P]
                    log_error(f"getPluginCreator could not find plugin {plugin} version 1")
                    return None
            return Engine(plan)

    trt.Logger, trt.Dims, trt.Builder, trt.OnnxParser, trt.Runtime = Logger, Dims, Builder, OnnxParser, Runtime
    trt.ICudaEngine, trt.IExecutionContext = Engine, ExecutionContext
    if major < 11:
        trt.IInt8EntropyCalibrator2 = type("IInt8EntropyCalibrator2", (_Calibrator,), {})
        trt.IInt8MinMaxCalibrator = type("IInt8MinMaxCalibrator", (_Calibrator,), {})
    return trt


def plan_bytes(inputs: List[Dict[str, Any]], outputs: List[Dict[str, Any]], plugins: Sequence[str] = (),
               version: str = "10.3.0") -> bytes:
    """A plan of this double for the runner tests: ``inputs`` as {"name", "shape" (-1 dynamic), "profile":
    [min, opt, max]}, ``outputs`` as {"name", "shape"} (float32 unless "dtype" says otherwise)."""
    ins = [dict({"dtype": "float32", "profile": [i["shape"]] * 3}, **i) for i in inputs]
    outs = [dict({"dtype": "float32"}, **o) for o in outputs]
    plan = {"inputs": ins, "outputs": outs, "plugins": list(plugins), "built_by": version, "device": "GPU"}
    return PLAN_MAGIC + json.dumps(plan).encode()
