"""The embedded demo model: where it lives and how it becomes an ONNX file.

``demo/ssdlite320_shapes.safetensors`` is an SSDLite320-MobileNetV3 trained by ``demo/train_demo.py`` on the
synthetic shapes data set (:mod:`calibration.synthetic`); ``demo/MODEL.md`` says how and how well.
"""

from __future__ import annotations

from pathlib import Path

from calibration.synthetic import SHAPE_CLASSES, default_cache_dir
from runtimes.errors import UserError

ROOT = Path(__file__).resolve().parents[1]
DEMO_ARCH = "ssdlite320_mobilenet_v3_large"
DEMO_CHECKPOINT = ROOT / "demo" / "ssdlite320_shapes.safetensors"
DEMO_CLASSES = ROOT / "demo" / "classes.txt"
DEMO_NUM_CLASSES = len(SHAPE_CLASSES) + 1


def demo_onnx(verbose: bool = True, dynamic_batch: bool = False) -> Path:
    """The demo checkpoint exported to ONNX in the cache (re-exported when the checkpoint changes), with a
    static batch of 1 or (``dynamic_batch``) a dynamic batch axis."""
    from export.export_onnx import export_checkpoint
    from export.onnx_model import load_onnx, read_metadata
    from runtimes.hashing import sha256_file

    if not DEMO_CHECKPOINT.is_file():
        raise UserError(f"{DEMO_CHECKPOINT}: the demo checkpoint is missing from this checkout; "
                        "restore it with git checkout, or pass --checkpoint/--onnx")
    out = default_cache_dir() / "demo" / f"ssdlite320_shapes{'_dynamic' if dynamic_batch else ''}.onnx"
    if out.is_file():
        meta = read_metadata(load_onnx(out), str(out))
        if meta is not None and meta.checkpoint_sha256 == sha256_file(DEMO_CHECKPOINT):
            return out
    out.parent.mkdir(parents=True, exist_ok=True)
    if verbose:
        print(f"exporting the demo model {DEMO_CHECKPOINT.name} -> {out}", flush=True)
    export_checkpoint(DEMO_CHECKPOINT, DEMO_ARCH, out, DEMO_NUM_CLASSES, DEMO_CLASSES, dynamic_batch=dynamic_batch)
    return out
