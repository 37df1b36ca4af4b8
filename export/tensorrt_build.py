"""Simplified ONNX -> TensorRT engine (+ its record), for TensorRT 8.5/8.6, 10.x and 11.

:func:`plan_build` decides, from the installed version and the options alone, which network and builder
flags, which ONNX variant (FP32, Q/DQ INT8) and which calibrator a build uses; it needs no GPU, so the
decisions are tested everywhere. :func:`build_engine` applies a plan with the real TensorRT API, deciding
what depends on the parsed network (the batch profile, the calibration batch) the way NVIDIA's
efficientdet sample does: a profile only for a dynamic batch axis. docs/tensorrt.md has the sources.
"""

from __future__ import annotations

import re
import shlex
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Dict, List, Optional, Sequence, Tuple

from runtimes.errors import UserError
from runtimes.metadata import INPUT_NAME, ModelMetadata
from runtimes.tensorrt_support import Capabilities, GPUIdentity

if TYPE_CHECKING:
    import tensorrt as trt

INT8_ROUTES = ("auto", "implicit", "explicit")


@dataclass
class TensorRTOptions:
    """What the user asked for (``export/build_engine.py``'s TensorRT options)."""

    precision: str = "fp16"  # fp32 | fp16 | int8
    int8_route: str = "auto"  # auto | implicit (calibrator, < 11) | explicit (Q/DQ ONNX, any version)
    calib_algorithm: str = "entropy"  # entropy | minmax (implicit route)
    calib_batch: int = 8  # images per calibration batch for a dynamic-batch network (a static one: its batch)
    workspace_mib: int = 1024  # small enough for a Jetson Nano's shared memory
    batch: Optional[Tuple[int, int, int]] = None  # dynamic batch profile (min, opt, max); needs a dynamic ONNX
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
        # TensorRT 11: always strongly typed (its STRONGLY_TYPED flag is deprecated and ignored, so none is
        # set); each layer runs in the type the ONNX model gives it.
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
        if options.batch is not None and len(set(options.batch)) > 1:
            high = options.batch[2]
            raise UserError(f"--dla-core with --batch {','.join(map(str, options.batch))}: the DLA runs no dynamic "
                            f"shapes (TensorRT needs MIN = OPT = MAX for it): pass --batch {high},{high},{high}")
        flags.append("GPU_FALLBACK")
        notes.append(f"DLA core {options.dla_core}; layers the DLA cannot run fall back to the GPU")
    if options.nms == "engine" and caps.efficient_nms_deprecated:
        notes.append(f"EfficientNMS_TRT is deprecated since TensorRT 10.12 (NVIDIA points to INMSLayer instead, "
                     f"which this toolkit does not build yet); TensorRT {version} still runs it, and --nms host "
                     "works on every version")
    calibrator = options.calib_algorithm if route == "implicit" else None
    if route == "explicit" and not onnx_has_qdq:
        variant = "qdq"
    return BuildPlan(network, flags, route, calibrator, variant, notes)


def trtexec_command(onnx: Path, engine: Path, meta: ModelMetadata, options: TensorRTOptions, plan: BuildPlan,
                    timing_cache: Path, profile: Optional[Tuple[int, int, int]] = None,
                    calib_table: Optional[Path] = None) -> str:
    """The equivalent trtexec command (trtexec writes a bare plan, without the record the runner reads).

    ``profile``: the batch profile the build used (default: ``options.batch``); ``calib_table``: TensorRT's
    calibration table without this toolkit's header (trtexec --calib reads only TensorRT's own format)."""
    args = ["trtexec", f"--onnx={onnx}", f"--saveEngine={engine}", f"--memPoolSize=workspace:{options.workspace_mib}M",
            f"--timingCacheFile={timing_cache}"]
    args += [f"--{flag.lower()}" for flag in plan.builder_flags if flag in ("FP16", "INT8")]
    if "STRONGLY_TYPED" in plan.network_flags:
        args.append("--stronglyTyped")
    if calib_table is not None:
        args.append(f"--calib={calib_table}")
    profile = profile if profile is not None else options.batch
    if profile is not None:
        dims = f"3x{meta.input_height}x{meta.input_width}"
        for name, size in zip(("min", "opt", "max"), profile):
            args.append(f"--{name}Shapes={INPUT_NAME}:{size}x{dims}")
    if options.dla_core is not None:
        args += [f"--useDLACore={options.dla_core}", "--allowGPUFallback"]
    return shlex.join(args)


def timing_cache_name(tensorrt_version: str, gpu: GPUIdentity) -> str:
    """The default timing cache file: one per TensorRT version and GPU model (a cache from another GPU is
    refused by TensorRT), e.g. ``timing-10.3.0-orin-sm87.cache``."""
    slug = re.sub(r"[^a-z0-9]+", "-", gpu.name.lower()).strip("-") or "gpu"
    return f"timing-{tensorrt_version}-{slug}-sm{gpu.compute_capability.replace('.', '')}.cache"


def batch_profile(input_shape: Sequence[int], options: TensorRTOptions, onnx: Path) -> Optional[Tuple[int, int, int]]:
    """The (min, opt, max) batch profile for a network input of ``input_shape`` (-1: dynamic), as NVIDIA's
    efficientdet sample decides it: a profile only for a dynamic batch axis (``--batch``, else batch 1);
    ``--batch`` for a static batch is refused (TensorRT would fail the build)."""
    static = int(input_shape[0])
    if static != -1:
        if options.batch is not None:
            raise UserError(f"--batch {','.join(map(str, options.batch))}: {onnx.name} has a static batch of {static}; "
                            "export it with a dynamic batch axis (python export/export_onnx.py ... --dynamic-batch, "
                            "or build_engine.py --checkpoint ... --batch, which exports one) or leave out --batch")
        return None
    return options.batch if options.batch is not None else (1, 1, 1)


def has_qdq(meta: ModelMetadata) -> bool:
    """Whether the model is a Q/DQ ONNX (it carries its own INT8 scales: TensorRT's explicit route)."""
    return meta.quantization == "qdq"


@dataclass
class EngineBuild:
    path: Path
    seconds: float
    plan: BuildPlan
    record: Dict[str, Any]
    profile: Optional[Tuple[int, int, int]] = None  # the batch profile used (dynamic-batch networks)
    calib_table: Optional[Path] = None  # TensorRT's bare calibration table, for trtexec --calib


def _parse(network: "trt.INetworkDefinition", logger: "trt.ILogger", onnx: Path) -> None:
    import tensorrt as trt

    parser = trt.OnnxParser(network, logger)
    if not parser.parse(onnx.read_bytes()):
        errors = [str(parser.get_error(i)) for i in range(parser.num_errors)]
        shown = "\n  ".join(errors[:5]) + ("\n  ..." if len(errors) > 5 else "")
        raise UserError(f"{onnx}: TensorRT's ONNX parser rejected the model:\n  {shown}\nre-export with "
                        "export/export_onnx.py (opset 17, simplified) or check the op against TensorRT's "
                        "supported-ops list")


def _attach_timing_cache(config: "trt.IBuilderConfig", path: Path) -> "trt.ITimingCache":
    """``path``'s timing cache attached to ``config``, or a new one when TensorRT refuses it (made on another
    GPU or TensorRT version: ``set_timing_cache`` returns False). The caller keeps it alive until built."""
    data = path.read_bytes() if path.is_file() else b""
    try:
        cache: Optional["trt.ITimingCache"] = config.create_timing_cache(data)
    except Exception:  # a file TensorRT cannot read at all (truncated, not a timing cache)
        cache = None
    if cache is not None and config.set_timing_cache(cache, ignore_mismatch=False):
        return cache
    print(f"timing cache {path} was made on another GPU or TensorRT version (or is unreadable); building with a "
          "new one, which replaces it (pass --timing-cache to keep one per GPU)")
    cache = config.create_timing_cache(b"")
    if cache is None or not config.set_timing_cache(cache, ignore_mismatch=False):
        raise UserError("TensorRT refused an empty timing cache (see its log above); check the TensorRT install")
    return cache


def build_engine(onnx: Path, meta: ModelMetadata, output: Path, options: TensorRTOptions, plan: BuildPlan, *,
                 calibration: Any = None, calib_cache: Optional[Path] = None, timing_cache: Path,
                 rebuild_command: str, record: Optional[Dict[str, Any]] = None) -> EngineBuild:
    """Build ``onnx`` into ``output`` (+ ``output.json``) as ``plan`` (from :func:`plan_build` for the
    installed TensorRT) says.

    Args:
        calibration: the :class:`CalibrationSet` for the implicit INT8 route.
        calib_cache: where the implicit route's calibration cache lives; TensorRT's bare table is written
            beside it (``NAME.calib.table``) for trtexec.
        timing_cache: TensorRT's timing cache, read if present and written back (rebuilds get faster).
        record: facts to add to the engine record (source, calibration, ...).
    """
    from runtimes.tensorrt_support import import_cuda, primary_context, pushed, require_tensorrt

    require_tensorrt()
    cuda = import_cuda()
    gpu = GPUIdentity.of_device(cuda, 0)
    calibrators: List[Any] = []
    # The calibrator's pycuda buffers need a current context, and must be freed while it is current.
    with pushed(cuda, primary_context(cuda, 0)):
        try:
            return _build(cuda, gpu, onnx, meta, output, options, plan, calibration, calib_cache, timing_cache,
                          rebuild_command, record or {}, calibrators)
        finally:
            for calibrator in calibrators:
                calibrator.free()


def _build(cuda: Any, gpu: GPUIdentity, onnx: Path, meta: ModelMetadata, output: Path, options: TensorRTOptions,
           plan: BuildPlan, calibration: Any, calib_cache: Optional[Path], timing_cache: Path, rebuild_command: str,
           record: Dict[str, Any], calibrators: List[Any]) -> EngineBuild:
    """:func:`build_engine` with the CUDA context current; appends the calibrator it makes to ``calibrators``."""
    import tensorrt as trt

    from runtimes.atomic import atomic_write_bytes
    from runtimes.tensorrt_engine_file import EngineRecord, write_engine

    start = time.monotonic()
    builder, network, input_shape = _parsed_network(trt, plan, onnx)
    batch = batch_profile(input_shape, options, onnx)
    dims = [d if d > 0 else size for d, size in zip(input_shape[1:], (3, meta.input_height, meta.input_width))]
    config, cache = _builder_config(trt, builder, options, plan, timing_cache, batch, dims)
    calibrator = None
    if plan.int8_route == "implicit":
        calibrator = _attach_calibrator(trt, cuda, builder, config, meta, options, plan, calibration, calib_cache,
                                        onnx, input_shape[0] if batch is None else None, dims, calibrators)
    else:
        print("building (minutes on a Jetson; the timing cache makes rebuilds faster) ...")
    serialized = builder.build_serialized_network(network, config)
    if calibrator is not None and calibrator.error is not None:
        raise calibrator.error  # raised inside a callback, where TensorRT's bindings would have swallowed it
    if serialized is None:
        raise UserError("TensorRT could not build the engine (its errors are printed above); try a larger "
                        "--workspace or another precision")
    timing = config.get_timing_cache()
    atomic_write_bytes(timing_cache, bytes((timing if timing is not None else cache).serialize()))
    build = {"precision": options.precision, "int8_route": plan.int8_route, "calibrator": plan.calibrator,
             "network_flags": plan.network_flags, "builder_flags": plan.builder_flags,
             "workspace_mib": options.workspace_mib, "batch_profile": batch, "dla_core": options.dla_core,
             "nms": options.nms, "onnx": str(onnx), "seconds": round(time.monotonic() - start, 1), **record}
    table_path = None
    if calibrator is not None:
        build["calibration_cache"] = {"path": str(calib_cache), "status": calibrator.cache.status,
                                      "batch": calibrator.get_batch_size()}
        if calibrator.cache.table is not None and calib_cache is not None:
            table_path = calib_cache.with_suffix(".table")
            atomic_write_bytes(table_path, calibrator.cache.table)
    write_engine(output, bytes(serialized), EngineRecord(meta, trt.__version__, gpu, build, rebuild_command))
    return EngineBuild(output, time.monotonic() - start, plan, build, batch, table_path)


def _parsed_network(trt: Any, plan: BuildPlan, onnx: Path) -> Tuple[Any, Any, List[int]]:
    """A builder, the network parsed from ``onnx`` with the plan's network flags, and its input shape."""
    from runtimes.tensorrt_support import init_plugins, tensorrt_logger

    logger = tensorrt_logger(trt)
    init_plugins(trt)  # before parsing: the 10.x parser no longer registers EfficientNMS_TRT itself
    builder = trt.Builder(logger)
    network_flags = 0
    for name in plan.network_flags:
        network_flags |= 1 << int(getattr(trt.NetworkDefinitionCreationFlag, name))
    network = builder.create_network(network_flags)
    _parse(network, logger, onnx)
    dims_in = network.get_input(0).shape
    return builder, network, [int(dims_in[i]) for i in range(len(dims_in))]


def _builder_config(trt: Any, builder: Any, options: TensorRTOptions, plan: BuildPlan, timing_cache: Path,
                    batch: Optional[Tuple[int, int, int]], dims: List[int]) -> Tuple[Any, Any]:
    """The builder config (workspace, the plan's flags, the batch profile, the DLA) and the timing cache
    attached to it, which the caller keeps alive until the build is done."""
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, options.workspace_mib << 20)
    for name in plan.builder_flags:
        config.set_flag(getattr(trt.BuilderFlag, name))
    cache = _attach_timing_cache(config, timing_cache)
    if batch is not None:
        profile = builder.create_optimization_profile()
        low, opt, high = (trt.Dims([size, *dims]) for size in batch)
        profile.set_shape(INPUT_NAME, low, opt, high)
        config.add_optimization_profile(profile)
    if options.dla_core is not None:
        if options.dla_core >= builder.num_DLA_cores:
            raise UserError(f"--dla-core {options.dla_core}: this device has {builder.num_DLA_cores} DLA cores")
        config.default_device_type = trt.DeviceType.DLA
        config.DLA_core = options.dla_core
    return config, cache


def _attach_calibrator(trt: Any, cuda: Any, builder: Any, config: Any, meta: ModelMetadata, options: TensorRTOptions,
                       plan: BuildPlan, calibration: Any, calib_cache: Optional[Path], onnx: Path,
                       static_batch: Optional[int], dims: List[int], calibrators: List[Any]) -> Any:
    """The implicit route's calibrator set on ``config`` (and appended to ``calibrators`` as soon as made).
    TensorRT reads the calibration shape from the network (``static_batch``) or from the calibration
    profile's OPT (a dynamic batch), not from get_batch_size: it is fed exactly that many images per batch."""
    calib_batch = static_batch if static_batch is not None else options.calib_batch
    if static_batch is None:
        calib_profile = builder.create_optimization_profile()
        shape = trt.Dims([calib_batch, *dims])
        calib_profile.set_shape(INPUT_NAME, shape, shape, shape)
        config.set_calibration_profile(calib_profile)
    elif calib_batch != options.calib_batch:
        print(f"calibrating {calib_batch} image{'s' if calib_batch > 1 else ''} per batch: the network's static "
              f"batch (--calib-batch applies to dynamic-batch networks)")
    calibrator = _calibrator(cuda, meta, options, calibration, calib_cache, onnx, trt.__version__, calib_batch)
    calibrators.append(calibrator)
    config.int8_calibrator = calibrator
    print(f"calibrating ({plan.calibrator}, batch {calib_batch}) and building ...")
    return calibrator


def _calibrator(cuda: Any, meta: ModelMetadata, options: TensorRTOptions, calibration: Any,
                calib_cache: Optional[Path], onnx: Path, tensorrt_version: str, batch: int) -> Any:
    """The implicit route's calibrator, feeding ``batch`` images per call. The cache is read here, before
    the build, so that a cache this toolkit refuses stops it (TensorRT would swallow the error)."""
    from calibration.progress import progress_line
    from calibration.stream import CalibrationStream
    from calibration.tensorrt_calibrator import CalibrationCache, PinnedBatcher, make_calibrator, preprocessing_record
    from runtimes.hashing import sha256_file
    from runtimes.preprocess import Preprocessor

    if calibration is None or calib_cache is None:
        raise ValueError("the implicit INT8 route needs a calibration set and a cache path")
    record = {"model_sha256": sha256_file(onnx), "preprocessing": preprocessing_record(meta),
              "images": calibration.record(), "algorithm": options.calib_algorithm,
              "batch_size": batch, "tensorrt_version": tensorrt_version}
    cache = CalibrationCache(calib_cache, record)
    table = cache.load()
    stream = CalibrationStream(calibration, Preprocessor(meta), batch_size=batch, drop_last=True)
    batcher = PinnedBatcher(stream, cuda.pagelocked_empty)
    return make_calibrator(cuda, batcher, cache, options.calib_algorithm, table=table,
                           progress=progress_line("calibrating", "batches"))
