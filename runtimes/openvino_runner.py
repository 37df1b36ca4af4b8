"""OpenVINO: the CPU deployment runtime (also GPU/NPU by device name).

The normalisation is folded into the compiled graph with OpenVINO's PrePostProcessor: the host only
resizes the BGR frame (the shared :class:`Preprocessor`'s resize) and hands the NHWC tensor over; the graph
reorders the channels, subtracts the mean, divides by the std and transposes to NCHW, the same arithmetic
as the shared preprocessing. That saves the host a channel swap, a normalised copy and a transpose, and
lets OpenVINO fuse the arithmetic into the first convolution. IRs built by export/build_engine.py carry the
normalisation from the build on (so INT8 calibration sees the deployed graph) and take pixels in the
model's channel order, as their metadata's ``input`` says; the runner adds the channel swap when it compiles
them. For ONNX files both are added at load time. Batches: the input's batch axis is reshaped to take up to
``max_batch`` images. Requests in flight go through an ``AsyncInferQueue`` (:class:`OpenVINORequests`).
"""

from __future__ import annotations

from typing import Any, Dict, Optional

import numpy as np

from runtimes.detector import Detector, batch_capacity, pad_batch
from runtimes.errors import UserError
from runtimes.loader import Runtime
from runtimes.metadata import DECODED_OUTPUTS, INPUT_NAME, NMS_OUTPUTS, RAW_OUTPUTS, InputSpec, ModelMetadata
from runtimes.metadata_io import check_ir_weights, ir_metadata, onnx_file_metadata
from runtimes.preprocess import Preprocessor
from runtimes.requests import Requests

HINTS = {"latency": "LATENCY", "throughput": "THROUGHPUT", "cumulative_throughput": "CUMULATIVE_THROUGHPUT"}


def _import_openvino():
    try:
        import openvino as ov
    except ImportError:
        raise UserError("OpenVINO is not installed: pip install openvino") from None
    return ov


def read_metadata(model: Any, path: str) -> ModelMetadata:
    """The SSD metadata of an OpenVINO model: an IR's ``rt_info`` (its ``.bin`` checked against it), or an
    ONNX file's ``metadata_props``."""
    if path.lower().endswith(".onnx"):
        return onnx_file_metadata(path)
    meta = ir_metadata(model, path)
    check_ir_weights(model, path, meta)
    return meta


def port_name(port: Any) -> str:
    """The toolkit's name for an OpenVINO model's input or output port; OpenVINO may merge a Cast's name into
    the set (FP16 ONNX)."""
    names = port.get_names()
    known = names & set(RAW_OUTPUTS + DECODED_OUTPUTS + NMS_OUTPUTS + (INPUT_NAME,))
    return sorted(known)[0] if known else port.get_any_name()


def fold_normalisation(model: Any, meta: ModelMetadata) -> Any:
    """``model`` taking (N, H, W, 3) float32 resized pixels in the model's channel order (the shared
    preprocessing's ``resize``) and doing ``(x - mean) / std`` and the NHWC -> NCHW transpose inside the
    graph."""
    ov = _import_openvino()
    from openvino.preprocess import PrePostProcessor

    ppp = PrePostProcessor(model)
    ppp.input().tensor().set_element_type(ov.Type.f32).set_layout(ov.Layout("NHWC"))
    ppp.input().model().set_layout(ov.Layout("NCHW"))
    ppp.input().preprocess().mean(list(meta.mean)).scale(list(meta.std))
    return ppp.build()


def take_bgr(model: Any, meta: ModelMetadata) -> Any:
    """``model`` (taking NHWC pixels, as :func:`fold_normalisation` leaves it) taking them BGR, as OpenCV
    delivers frames (the shared preprocessing's ``resize_bgr``). On the host the swap is a copy of the
    frame; in the graph it is a gather that timed the same as none, and the outputs are bit-identical
    (INT8) or within 1e-4 (FP32: another summation order). Added when the model is compiled, not built
    into the IR: quantizing a graph with the swap inside moved the demo model's INT8 statistics by float
    rounding (docs/benchmark/openvino_latency.md has the figures)."""
    if meta.channel_order == "BGR":
        return model
    ov = _import_openvino()
    from openvino.preprocess import PrePostProcessor

    ppp = PrePostProcessor(model)
    ppp.input().tensor().set_layout(ov.Layout("NHWC"))
    ppp.input().preprocess().reverse_channels()
    return ppp.build()


class OpenVINODetector(Detector):
    """Runs an OpenVINO IR (``.xml`` + ``.bin``) or an ``.onnx`` file with OpenVINO.

    Args:
        device: "CPU" (default), "GPU", "NPU", "AUTO", ... passed through to OpenVINO.
        hint: "latency" (default; one request at a time) or "throughput" (several requests in flight infer
            in parallel, one CPU stream each).
        cache_dir: OpenVINO's compiled-model cache folder (faster second start); None disables it.
        fold_preprocessing: swap channels and normalise inside the graph (default True); False feeds the shared
            preprocessing's float32 NCHW tensor instead (ONNX files only: IRs built by the toolkit carry
            the normalisation in their graph already).
        threads: CPU inference threads (default: OpenVINO's choice).
        inference_precision: "f32" (default) computes an FP32 IR in FP32; None leaves OpenVINO's own default,
            which is bf16 on CPUs with AVX512-BF16/AMX (faster, but no longer the FP32 model's numbers).
        max_batch: images per network call for a dynamic-batch file (default 8); a static-batch file takes its
            own batch. Models with NMS inside take one image a call.
        static_batch: compile a dynamic-batch file for exactly ``max_batch`` images (a call with fewer is
            padded to it) instead of 1..``max_batch``: batches through a bounded dynamic axis ran slower
            than a static one on a CPU (docs/multistream.md, "Batching").
    """

    backend = "openvino"

    def __init__(self, path: str, *, device: str = "CPU", hint: str = "latency", cache_dir: Optional[str] = None,
                 fold_preprocessing: bool = True, threads: Optional[int] = None,
                 inference_precision: Optional[str] = "f32", max_batch: Optional[int] = None,
                 static_batch: bool = False, **thresholds: Any) -> None:
        ov = _import_openvino()
        if hint not in HINTS:
            raise UserError(f"unknown performance hint '{hint}': choose one of {', '.join(HINTS)}")
        self.core = ov.Core()
        try:
            model = self.core.read_model(path)
        except RuntimeError as exc:
            raise UserError(f"{path}: OpenVINO cannot read it ({str(exc).strip().splitlines()[0][:160]}); "
                            "rebuild it with python export/build_engine.py --target openvino") from None
        super().__init__(read_metadata(model, path), path, **thresholds)
        baked = self.meta.inputs.normalisation_in_graph
        if baked and not fold_preprocessing:
            raise UserError(f"{path}: this IR normalises inside its graph (built so that INT8 calibration saw "
                            "the deployed graph); fold_preprocessing=False needs the ONNX file instead")
        self.pad_to: Optional[int] = None  # a static batch compiled from a dynamic axis: calls padded to it
        self.max_batch = self._batch_axis(model, max_batch, path, static_batch)
        self.folded = fold_preprocessing
        if fold_preprocessing:
            model = take_bgr(model if baked else fold_normalisation(model, self.meta), self.meta)
            # What the compiled graph takes: resized BGR pixels, NHWC; it normalises them itself.
            self.preprocessor = Preprocessor(self.meta, InputSpec(layout="NHWC", channel_order="BGR",
                                                                  normalisation_in_graph=True))
        config: Dict[str, Any] = {"PERFORMANCE_HINT": HINTS[hint]}
        if inference_precision and device.upper().startswith("CPU"):
            config["INFERENCE_PRECISION_HINT"] = inference_precision
        self.inference_precision = inference_precision
        if threads:
            config["INFERENCE_NUM_THREADS"] = int(threads)
        if cache_dir:
            self.core.set_property({"CACHE_DIR": str(cache_dir)})
        try:
            self.compiled = self.core.compile_model(model, device, config)
        except RuntimeError as exc:
            available = ", ".join(self.core.available_devices)
            raise UserError(f"OpenVINO cannot compile {path} for '{device}' ({str(exc).strip().splitlines()[0][:120]});"
                            f" available devices: {available}") from None
        self._device = device
        self.output_names = [port_name(o) for o in self.compiled.outputs]
        self.request = self.compiled.create_infer_request()

    @classmethod
    def from_compiled(cls, compiled: Any, meta: ModelMetadata, **thresholds: Any) -> "OpenVINODetector":
        """A detector over a model compiled elsewhere (NNCF's validation hands one over), fed what
        ``meta.input`` says its graph takes."""
        self = cls.__new__(cls)
        Detector.__init__(self, meta, "<in memory>", **thresholds)
        self.compiled, self.folded, self._device, self.inference_precision = compiled, False, "CPU", None
        self.pad_to = None
        self.output_names = [port_name(o) for o in compiled.outputs]
        self.request = compiled.create_infer_request()
        return self

    def _batch_axis(self, model: Any, requested: Optional[int], path: str, static: bool = False) -> int:
        """Images per call: a static batch as it is; a dynamic batch axis bounded to 1..N (the CPU plugin
        plans for the bound), or exactly N with ``static``, for N = ``requested`` or the default. (A static
        graph cannot be reshaped to another batch: the export writes the batch into its Reshape constants.)"""
        ov = _import_openvino()
        shape = model.input(0).get_partial_shape()
        batch = shape[0].get_length() if shape[0].is_static else None
        if self.meta.nms_in_model and (requested not in (None, 1) or batch != 1):
            raise UserError(f"{path}: this model runs NMS inside (MulticlassNms), which takes one image a "
                            "call; rebuild it with --nms host for batches")
        capacity = batch_capacity(batch, requested, path)
        if batch is None:
            shape[0] = ov.Dimension(capacity) if static else ov.Dimension(1, capacity)
            model.reshape({model.input(0): shape})
            self.pad_to = capacity if static and capacity > 1 else None
        return capacity

    @property
    def device(self) -> str:
        return self._device if not self.inference_precision else f"{self._device} ({self.inference_precision})"

    @property
    def shares_cpu(self) -> bool:
        return self._device.upper().startswith(("CPU", "AUTO"))

    def close(self) -> None:
        # Release in dependency order (request, compiled model, core): left to interpreter shutdown, two
        # detectors in one process sometimes abort in OpenVINO's thread-pool teardown.
        for name in ("request", "compiled", "core"):
            if hasattr(self, name):
                delattr(self, name)

    def infer(self, batch: np.ndarray) -> Dict[str, np.ndarray]:
        # share_inputs: the request reads the caller's array in place (the call is synchronous, so the array
        # outlives it) instead of copying every frame first.
        # start_async + wait rather than InferRequest.infer, which also builds a dict holding a copy of every
        # output that nobody reads.
        if self.pad_to is not None:
            batch = pad_batch(batch, self.pad_to)
        self.request.start_async({0: np.ascontiguousarray(batch, dtype=np.float32)}, share_inputs=True)
        self.request.wait()
        return {name: self.request.get_output_tensor(i).data.copy() for i, name in enumerate(self.output_names)}

    def requests(self, depth: int = 1) -> Requests:
        return OpenVINORequests(self, depth)


class OpenVINORequests(Requests):
    """Requests in flight through an ``AsyncInferQueue`` of ``depth`` infer requests: while they infer, the
    caller prepares the next batch, and finished ones are post-processed on OpenVINO's callback thread.
    With the throughput hint each request gets a CPU stream of its own, so they also infer in parallel."""

    def __init__(self, detector: OpenVINODetector, depth: int) -> None:
        super().__init__(detector, depth)
        ov = _import_openvino()
        self.output_names = detector.output_names
        self.queue = ov.AsyncInferQueue(detector.compiled, self.depth)
        self.queue.set_callback(self._done)
        self._inputs: Dict[int, np.ndarray] = {}  # kept alive while OpenVINO reads them in place

    def _launch(self, seq: int, batch: np.ndarray) -> None:
        pad_to = self.detector.pad_to  # type: ignore[attr-defined]
        batch = np.ascontiguousarray(batch if pad_to is None else pad_batch(batch, pad_to), dtype=np.float32)
        self._inputs[seq] = batch
        self.queue.start_async({0: batch}, seq, share_inputs=True)

    def _done(self, request: Any, seq: int) -> None:
        self._inputs.pop(seq, None)
        try:
            outputs = {name: request.get_output_tensor(i).data for i, name in enumerate(self.output_names)}
        except BaseException as exc:  # OpenVINO reports a failed inference here; an exception must not vanish
            self._fail(seq, exc)
            return
        self._finish(seq, outputs)  # reads the outputs before the request is reused

    def _shutdown(self) -> None:
        self.queue.wait_all()


def _factory(location: str, **options: Any) -> OpenVINODetector:
    return OpenVINODetector(location, **options)


# Requests in flight infer in parallel only with the throughput hint (a CPU stream per request).
RUNTIME = Runtime("openvino", (".xml",), _factory, also_opens=(".onnx",), throughput_options={"hint": "throughput"},
                  static_batch_options={"static_batch": True})
