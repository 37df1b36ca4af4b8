"""ONNX graph work shared by the export steps: simplify, check, carry metadata, save atomically."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import onnx

from runtimes.atomic import atomic_outputs
from runtimes.errors import UserError
from runtimes.metadata import METADATA_KEY, ModelMetadata

# TensorRT 8.5 (JetPack 5) parses opsets up to 17; newer TensorRT reads it too.
DEFAULT_OPSET = 17


def load_onnx(path: Path) -> onnx.ModelProto:
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: no such ONNX file")
    try:
        return onnx.load(str(path))
    except Exception as exc:  # protobuf's DecodeError and friends
        raise UserError(f"{path}: not a readable ONNX file ({type(exc).__name__}); re-export it") from None


def read_metadata(model: onnx.ModelProto, origin: str) -> Optional[ModelMetadata]:
    for prop in model.metadata_props:
        if prop.key == METADATA_KEY:
            return ModelMetadata.from_json(prop.value, origin)
    return None


def require_metadata(path: Path) -> ModelMetadata:
    """The SSD metadata of the ONNX file at ``path``; UserError when it has none."""
    meta = read_metadata(load_onnx(path), str(path))
    if meta is None:
        raise UserError(f"{path}: no SSD metadata; convert it first with export/export_onnx.py --onnx-in")
    return meta


def write_metadata(model: onnx.ModelProto, meta: ModelMetadata) -> None:
    meta.validate()
    for prop in list(model.metadata_props):
        if prop.key == METADATA_KEY:
            model.metadata_props.remove(prop)
    entry = model.metadata_props.add()
    entry.key, entry.value = METADATA_KEY, meta.to_json()


def simplify(model: onnx.ModelProto) -> onnx.ModelProto:
    """onnx-simplifier (constant folding, shape inference) with its own output check; the input returned
    unchanged if onnxsim is missing or refuses, with a note."""
    try:
        import onnxsim
    except ImportError:
        print("note: onnxsim is not installed; the model is not simplified (pip install onnxsim)")
        return model
    try:
        simplified, ok = onnxsim.simplify(model)
    except Exception as exc:  # onnxsim raises plain RuntimeErrors from C++
        print(f"note: onnx-simplifier failed ({str(exc).splitlines()[0][:120]}); keeping the unsimplified model")
        return model
    if not ok:
        print("note: onnx-simplifier's check failed; keeping the unsimplified model")
        return model
    return simplified


def save_checked(model: onnx.ModelProto, output: Path, checked: Optional[onnx.ModelProto] = None) -> None:
    """Run the ONNX checker on ``checked`` (default: ``model`` itself), then write ``model`` atomically."""
    try:
        onnx.checker.check_model(model if checked is None else checked, full_check=True)
    except onnx.checker.ValidationError as exc:
        raise UserError(f"the ONNX model fails the checker: {str(exc).splitlines()[0]}") from None
    with atomic_outputs(output) as (temp,):
        onnx.save(model, str(temp))
