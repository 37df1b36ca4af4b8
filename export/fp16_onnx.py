"""FP16 as an ONNX model: what TensorRT 11 builds FP16 from, since it has no FP16 builder flag (strongly
typed networks run each layer in the type the model gives it).

onnxconverter-common's converter casts the weights and activations to float16 and keeps the model's
inputs and outputs float32 (``keep_io_types``), so the runners and the shared pre- and post-processing
are unchanged. Its accuracy is measured here on the CPU like the Q/DQ model's.
"""

from __future__ import annotations

import time
from pathlib import Path

from export.onnx_model import load_onnx, save_checked, write_metadata
from runtimes.errors import UserError
from runtimes.hashing import sha256_file
from runtimes.metadata import ModelMetadata


def build_fp16_onnx(source: Path, meta: ModelMetadata, output: Path) -> float:
    """Write the FP16 version of ``source`` (an exported FP32 ONNX) to ``output``; returns the seconds taken."""
    try:
        from onnxconverter_common import float16
    except ImportError:
        raise UserError("the FP16 ONNX model is made with onnxconverter-common: pip install onnxconverter-common "
                        "(on a desktop; copy the FP16 .onnx to the device)") from None
    start = time.monotonic()
    model = float16.convert_float_to_float16(load_onnx(source), keep_io_types=True)
    record = {"converter": "onnxconverter-common float16", "keep_io_types": True,
              "source_onnx_sha256": sha256_file(source)}
    write_metadata(model, meta.replace(precision="fp16", extra={**meta.extra, "fp16_onnx": record}))
    save_checked(model, output)
    return time.monotonic() - start
