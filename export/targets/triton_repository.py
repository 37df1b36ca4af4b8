"""``--target triton``: a Triton model repository (export/triton_repo.py) in the output folder, serving a
built engine or IR, an ONNX, or the checkpoint (or demo) model exported with a dynamic batch axis so that
Triton can batch requests."""

from __future__ import annotations

import dataclasses
import tempfile
from pathlib import Path
from typing import Callable

from export.build_request import BuildRequest, BuildResult


def build_triton_repository(request: BuildRequest, output_dir: Path, log: Callable[[str], None]) -> BuildResult:
    from export.build_inputs import resolve_source
    from export.triton_repo import server_commands, write_repository
    from runtimes.served_model import describe

    with tempfile.TemporaryDirectory(prefix="ssd-edge-triton-") as scratch:
        if request.source.built_model is not None:
            path = Path(request.source.built_model)
            stem = path.stem
        else:
            source = resolve_source(request.source, Path(scratch), dynamic_batch=True, log=log)
            path, stem = source.onnx, source.stem
        model = describe(path)
        name = request.triton.name or stem
        options = dataclasses.replace(request.triton, name=name)
        written = write_repository(model, output_dir, options, ovms=request.ovms)
    log(f"wrote the Triton model {name} ({model.kind}): {written.config} and {written.model_files[0]}"
        + (f"; OpenVINO Model Server config: {written.ovms_config}" if written.ovms_config else ""))
    log("serve it with:\n  " + "\n  ".join(server_commands(written)))
    log(f"clients: load_detector('http://HOST:8000/{name}') or 'grpc://HOST:8001/{name}'")
    files = [written.config, *written.model_files] + ([written.ovms_config] if written.ovms_config else [])
    return BuildResult(written.folder, files, model.meta, True, "triton")

