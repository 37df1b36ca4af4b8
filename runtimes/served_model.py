"""What a served model is: a model file's tensors, batch and metadata as a server offers them.

One definition for both sides of serving: the Triton model repository (``export/triton_repo.py`` writes its
``config.pbtxt`` from it) and the server (``serving/pytriton_server.py`` binds the same names, types and
metadata parameter), so a client (``runtimes/kserve_runner.py``) cannot tell the two apart. It stays light:
the server's own environment (``.ci/triton_env.sh``: numpy < 2, onnx, onnxruntime, openvino) imports it, and
each format's reader imports its library only when that format is described.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, List, Optional

from runtimes.errors import UserError
from runtimes.metadata import DECODED_OUTPUTS, INPUT_NAME, METADATA_KEY, NMS_OUTPUTS, RAW_OUTPUTS, ModelMetadata

PARAMETER_KEY = METADATA_KEY  # the served model's configuration parameter holding the ModelMetadata JSON

# Triton's data types by ONNX TensorProto element type and by OpenVINO element type name, and as numpy types.
_ONNX_TYPES = {1: "TYPE_FP32", 10: "TYPE_FP16", 6: "TYPE_INT32", 7: "TYPE_INT64", 2: "TYPE_UINT8", 9: "TYPE_BOOL"}
_OV_TYPES = {"f32": "TYPE_FP32", "f16": "TYPE_FP16", "i32": "TYPE_INT32", "i64": "TYPE_INT64", "u8": "TYPE_UINT8",
             "boolean": "TYPE_BOOL"}
NUMPY_TYPES = {"TYPE_FP32": "float32", "TYPE_FP16": "float16", "TYPE_INT32": "int32", "TYPE_INT64": "int64",
               "TYPE_UINT8": "uint8", "TYPE_BOOL": "bool"}


@dataclass
class TensorSpec:
    """One graph input or output: its name, Triton data type (``TYPE_FP32``...) and full dims, batch axis
    first, -1 where the graph leaves a size open."""

    name: str
    data_type: str
    dims: List[int]


@dataclass
class ServedModel:
    """What a model file offers a server: its kind, the metadata the served graph's input matches, its
    tensors and its graph batch (an int, or None for a dynamic batch axis)."""

    path: Path
    kind: str  # "onnx" | "openvino" | "tensorrt"
    meta: ModelMetadata
    inputs: List[TensorSpec]
    outputs: List[TensorSpec]
    graph_batch: Optional[int]
    max_batch_limit: Optional[int] = None  # a TensorRT profile's largest batch

    @property
    def metadata_json(self) -> str:
        return self.meta.to_json()


def describe(path: "str | Path") -> ServedModel:
    """The :class:`ServedModel` of an ``.onnx``, OpenVINO ``.xml`` or TensorRT ``.engine``/``.plan`` (with its
    record) written by this toolkit."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: no such model file; build one with python export/build_engine.py")
    suffix = path.suffix.lower()
    if suffix == ".onnx":
        return _describe_onnx(path)
    if suffix == ".xml":
        return _describe_ir(path)
    if suffix in (".engine", ".plan"):
        return _describe_plan(path)
    raise UserError(f"{path}: a Triton repository takes .onnx, OpenVINO .xml or TensorRT .engine/.plan files, "
                    f"not '{suffix}'")


def _graph_batch(dims: List[int]) -> Optional[int]:
    return dims[0] if dims and dims[0] > 0 else None


def _describe_onnx(path: Path) -> ServedModel:
    try:
        import onnx
    except ImportError:
        raise UserError("reading an ONNX file's tensors needs the onnx package: pip install onnx") from None
    from runtimes.metadata_io import from_onnx_props

    try:
        model = onnx.load(str(path))
    except Exception as exc:  # protobuf's DecodeError and friends
        raise UserError(f"{path}: not a readable ONNX file ({type(exc).__name__}); re-export it") from None
    meta = from_onnx_props({p.key: p.value for p in model.metadata_props}, str(path))
    initializers = {t.name for t in model.graph.initializer}

    def spec(value: Any) -> TensorSpec:
        kind = value.type.tensor_type
        dims = [d.dim_value if d.HasField("dim_value") and d.dim_value > 0 else -1 for d in kind.shape.dim]
        if kind.elem_type not in _ONNX_TYPES:
            raise UserError(f"{path}: tensor {value.name} has an element type ({kind.elem_type}) Triton's "
                            "configuration here does not cover; re-export it with export/export_onnx.py")
        return TensorSpec(value.name, _ONNX_TYPES[kind.elem_type], dims)

    inputs = [spec(v) for v in model.graph.input if v.name not in initializers]
    outputs = [spec(v) for v in model.graph.output]
    return ServedModel(path, "onnx", meta, inputs, outputs, _graph_batch(inputs[0].dims))


def _describe_ir(path: Path) -> ServedModel:
    try:
        import openvino as ov
    except ImportError:
        raise UserError("reading an OpenVINO IR needs OpenVINO: pip install openvino") from None
    from runtimes.openvino_runner import port_name, read_metadata

    if not path.with_suffix(".bin").is_file():
        raise UserError(f"{path}: its weights {path.with_suffix('.bin').name} are missing beside it")
    model = ov.Core().read_model(str(path))
    meta = read_metadata(model, str(path))

    def spec(port: Any) -> TensorSpec:
        type_name = port.get_element_type().get_type_name()
        if type_name not in _OV_TYPES:
            raise UserError(f"{path}: tensor {port_name(port)} has element type {type_name}, which this "
                            "configuration does not cover; rebuild it with export/build_engine.py")
        dims = [d.get_length() if d.is_static else -1 for d in port.get_partial_shape()]
        return TensorSpec(port_name(port), _OV_TYPES[type_name], dims)

    inputs, outputs = [spec(p) for p in model.inputs], [spec(p) for p in model.outputs]
    # meta.input already says what the IR takes (NHWC resized pixels in the model's channel order, normalised
    # inside the graph; export/openvino_build.py): the client reads it as is.
    return ServedModel(path, "openvino", meta, inputs, outputs, _graph_batch(inputs[0].dims))


def _describe_plan(path: Path) -> ServedModel:
    """A plan's tensors from its engine record: the toolkit's input and its output format's outputs."""
    from runtimes.anchors import count
    from runtimes.tensorrt_engine_file import read_engine

    _, record = read_engine(path)
    meta = record.metadata
    profile = record.build.get("batch_profile")
    spec = meta.inputs
    batch: Optional[int] = None if profile else (spec.batch or 1)
    b = -1 if batch is None else batch
    image = [3, meta.input_height, meta.input_width] if spec.layout == "NCHW" else \
        [meta.input_height, meta.input_width, 3]
    inputs = [TensorSpec(INPUT_NAME, "TYPE_FP32", [b] + image)]
    if meta.output_format == "nms":
        k = meta.max_detections
        outputs = [TensorSpec(NMS_OUTPUTS[0], "TYPE_INT32", [b, 1]), TensorSpec(NMS_OUTPUTS[1], "TYPE_FP32", [b, k, 4]),
                   TensorSpec(NMS_OUTPUTS[2], "TYPE_FP32", [b, k]), TensorSpec(NMS_OUTPUTS[3], "TYPE_INT32", [b, k])]
    else:
        if meta.anchors is None:
            raise UserError(f"{path}: its record has no anchor configuration; rebuild the engine")
        names = RAW_OUTPUTS if meta.output_format == "raw" else DECODED_OUTPUTS
        n = count(meta.anchors)
        outputs = [TensorSpec(names[0], "TYPE_FP32", [b, n, 4]),
                   TensorSpec(names[1], "TYPE_FP32", [b, n, meta.num_classes])]
    return ServedModel(path, "tensorrt", meta, inputs, outputs, batch,
                       max_batch_limit=int(profile[2]) if profile else None)
