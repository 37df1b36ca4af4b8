"""TEST DOUBLE, NOT TENSORRT: stand-ins for the ``tensorrt`` and ``pycuda.driver`` modules.

They record what the toolkit's builder asks for (network and builder flags, workspace, profiles, DLA,
calibrator, timing cache) and drive a calibrator the way TensorRT does (read the cache; else pull batches
until None, then write the cache), so the orchestration in export/tensorrt_build.py can be checked on a
machine without a GPU. They prove nothing about TensorRT itself: that is tests/gpu/ on a device.
"""

from __future__ import annotations

import types
from typing import Any, Dict, List

import numpy as np


class _Enum:
    def __init__(self, **values: int) -> None:
        for name, value in values.items():
            setattr(self, name, _Value(name, value))


class _Value(int):
    def __new__(cls, name: str, value: int) -> "_Value":
        obj = super().__new__(cls, value)
        obj.label = name
        return obj


def fake_tensorrt(version: str, parse_ok: bool = True, build_ok: bool = True) -> types.ModuleType:
    """A ``tensorrt`` module for ``version``: from 11 on without FP16/INT8 flags or calibrators."""
    trt = types.ModuleType("tensorrt")
    major = int(version.split(".")[0])
    calls: Dict[str, Any] = {"flags": [], "batches": [], "parsed": None, "profiles": []}
    trt.calls = calls
    trt.__version__ = version
    trt.NetworkDefinitionCreationFlag = _Enum(EXPLICIT_BATCH=0, STRONGLY_TYPED=1)
    flags = {"GPU_FALLBACK": 3, "TF32": 7}
    if major < 11:
        flags.update(FP16=0, INT8=1)
    trt.BuilderFlag = _Enum(**flags)
    trt.MemoryPoolType = _Enum(WORKSPACE=0)
    trt.DeviceType = _Enum(GPU=0, DLA=1)

    class Logger:
        WARNING = 2

        def __init__(self, severity: int) -> None:
            self.severity = severity

    class Dims(list):
        pass

    class Profile:
        def set_shape(self, name: str, low: Any, opt: Any, high: Any) -> None:
            calls["profiles"].append((name, list(low), list(opt), list(high)))

    class TimingCache:
        def __init__(self, data: bytes) -> None:
            calls["timing_cache_in"] = bytes(data)

        def serialize(self) -> bytes:
            return b"TIMING-CACHE"

    class Config:
        int8_calibrator = None
        default_device_type = None
        DLA_core = -1

        def set_memory_pool_limit(self, pool: Any, size: int) -> None:
            calls["workspace"] = size

        def set_flag(self, flag: Any) -> None:
            calls["flags"].append(flag.label)

        def create_timing_cache(self, data: bytes) -> TimingCache:
            self._cache = TimingCache(data)
            return self._cache

        def set_timing_cache(self, cache: Any, ignore_mismatch: bool) -> bool:
            return True

        def get_timing_cache(self) -> TimingCache:
            return self._cache

        def add_optimization_profile(self, profile: Any) -> int:
            return 0

        def set_calibration_profile(self, profile: Any) -> None:
            calls["calibration_profile"] = True

    class Network:
        def __init__(self, flags: int) -> None:
            calls["network_flags"] = flags

    class Builder:
        num_DLA_cores = 2

        def __init__(self, logger: Any) -> None:
            pass

        def create_network(self, flags: int = 0) -> Network:
            return Network(flags)

        def create_builder_config(self) -> Config:
            return Config()

        def create_optimization_profile(self) -> Profile:
            return Profile()

        def build_serialized_network(self, network: Any, config: Config) -> Any:
            calibrator = config.int8_calibrator
            calls["calibrator"] = calibrator
            calls["dla"] = (config.default_device_type, config.DLA_core)
            if calibrator is not None:  # what TensorRT does with a calibrator
                table = calibrator.read_calibration_cache()
                if table is None:
                    while True:
                        pointers = calibrator.get_batch(["images"])
                        if pointers is None:
                            break
                        calls["batches"].append(pointers)
                    calibrator.write_calibration_cache(b"TRT-FAKE-Calibration\nimages: 3c010a14\n")
            return bytearray(b"FAKE-PLAN") if build_ok else None

    class OnnxParser:
        def __init__(self, network: Any, logger: Any) -> None:
            self.num_errors = 0 if parse_ok else 2

        def parse(self, data: bytes) -> bool:
            calls["parsed"] = data
            return parse_ok

        def get_error(self, index: int) -> str:
            return f"In node {index} (importModel): UNSUPPORTED_NODE: No importer registered for op: FancyOp{index}"

    class _Calibrator:
        def __init__(self) -> None:
            calls["calibrator_base_init"] = type(self).__mro__

    trt.Logger, trt.Dims, trt.Builder, trt.OnnxParser = Logger, Dims, Builder, OnnxParser
    if major < 11:
        trt.IInt8EntropyCalibrator2 = type("IInt8EntropyCalibrator2", (_Calibrator,), {})
        trt.IInt8MinMaxCalibrator = type("IInt8MinMaxCalibrator", (_Calibrator,), {})
    return trt


def fake_cuda() -> types.ModuleType:
    """A ``pycuda.driver`` with one GPU: records host-to-device copies (as checksums)."""
    cuda = types.ModuleType("pycuda.driver")
    copies: List[float] = []
    cuda.copies = copies
    stack: List[Any] = []
    cuda.stack = stack

    class Allocation(int):
        def free(self) -> None:
            pass

    class PrimaryContext:
        def push(self) -> None:
            stack.append(self)

        def detach(self) -> None:
            pass

    class Context:
        @staticmethod
        def pop() -> None:
            stack.pop()

    class Device:
        @staticmethod
        def count() -> int:
            return 1

        def __init__(self, index: int) -> None:
            pass

        def name(self) -> str:
            return "Fake GPU"

        def compute_capability(self) -> tuple:
            return (8, 7)

        def retain_primary_context(self) -> PrimaryContext:
            return PrimaryContext()

    class Stream:
        handle = 0

        def synchronize(self) -> None:
            pass

    cuda.init = lambda: None
    cuda.Device, cuda.Context, cuda.Stream = Device, Context, Stream
    cuda.mem_alloc = lambda size: Allocation(4096)
    cuda.pagelocked_empty = lambda shape, dtype: np.empty(shape, dtype)
    cuda.memcpy_htod_async = lambda dst, src, stream: copies.append(float(np.asarray(src).sum()))
    return cuda
