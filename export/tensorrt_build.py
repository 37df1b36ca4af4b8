"""Simplified ONNX -> TensorRT engine (+ its record), for TensorRT 8.5/8.6, 10.x and 11.

:func:`plan_build` decides, from the installed version and the options alone, which network and builder
flags, which ONNX variant (FP32, Q/DQ INT8) and which calibrator a build uses; it needs no GPU, so the
decisions are tested everywhere. :func:`build_engine` applies a plan with the real TensorRT API.
"""

from __future__ import annotations

import shlex
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Dict, List, Optional, Tuple

from runtimes.errors import UserError
from runtimes.metadata import INPUT_NAME, ModelMetadata
from runtimes.tensorrt_support import Capabilities

if TYPE_CHECKING:
    import tensorrt as trt

INT8_ROUTES = ("auto", "implicit", "explicit")
NMS_MODES = ("host", "engine")


@dataclass
class TensorRTOptions:
    """What the user asked for (``export/build_engine.py``'s TensorRT options)."""

    precision: str = "fp16"  # fp32 | fp16 | int8
    int8_route: str = "auto"  # auto | implicit (calibrator, < 11) | explicit (Q/DQ ONNX, any version)
    calib_algorithm: str = "entropy"  # entropy | minmax (implicit route)
    calib_batch: int = 8
    workspace_mib: int = 1024  # small enough for a Jetson Nano's shared memory
    batch: Optional[Tuple[int, int, int]] = None  # dynamic batch profile (min, opt, max)
    dla_core: Optional[int] = None
    nms: str = "host"  # host | engine (EfficientNMS_TRT appended)


@dataclass
class BuildPlan:
    """How one build runs on one TensorRT version."""

    network_flags: List[str]
    builder_flags: List[str]
    int8_route: Optional[str]  # None, "implicit", "explicit"
    calibrator: Optional[str]  # calibration algorithm for the implicit route
    onnx_variant: str = "fp32"  # the ONNX TensorRT parses: fp32 (as exported), qdq (INT8), fp16 (TensorRT 11)
    notes: List[str] = field(default_factory=list)


def parse_batch(text: Optional[str]) -> Optional[Tuple[int, int, int]]:
    """``--batch MIN,OPT,MAX`` -> (min, opt, max)."""
    if text is None:
        return None
    try:
        low, opt, high = (int(v) for v in text.split(","))
    except ValueError:
        raise UserError(f"--batch takes MIN,OPT,MAX (e.g. 1,4,8), not '{text}'") from None
    if not 1 <= low <= opt <= high:
        raise UserError(f"--batch {text}: need 1 <= MIN <= OPT <= MAX")
    return low, opt, high


def plan_build(caps: Capabilities, options: TensorRTOptions, onnx_has_qdq: bool = False) -> BuildPlan:
    """The flags and INT8 route for ``options`` on TensorRT ``caps.version`` (UserError if impossible)."""
    version = ".".join(map(str, caps.version))
    network = ["EXPLICIT_BATCH"] if caps.explicit_batch_flag else []
    variant = "fp32"
    flags: List[str] = []
    notes: List[str] = []
    route: Optional[str] = None
    if options.precision == "int8" or onnx_has_qdq:
        route = options.int8_route if options.int8_route != "auto" else caps.default_int8_route()
        if onnx_has_qdq:
            route = "explicit"  # the model carries its own scales
        if route == "implicit" and not caps.implicit_int8:
            raise UserError(f"TensorRT {version} has no implicit INT8 calibration (removed in 11): use "
                            "--int8-route explicit (a Q/DQ ONNX model)")
    if not caps.precision_flags:
        # TensorRT 11: strongly typed; each layer runs in the type the ONNX model gives it.
        network.append("STRONGLY_TYPED")
        if options.precision == "fp16" and route is None:
            variant = "fp16"
            notes.append("strongly typed: FP16 from an FP16 ONNX model (no FP16 builder flag in TensorRT 11)")
        if route == "explicit":
            notes.append("strongly typed: Q/DQ layers run INT8, the rest in the model's FP32")
    elif route is not None:
        # INT8 where quantized (implicitly: every layer TensorRT calibrates; explicitly: the Q/DQ layers, which
        # TensorRT < 11 builds only with the INT8 flag set), FP16 for the rest, as trtexec --int8 --fp16 does.
        flags += ["INT8", "FP16"]
    elif options.precision == "fp16":
        flags.append("FP16")
    if options.dla_core is not None:
        if options.precision == "fp32" and route is None:
            raise UserError("the DLA runs FP16 or INT8 only: add --fp16 or --int8 to --dla-core")
        flags.append("GPU_FALLBACK")
        notes.append(f"DLA core {options.dla_core}; layers the DLA cannot run fall back to the GPU")
    calibrator = options.calib_algorithm if route == "implicit" else None
    if route == "explicit" and not onnx_has_qdq:
        variant = "qdq"
    return BuildPlan(network, flags, route, calibrator, variant, notes)


def trtexec_command(onnx: Path, engine: Path, meta: ModelMetadata, options: TensorRTOptions, plan: BuildPlan,
                    timing_cache: Path) -> str:
    """The equivalent trtexec command (trtexec writes a bare plan, without the record the runner reads)."""
    args = ["trtexec", f"--onnx={onnx}", f"--saveEngine={engine}", f"--memPoolSize=workspace:{options.workspace_mib}M",
            f"--timingCacheFile={timing_cache}"]
    args += [f"--{flag.lower()}" for flag in plan.builder_flags if flag in ("FP16", "INT8")]
    if "STRONGLY_TYPED" in plan.network_flags:
        args.append("--stronglyTyped")
    if options.batch is not None:
        dims = f"3x{meta.input_height}x{meta.input_width}"
        for name, size in zip(("min", "opt", "max"), options.batch):
            args.append(f"--{name}Shapes={INPUT_NAME}:{size}x{dims}")
    if options.dla_core is not None:
        args += [f"--useDLACore={options.dla_core}", "--allowGPUFallback"]
    return shlex.join(args)


def has_qdq(meta: ModelMetadata) -> bool:
    quant = meta.extra.get("quantization")
    return isinstance(quant, dict) and quant.get("route") == "explicit Q/DQ"


@dataclass
class EngineBuild:
    path: Path
    seconds: float
    plan: BuildPlan
    record: Dict[str, Any]


def _parse(network: "trt.INetworkDefinition", logger: "trt.ILogger", onnx: Path) -> None:
    import tensorrt as trt

    parser = trt.OnnxParser(network, logger)
    if not parser.parse(onnx.read_bytes()):
        errors = [str(parser.get_error(i)) for i in range(parser.num_errors)]
        shown = "\n  ".join(errors[:5]) + ("\n  ..." if len(errors) > 5 else "")
        raise UserError(f"{onnx}: TensorRT's ONNX parser rejected the model:\n  {shown}\nre-export with "
                        "export/export_onnx.py (opset 17, simplified) or check the op against TensorRT's "
                        "supported-ops list")


def build_engine(onnx: Path, meta: ModelMetadata, output: Path, options: TensorRTOptions, plan: BuildPlan, *,
                 calibration: Any = None, calib_cache: Optional[Path] = None, timing_cache: Path,
                 rebuild_command: str, record: Optional[Dict[str, Any]] = None) -> EngineBuild:
    """Build ``onnx`` into ``output`` (+ ``output.json``) as ``plan`` (from :func:`plan_build` for the
    installed TensorRT) says.

    Args:
        calibration: the :class:`CalibrationSet` for the implicit INT8 route.
        calib_cache: where the implicit route's calibration cache lives.
        timing_cache: TensorRT's timing cache, read if present and written back (rebuilds get faster).
        record: facts to add to the engine record (source, calibration, ...).
    """
    from runtimes.atomic import atomic_write_bytes
    from runtimes.tensorrt_engine_file import EngineRecord, write_engine
    from runtimes.tensorrt_support import GPUIdentity, import_cuda, require_tensorrt

    require_tensorrt()
    import tensorrt as trt

    cuda = import_cuda()
    gpu = GPUIdentity.of_device(cuda, 0)
    context = cuda.Device(0).retain_primary_context()
    context.push()  # the calibrator's pycuda buffers need a current context
    start = time.monotonic()
    try:
        logger = trt.Logger(trt.Logger.WARNING)
        builder = trt.Builder(logger)
        network_flags = 0
        for name in plan.network_flags:
            network_flags |= 1 << int(getattr(trt.NetworkDefinitionCreationFlag, name))
        network = builder.create_network(network_flags)
        _parse(network, logger, onnx)
        config = builder.create_builder_config()
        config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, options.workspace_mib << 20)
        for name in plan.builder_flags:
            config.set_flag(getattr(trt.BuilderFlag, name))
        cache = config.create_timing_cache(timing_cache.read_bytes() if timing_cache.is_file() else b"")
        config.set_timing_cache(cache, ignore_mismatch=False)
        profile = None
        if options.batch is not None:
            profile = builder.create_optimization_profile()
            dims = (3, meta.input_height, meta.input_width)
            low, opt, high = (trt.Dims([size, *dims]) for size in options.batch)
            profile.set_shape(INPUT_NAME, low, opt, high)
            config.add_optimization_profile(profile)
        if options.dla_core is not None:
            if options.dla_core >= builder.num_DLA_cores:
                raise UserError(f"--dla-core {options.dla_core}: this device has {builder.num_DLA_cores} DLA cores")
            config.default_device_type = trt.DeviceType.DLA
            config.DLA_core = options.dla_core
        calibrator = None
        if plan.int8_route == "implicit":
            calibrator = _calibrator(cuda, meta, options, calibration, calib_cache, onnx, trt.__version__)
            config.int8_calibrator = calibrator
            if profile is not None:
                config.set_calibration_profile(profile)
            print(f"calibrating ({plan.calibrator}, batch {options.calib_batch}) and building ...")
        else:
            print("building (minutes on a Jetson; the timing cache makes rebuilds faster) ...")
        serialized = builder.build_serialized_network(network, config)
        if serialized is None:
            raise UserError("TensorRT could not build the engine (its errors are printed above); try a larger "
                            "--workspace or another precision")
        atomic_write_bytes(timing_cache, bytes(config.get_timing_cache().serialize()))
        build = {"precision": options.precision, "int8_route": plan.int8_route, "calibrator": plan.calibrator,
                 "network_flags": plan.network_flags, "builder_flags": plan.builder_flags,
                 "workspace_mib": options.workspace_mib, "batch_profile": options.batch,
                 "dla_core": options.dla_core, "nms": options.nms, "onnx": str(onnx),
                 "seconds": round(time.monotonic() - start, 1), **(record or {})}
        if calibrator is not None:
            build["calibration_cache"] = {"path": str(calib_cache), "status": calibrator.cache.status}
        write_engine(output, bytes(serialized), EngineRecord(meta, trt.__version__, gpu, build, rebuild_command))
    finally:
        cuda.Context.pop()
        context.detach()
    return EngineBuild(output, time.monotonic() - start, plan, build)


def _calibrator(cuda: Any, meta: ModelMetadata, options: TensorRTOptions, calibration: Any,
                calib_cache: Optional[Path], onnx: Path, tensorrt_version: str) -> Any:
    from calibration.progress import progress_line
    from calibration.stream import CalibrationStream
    from calibration.tensorrt_calibrator import CalibrationCache, PinnedBatcher, make_calibrator, preprocessing_record
    from runtimes.hashing import sha256_file
    from runtimes.preprocess import Preprocessor

    if calibration is None or calib_cache is None:
        raise ValueError("the implicit INT8 route needs a calibration set and a cache path")
    stream = CalibrationStream(calibration, Preprocessor(meta), batch_size=options.calib_batch, drop_last=True)
    batcher = PinnedBatcher(stream, cuda.pagelocked_empty)
    record = {"model_sha256": sha256_file(onnx), "preprocessing": preprocessing_record(meta),
              "images": calibration.record(), "algorithm": options.calib_algorithm,
              "batch_size": options.calib_batch, "tensorrt_version": tensorrt_version}
    cache = CalibrationCache(calib_cache, record)
    return make_calibrator(cuda, batcher, cache, options.calib_algorithm,
                           progress=progress_line("calibrating", "batches"))
