"""Serve a model file through Triton (PyTriton's ``tritonserver`` and its Python backend) with dynamic batching.

Triton receives requests over KServe v2 HTTP and gRPC, batches them (``max_batch``, ``queue_delay_us``) and
hands each batch to :class:`NetworkCall`, which runs the toolkit's runner (ONNX Runtime for ``.onnx``,
OpenVINO for ``.xml``) on it. The model is bound with the name, tensor names and ``ssd_edge.metadata``
parameter of the model repository ``export/triton_repo.py`` writes (both read what a served model is from
``runtimes/served_model.py``), and takes the same tensor (the metadata's ``input`` contract): pre- and
post-processing stay on the client (``runtimes/kserve_runner.py``).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence

import numpy as np

from runtimes.errors import UserError
from runtimes.served_model import NUMPY_TYPES, PARAMETER_KEY, ServedModel, describe


@dataclass
class ServeOptions:
    """How a model is served. ``host`` 127.0.0.1 keeps it on this machine; ``max_batch`` images per network
    call (Triton's ``max_batch_size``); ``dynamic_batching`` lets Triton join requests that arrive within
    ``queue_delay_us`` microseconds (``preferred_batch_sizes``: sizes it aims for); ``metadata_parameter``
    False serves without the metadata parameter, as a hand-written configuration would."""

    name: Optional[str] = None
    host: str = "127.0.0.1"
    http_port: int = 8000
    grpc_port: int = 8001
    max_batch: int = 8
    dynamic_batching: bool = True
    queue_delay_us: int = 100
    preferred_batch_sizes: Sequence[int] = field(default_factory=tuple)
    runtime: Optional[str] = None
    metadata_parameter: bool = True


class NetworkCall:
    """The network call Triton runs: ``{input name: (B, ...) array}`` in the served model's input contract ->
    ``{output name: (B, ...) array}``, through ``detector.infer`` in chunks of ``detector.max_batch``.

    The served contract is the model file's (its metadata's ``input``); a runner that compiles the graph for
    another channel order (OpenVINO takes BGR) gets the channels reversed here, one copy of the batch.
    """

    def __init__(self, served: ServedModel, detector: Any) -> None:
        self.served, self.detector = served, detector
        wire, own = served.meta.inputs, detector.preprocessor.spec
        def contract(spec: Any) -> Any:
            return spec.layout, spec.normalisation_in_graph, spec.dtype

        if contract(wire) != contract(own):
            raise UserError(f"{served.path}: the {detector.backend} runner takes {own.layout} "
                            f"{'pixels' if own.normalisation_in_graph else 'normalised'} input, the file's graph "
                            f"{wire.layout} {'pixels' if wire.normalisation_in_graph else 'normalised'}: serve "
                            "an .onnx with onnxruntime and an .xml with openvino")
        self.channel_axis: Optional[int] = None
        if wire.channel_order != own.channel_order:
            self.channel_axis = 3 if wire.layout == "NHWC" else 1
        self.input_name = served.inputs[0].name
        self.outputs = [(t.name, np.dtype(NUMPY_TYPES[t.data_type])) for t in served.outputs]

    def __call__(self, batch: np.ndarray) -> Dict[str, np.ndarray]:
        if self.channel_axis is not None:
            batch = np.flip(batch, axis=self.channel_axis)
        batch = np.ascontiguousarray(batch, dtype=np.float32)
        parts: Dict[str, List[np.ndarray]] = {name: [] for name, _ in self.outputs}
        step = self.detector.max_batch
        for start in range(0, batch.shape[0], step):
            chunk = batch[start:start + step]
            result = self.detector.infer(chunk)
            for name, _ in self.outputs:
                parts[name].append(np.asarray(result[name])[:chunk.shape[0]])  # a fixed batch may pad
        return {name: np.concatenate(parts[name]).astype(dtype, copy=False) for name, dtype in self.outputs}


def runner_options(served: ServedModel, max_batch: int) -> Dict[str, Any]:
    """The runner's ``max_batch``: the served batch where the runner can take it (a dynamic axis, or an IR,
    which OpenVINO reshapes), else the file's own batch."""
    if served.meta.nms_in_model:
        return {}
    if served.graph_batch is None or served.kind == "openvino":
        return {"max_batch": max_batch}
    return {}


def urls(options: ServeOptions, name: str) -> List[str]:
    return [f"http://{options.host}:{options.http_port}/{name}", f"grpc://{options.host}:{options.grpc_port}/{name}"]


def _import_pytriton() -> Any:
    try:
        import pytriton.triton as triton_module
    except ImportError:
        raise UserError("PyTriton is not installed in this environment: create the server environment with "
                        "bash .ci/triton_env.sh and run .cache/triton-venv/bin/python apps/serve.py") from None
    return triton_module


def serve(model_path: "str | Path", options: ServeOptions, on_ready: Callable[[List[str]], None] = print,
          stop: Optional[threading.Event] = None) -> None:
    """Serve ``model_path`` until ``stop`` is set (or the process is interrupted); ``on_ready(urls)`` once
    the model answers."""
    from runtimes.loader import load_detector

    triton_module = _import_pytriton()
    from pytriton.decorators import batch
    from pytriton.model_config import DynamicBatcher, ModelConfig, Tensor

    if options.max_batch < 1:
        raise UserError(f"--max-batch must be at least 1, got {options.max_batch}")
    served = describe(model_path)
    name = options.name or Path(model_path).stem
    detector = load_detector(str(model_path), options.runtime, **runner_options(served, options.max_batch))
    call = NetworkCall(served, detector)

    @batch
    def infer(**inputs: np.ndarray) -> Dict[str, np.ndarray]:
        return call(inputs[call.input_name])

    batcher = None
    if options.dynamic_batching:
        batcher = DynamicBatcher(max_queue_delay_microseconds=options.queue_delay_us,
                                 preferred_batch_size=list(options.preferred_batch_sizes) or None)
    config = triton_module.TritonConfig(http_address=options.host, http_port=options.http_port,
                                        grpc_address=options.host, grpc_port=options.grpc_port,
                                        allow_metrics=False, allow_sagemaker=False, allow_vertex_ai=False)
    # PyTriton restricts the repository (load/unload: code upload), shared-memory, statistics, trace and
    # logging APIs to a token of its own; statistics is read-only and the one API that lists the served
    # models, which a client names when asked for a model the server does not have.
    restricted = [e for e in triton_module.DEFAULT_PROTECTED_ENDPOINTS if e != "statistics"]
    triton = triton_module.Triton(config=config,
                                  security_config=triton_module.TritonSecurityConfig(restricted_endpoints=restricted))
    try:
        triton.bind(model_name=name, infer_func=infer,
                    inputs=[Tensor(name=t.name, dtype=np.dtype(NUMPY_TYPES[t.data_type]), shape=tuple(t.dims[1:]))
                            for t in served.inputs],
                    outputs=[Tensor(name=t.name, dtype=np.dtype(NUMPY_TYPES[t.data_type]), shape=tuple(t.dims[1:]))
                             for t in served.outputs],
                    config=ModelConfig(batching=True, max_batch_size=options.max_batch, batcher=batcher))
        if options.metadata_parameter:
            _add_parameter(triton, name, PARAMETER_KEY, served.metadata_json)
        triton.run()
        on_ready(urls(options, name))
        (stop or threading.Event()).wait()
    finally:
        triton.stop()
        detector.close()


def _add_parameter(triton: Any, name: str, key: str, value: str) -> None:
    """Put ``key: value`` into the bound model's ``parameters``. PyTriton's public API has no custom model
    parameters; its model object builds the config once (``_get_triton_model_config``, cached) from
    ``backend_parameters``, which it writes into ``parameters``: add ours there before the server starts.
    Checked against nvidia-pytriton 0.7.0 (.ci/triton_env.sh pins it)."""
    models = [m for m in getattr(getattr(triton, "_model_manager", None), "models", ()) if m.model_name == name]
    config = models[0]._get_triton_model_config() if models else None
    if config is None or not isinstance(getattr(config, "backend_parameters", None), dict):
        raise UserError("this nvidia-pytriton version has another model-config internal; install the pinned one "
                        "with bash .ci/triton_env.sh")
    config.backend_parameters[key] = value
