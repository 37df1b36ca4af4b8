"""A runtime from outside runtimes/, for the registry tests: ``toy://NAME`` opens the demo model (``toy://demo``)
on ONNX Runtime under another name, the way a third-party package would add a runtime (entry point
``ssd_edge.runtimes``: see tests/test_runtime_interface.py)."""

from __future__ import annotations

from typing import Any

from runtimes.errors import UserError
from runtimes.loader import Runtime
from runtimes.onnxruntime_runner import OnnxRuntimeDetector


class ToyDetector(OnnxRuntimeDetector):
    backend = "toy"


def open_toy(location: str, **options: Any) -> ToyDetector:
    from export.demo_model import demo_onnx

    name = location.split("://", 1)[1]
    if name != "demo":
        raise UserError(f"{location}: the toy runtime knows only toy://demo")
    return ToyDetector(str(demo_onnx(verbose=False)), **options)


RUNTIME = Runtime("toy", ("toy://",), open_toy)
