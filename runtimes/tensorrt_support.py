"""What the installed TensorRT can do, in one place: imports, version dispatch, the GPU's identity.

TensorRT and pycuda are imported here and only when called, so every other part of the toolkit runs on a
machine without them. Versions the toolkit targets:

* 8.5/8.6 (JetPack 5): implicit INT8 calibration, FP16 flag. The named-tensor API (``num_io_tensors``,
  ``set_input_shape``, ``execute_async_v3``) already exists; the binding-index API is deprecated since 8.5,
  so the runner uses named tensors on every version.
* 10.x (JetPack 6): implicit INT8 and the FP16 flag still work (deprecated since 10.1); the ONNX parser no
  longer registers NVIDIA's plugins itself.
* 11+: strongly typed networks only (always on: the STRONGLY_TYPED flag is deprecated and ignored): no
  FP16/INT8 builder flags and no calibrators, so INT8 is explicit (a Q/DQ ONNX model) and FP16 is an FP16
  ONNX model.

Process-wide state TensorRT and CUDA expect one of: the logger (TensorRT keeps one logger pointer), the
plugin registry (filled once by ``init_libnvinfer_plugins``) and each GPU's primary CUDA context, retained
once and pushed around each use (see :func:`primary_context`).
"""

from __future__ import annotations

import re
import threading
import weakref
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Dict, Iterator, Tuple

from runtimes.errors import UserError

INSTALL_HINT = ("on a Jetson use JetPack's system Python (python3-libnvinfer) with pycuda "
                "(pip3 install pycuda); elsewhere use --target openvino")


def parse_version(text: str) -> Tuple[int, int]:
    """(major, minor) of a TensorRT version string such as "8.5.2.2" or "10.3.0"."""
    match = re.match(r"(\d+)\.(\d+)", text)
    if match is None:
        raise ValueError(f"not a TensorRT version: {text!r}")
    return int(match.group(1)), int(match.group(2))


@dataclass(frozen=True)
class Capabilities:
    """What the builder and runner may use with one TensorRT version."""

    version: Tuple[int, int]

    @property
    def implicit_int8(self) -> bool:
        """Calibrators and BuilderFlag.INT8 exist (removed in 11)."""
        return self.version[0] < 11

    @property
    def precision_flags(self) -> bool:
        """BuilderFlag.FP16/INT8 exist; from 11 on, precision comes from the ONNX model's own types."""
        return self.version[0] < 11

    @property
    def explicit_batch_flag(self) -> bool:
        """create_network needs NetworkDefinitionCreationFlag.EXPLICIT_BATCH (8.x; the default from 10)."""
        return self.version[0] < 10

    @property
    def always_strongly_typed(self) -> bool:
        """Every network is strongly typed (11+); the STRONGLY_TYPED flag is deprecated and ignored there."""
        return self.version[0] >= 11

    @property
    def efficient_nms_deprecated(self) -> bool:
        """EfficientNMS_TRT is deprecated since 10.12 (its README names INMSLayer as the replacement)."""
        return self.version >= (10, 12)

    def default_int8_route(self) -> str:
        """The INT8 route ``--int8`` takes: implicit calibration where it exists, Q/DQ where it does not."""
        return "implicit" if self.implicit_int8 else "explicit"


def require_tensorrt() -> str:
    """The installed TensorRT's version, or a UserError that says how to get it. Callers then import
    ``tensorrt`` themselves, so that mypy checks their calls against the TensorRT stubs."""
    try:
        import tensorrt as trt
    except ImportError:
        raise UserError(f"TensorRT is not installed: {INSTALL_HINT}") from None
    # A type-stub-only package (tensorrt-stubs) imports as an empty namespace package.
    if not hasattr(trt, "Builder"):
        raise UserError(f"only TensorRT's type stubs are installed, not TensorRT: {INSTALL_HINT}")
    return str(trt.__version__)


def import_cuda() -> Any:
    """``pycuda.driver``, initialised, or a UserError."""
    try:
        import pycuda.driver as cuda
    except ImportError:
        raise UserError("pycuda is not installed: pip3 install pycuda (on a Jetson, with JetPack's CUDA on "
                        "PATH: export PATH=/usr/local/cuda/bin:$PATH)") from None
    try:
        cuda.init()
        count = cuda.Device.count()
    except Exception as exc:  # pycuda raises its own RuntimeError/LogicError when no driver is present
        raise UserError(f"no usable CUDA GPU ({exc}); TensorRT needs an NVIDIA GPU: use --target openvino "
                        "here") from None
    if count == 0:
        raise UserError("no CUDA GPU found; TensorRT needs an NVIDIA GPU: use --target openvino here")
    return cuda


def unavailable_reason() -> "str | None":
    """None when TensorRT, pycuda and a CUDA GPU are all usable here, else why not (one line)."""
    try:
        require_tensorrt()
        import_cuda()
    except UserError as exc:
        return str(exc).split(":")[0]
    return None


@dataclass(frozen=True)
class GPUIdentity:
    """The GPU an engine is built for: TensorRT plans only run on the same model and compute capability."""

    name: str
    compute_capability: str

    @classmethod
    def of_device(cls, cuda: Any, index: int = 0) -> "GPUIdentity":
        device = cuda.Device(index)
        major, minor = device.compute_capability()
        return cls(str(device.name()), f"{major}.{minor}")


# -- process-wide TensorRT and CUDA state -------------------------------------------------------------

_LOCK = threading.RLock()  # init_plugins takes it and calls tensorrt_logger
_LOGGERS: "weakref.WeakKeyDictionary[Any, Any]" = weakref.WeakKeyDictionary()
_PLUGINS: "weakref.WeakKeyDictionary[Any, bool]" = weakref.WeakKeyDictionary()
_CONTEXTS: "weakref.WeakKeyDictionary[Any, Dict[int, Any]]" = weakref.WeakKeyDictionary()


def tensorrt_logger(trt: Any) -> Any:
    """The process's one ``trt.Logger`` (WARNING): TensorRT keeps a single logger pointer, and a second
    logger handed to a Builder or Runtime while the first is alive is ignored with a warning."""
    with _LOCK:
        logger = _LOGGERS.get(trt)
        if logger is None:
            logger = _LOGGERS[trt] = trt.Logger(trt.Logger.WARNING)
        return logger


def init_plugins(trt: Any) -> None:
    """Register NVIDIA's plugins (EfficientNMS_TRT among them) in TensorRT's process-wide registry, once.

    Needed before parsing an ONNX model with a plugin node (from 10.0 the parser no longer does it) and
    before deserialising an engine that holds one (on every version), as NVIDIA's samples do."""
    with _LOCK:
        if _PLUGINS.get(trt):
            return
        if not trt.init_libnvinfer_plugins(tensorrt_logger(trt), ""):
            raise UserError("TensorRT could not register its plugin library (libnvinfer_plugin); check the "
                            "TensorRT installation (python3-libnvinfer and libnvinfer-plugin on a Jetson)")
        _PLUGINS[trt] = True


def primary_context(cuda: Any, device: int = 0) -> Any:
    """The GPU's primary CUDA context, retained once for the process and never detached.

    pycuda's ``detach`` of a primary context releases it without popping it from the driver's stack, and
    does nothing at all when called from a thread other than the one that retained it; so each user pushes
    this context around its work (:func:`pushed`) and the process keeps one retain, as the CUDA runtime does.
    """
    with _LOCK:
        contexts = _CONTEXTS.setdefault(cuda, {})
        if device not in contexts:
            contexts[device] = cuda.Device(device).retain_primary_context()
        return contexts[device]


@contextmanager
def pushed(cuda: Any, context: Any) -> Iterator[None]:
    """``context`` current on this thread for the block (pushed, then popped at driver level too)."""
    context.push()
    try:
        yield
    finally:
        cuda.Context.pop()


def free_pinned(array: Any) -> None:
    """Free a pycuda page-locked array's memory now (its base is the HostAllocation), with the context
    current, instead of whenever the garbage collector gets to it."""
    base = getattr(array, "base", None)
    if base is not None and hasattr(base, "free"):
        base.free()
