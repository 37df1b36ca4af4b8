"""Reading the SSD metadata out of each container format, one function each: ONNX ``metadata_props``,
OpenVINO IR ``rt_info`` (TensorRT engines keep it in their record: runtimes/tensorrt_engine_file.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

from runtimes.errors import UserError
from runtimes.metadata import METADATA_KEY, ModelMetadata


def from_onnx_props(props: Mapping[str, str], origin: str) -> ModelMetadata:
    """The metadata in an ONNX file's ``metadata_props`` (as a key -> value map)."""
    if METADATA_KEY not in props:
        raise UserError(f"{origin}: no SSD metadata in this ONNX file; convert it first with "
                        f"python export/export_onnx.py --onnx-in {origin}")
    return ModelMetadata.from_json(props[METADATA_KEY], origin)


def onnx_session_metadata(session: Any, origin: str) -> ModelMetadata:
    """The metadata of the ONNX file an ``onnxruntime.InferenceSession`` loaded."""
    return from_onnx_props(session.get_modelmeta().custom_metadata_map, origin)


def onnx_file_metadata(path: "str | Path") -> ModelMetadata:
    """The metadata of the ONNX file at ``path``, read without its weights (needs the onnx package)."""
    try:
        import onnx
    except ImportError:
        raise UserError(f"{path}: reading an ONNX file's metadata needs the onnx package (pip install onnx), "
                        "or convert it to IR with export/build_engine.py") from None
    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as exc:  # protobuf's DecodeError and friends
        raise UserError(f"{path}: not a readable ONNX file ({type(exc).__name__}); re-export it") from None
    return from_onnx_props({p.key: p.value for p in model.metadata_props}, str(path))


def ir_metadata(model: Any, origin: str) -> ModelMetadata:
    """The metadata in an OpenVINO model's ``rt_info`` (an IR built by export/build_engine.py)."""
    if not model.has_rt_info([METADATA_KEY]):
        raise UserError(f"{origin}: no SSD metadata in this model; build it with python export/build_engine.py "
                        "--target openvino")
    return ModelMetadata.from_json(model.get_rt_info([METADATA_KEY]).astype(str), origin)


# An IR's .xml records the size and sha256 of its .bin under this rt_info key (export/openvino_build.save_ir).
WEIGHTS_KEY = "ssd_edge.weights"


def check_ir_weights(model: Any, xml: "str | Path", meta: ModelMetadata) -> None:
    """UserError unless the ``.bin`` beside ``xml`` is the one its ``.xml`` was saved with (a crash between
    the two renames of a rebuild, or a copy of only one of them, leaves a pair that does not belong
    together). IRs saved before the record existed are not checked."""
    if not model.has_rt_info([WEIGHTS_KEY]):
        return
    import json

    from runtimes.hashing import sha256_file

    bin_path = Path(xml).with_suffix(".bin")
    try:
        expected = json.loads(model.get_rt_info([WEIGHTS_KEY]).astype(str))
        size, digest = int(expected["size"]), str(expected["sha256"])
    except (ValueError, KeyError, TypeError):
        raise UserError(f"{xml}: its weights record is unreadable; {_rebuild_hint(meta)}") from None
    actual = bin_path.stat().st_size if bin_path.is_file() else -1
    if actual != size or sha256_file(bin_path) != digest:
        found = "missing" if actual < 0 else f"{actual} bytes with another content" if actual == size else \
            f"{actual} bytes, not {size}"
        raise UserError(f"{xml}: its {bin_path.name} is not the one it was saved with ({found}: an interrupted "
                        f"build or a partial copy); {_rebuild_hint(meta)}")


def _rebuild_hint(meta: ModelMetadata) -> str:
    flag = {"fp16": " --fp16", "int8": " --int8"}.get(meta.precision, "")
    nms = " --nms model" if meta.nms_in_model else ""
    return f"rebuild it with python export/build_engine.py --target openvino{flag}{nms}"
