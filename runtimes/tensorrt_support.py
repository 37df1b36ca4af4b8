"""What the installed TensorRT can do, in one place: imports, version dispatch, the GPU's identity.

TensorRT and pycuda are imported here and only when called, so every other part of the toolkit runs on a
machine without them. Versions the toolkit targets:

* 8.5/8.6 (JetPack 5): binding-index API (``execute_async_v2``), implicit INT8 calibration, FP16 flag.
* 10.x (JetPack 6): named-tensor API (``execute_async_v3``); implicit INT8 and the FP16 flag still work
  (deprecated since 10.1).
* 11+: strongly typed networks only: no FP16/INT8 builder flags and no calibrators, so INT8 is explicit
  (a Q/DQ ONNX model) and FP16 is an FP16 ONNX model.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Tuple

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
    def tensor_api(self) -> str:
        """"bindings" (8.x: binding indices, execute_async_v2) or "tensors" (10+: names, execute_async_v3)."""
        return "bindings" if self.version[0] < 10 else "tensors"

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
