"""What a KServe detector learns from the server before its first request: the model's configuration and
its metadata, with one line naming the fix when either is missing.

The metadata comes from the configuration's ``ssd_edge.metadata`` parameter (written by
``export/build_engine.py --target triton`` and ``apps/serve.py``), or from ``metadata=`` (the repository's
``metadata.json`` or the served ``.onnx``) for servers whose configuration cannot carry it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

from runtimes.errors import UserError
from runtimes.kserve_address import Endpoint
from runtimes.kserve_clients import ClientPool
from runtimes.kserve_config import ModelConfig
from runtimes.kserve_failures import ConnectionFailure, ServerStatus, ServingError
from runtimes.kserve_retry import RetryPolicy
from runtimes.metadata import METADATA_KEY, ModelMetadata


def fetch_model_config(pool: ClientPool, policy: RetryPolicy) -> ModelConfig:
    """The model's configuration (attempts as ``policy`` allows); a server that cannot be reached, does
    not serve the model or cannot describe it is a :class:`UserError` saying which."""
    endpoint = pool.endpoint

    def attempt() -> object:
        with pool.lent() as client:
            return client.config()

    try:
        raw = policy.run(attempt, serving=False)
    except ServingError as exc:
        cause = exc.__cause__
        if isinstance(cause, ConnectionFailure):
            raise UserError(f"{endpoint.url}: cannot reach a KServe server at {endpoint.address} ({cause}); start "
                            "one (python apps/serve.py --model M) or check the URL") from None
        if isinstance(cause, ServerStatus):
            if not cause.server_fault and any(w in cause.text.lower() for w in ("unknown model", "not found")):
                raise UserError(unknown_model(pool)) from None
            raise UserError(f"{endpoint.url}: the server cannot describe model '{endpoint.model}' ({cause}); KServe "
                            "servers without Triton's model-config API need metadata=FILE") from None
        raise  # malformed or too large: the one line already
    config = ModelConfig.parse(raw, endpoint.url)
    if config.input.datatype != "FP32":
        raise UserError(f"{endpoint.url}: the served model takes {config.input.datatype} input, the toolkit sends "
                        "FP32 (the float32 input its metadata describes); serve the model this toolkit exported")
    return config


def unknown_model(pool: ClientPool) -> str:
    endpoint = pool.endpoint
    with pool.lent() as client:
        names = client.models()
    if names is None:
        listing = "it does not list its models to clients"
    else:
        example = f" (e.g. {endpoint.scheme}{endpoint.address}/{names[0]})" if names else ""
        listing = "it serves " + ", ".join(names) + example
    return f"{endpoint.url}: the server has no model '{endpoint.model}'; {listing}"


def model_metadata(endpoint: Endpoint, config: ModelConfig, metadata: "str | Path | None") -> ModelMetadata:
    """The metadata ``metadata=`` names, else the configuration's parameter."""
    if metadata is not None:
        return metadata_file(Path(metadata))
    text: Optional[str] = config.parameters.get(METADATA_KEY)
    if not text:
        raise UserError(
            f"{endpoint.url}: the server's configuration of '{endpoint.model}' has no {METADATA_KEY} "
            f"parameter; add parameters {{ key: \"{METADATA_KEY}\" value {{ string_value: \"<the model's "
            "metadata JSON>\" }} to its config.pbtxt (python export/build_engine.py --target triton writes "
            "it), or pass metadata= the repository's metadata.json or the served .onnx")
    return ModelMetadata.from_json(text, f"{endpoint.url} (parameter {METADATA_KEY})")


def metadata_file(path: Path) -> ModelMetadata:
    if not path.is_file():
        raise UserError(f"{path}: no such metadata file (pass the repository's metadata.json or the served .onnx)")
    if path.suffix.lower() == ".json":
        return ModelMetadata.from_json(path.read_text(encoding="utf-8", errors="replace"), str(path))
    if path.suffix.lower() == ".onnx":
        from runtimes.metadata_io import onnx_file_metadata

        return onnx_file_metadata(path)
    raise UserError(f"{path}: metadata= takes a metadata.json or an .onnx file")
