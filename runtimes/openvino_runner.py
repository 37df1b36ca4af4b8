"""OpenVINO: the CPU deployment runtime (also GPU/NPU by device name).

The normalisation is folded into the compiled graph with OpenVINO's PrePostProcessor: the host only
resizes the BGR frame (the shared :class:`Preprocessor`'s resize) and hands the NHWC tensor over; the graph
reorders the channels, subtracts the mean, divides by the std and transposes to NCHW, the same arithmetic
as the shared preprocessing. That saves the host a channel swap, a normalised copy and a transpose, and
lets OpenVINO fuse the arithmetic into the first convolution. IRs built by export/build_engine.py carry the
normalisation from the build on (so INT8 calibration sees the deployed graph) and take pixels in the
model's channel order, as their metadata says; the runner adds the channel swap when it compiles them. For
ONNX files both are added at load time.
:class:`AsyncStream` overlaps pre- and post-processing with inference through an ``AsyncInferQueue``.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Tuple

import numpy as np

from runtimes.detections import Detections
from runtimes.detector import Detector
from runtimes.errors import UserError
from runtimes.metadata import DECODED_OUTPUTS, METADATA_KEY, NMS_OUTPUTS, RAW_OUTPUTS, ModelMetadata
from runtimes.preprocess import check_image, leave_cores_to_runtime

HINTS = {"latency": "LATENCY", "throughput": "THROUGHPUT", "cumulative_throughput": "CUMULATIVE_THROUGHPUT"}


def _import_openvino():
    try:
        import openvino as ov
    except ImportError:
        raise UserError("OpenVINO is not installed: pip install openvino") from None
    return ov


def read_metadata(model: Any, path: str) -> ModelMetadata:
    """The SSD metadata of an OpenVINO model (IR ``rt_info``, or an ONNX file's ``metadata_props``)."""
    if model.has_rt_info([METADATA_KEY]):
        return ModelMetadata.from_json(model.get_rt_info([METADATA_KEY]).astype(str), path)
    if path.lower().endswith(".onnx"):
        try:
            import onnx
        except ImportError:
            raise UserError(f"{path}: reading an ONNX file's metadata needs the onnx package "
                            "(pip install onnx), or convert it to IR with export/build_engine.py") from None
        for prop in onnx.load(path, load_external_data=False).metadata_props:
            if prop.key == METADATA_KEY:
                return ModelMetadata.from_json(prop.value, path)
    raise UserError(f"{path}: no SSD metadata in this model; build it with python export/build_engine.py "
                    "--target openvino")


def _output_name(port: Any) -> str:
    """The toolkit's name for an output port; OpenVINO may merge a Cast's name into the set (FP16 ONNX)."""
    names = port.get_names()
    known = names & set(RAW_OUTPUTS + DECODED_OUTPUTS + NMS_OUTPUTS)
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
    frame (0.09 ms of SSDLite320's 5 ms INT8 end to end, measured right after an inference on this 2-core
    machine); in the graph it is a gather that timed the same as none, and the outputs are bit-identical
    (INT8) or within 1e-4 (FP32: another summation order). Added when the model is compiled, not built
    into the IR: quantizing a graph with the swap inside moved the demo model's INT8 statistics by float
    rounding, and its val mAP from 86.29 to 86.15."""
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
        hint: "latency" (default; one request at a time) or "throughput" (for :meth:`run_async`).
        cache_dir: OpenVINO's compiled-model cache folder (faster second start); None disables it.
        fold_preprocessing: swap channels and normalise inside the graph (default True); False feeds the shared
            preprocessing's float32 NCHW tensor instead (ONNX files only: IRs built by the toolkit carry
            the normalisation in their graph already).
        threads: CPU inference threads (default: OpenVINO's choice).
        inference_precision: "f32" (default) computes an FP32 IR in FP32; None leaves OpenVINO's own default,
            which is bf16 on CPUs with AVX512-BF16/AMX (faster, but no longer the FP32 model's numbers).
    """

    backend = "openvino"

    def __init__(self, path: str, *, device: str = "CPU", hint: str = "latency", cache_dir: Optional[str] = None,
                 fold_preprocessing: bool = True, threads: Optional[int] = None,
                 inference_precision: Optional[str] = "f32", **thresholds: Any) -> None:
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
        if device.upper().startswith(("CPU", "AUTO")):
            leave_cores_to_runtime()
        baked = bool(self.meta.extra.get("build", {}).get("normalisation_in_graph"))
        if baked and not fold_preprocessing:
            raise UserError(f"{path}: this IR normalises inside its graph (built so that INT8 calibration saw "
                            "the deployed graph); fold_preprocessing=False needs the ONNX file instead")
        self.folded = fold_preprocessing
        if fold_preprocessing:
            model = take_bgr(model if baked else fold_normalisation(model, self.meta), self.meta)
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
        self.output_names = [_output_name(o) for o in self.compiled.outputs]
        self.request = self.compiled.create_infer_request()

    @property
    def device(self) -> str:
        return self._device if not self.inference_precision else f"{self._device} ({self.inference_precision})"

    def prepare(self, image_bgr: np.ndarray) -> np.ndarray:
        if self.folded:
            return self.preprocessor.resize_bgr(image_bgr)[None]  # (1, H, W, 3) float32 BGR
        return self.preprocessor(image_bgr)

    def close(self) -> None:
        # Release in dependency order (request, compiled model, core): left to interpreter shutdown, two
        # detectors in one process sometimes abort in OpenVINO's thread-pool teardown.
        for name in ("request", "compiled", "core"):
            if hasattr(self, name):
                delattr(self, name)

    def infer(self, batch: np.ndarray) -> Dict[str, np.ndarray]:
        # share_inputs: the request reads the caller's array in place (the call is synchronous, so the array
        # outlives it) instead of copying 1.2 MB per frame first: 0.3 ms of SSDLite320's 6 ms here.
        # start_async + wait rather than InferRequest.infer, which also builds a dict holding a copy of every
        # output that nobody reads: 0.05 ms per SSDLite320 call here.
        self.request.start_async({0: np.ascontiguousarray(batch, dtype=np.float32)}, share_inputs=True)
        self.request.wait()
        return {name: self.request.get_output_tensor(i).data.copy() for i, name in enumerate(self.output_names)}

    def run_async(self, frames: List[np.ndarray], jobs: int = 0,
                  on_result: Optional[Callable[[int, Detections], None]] = None) -> List[Detections]:
        """Detect on many frames with an ``AsyncInferQueue`` of ``jobs`` requests (0: OpenVINO's optimal
        number for the hint); results come back in frame order."""
        results: List[Detections] = []

        def collect(index: Any, detections: Detections, _timings: Dict[str, float]) -> None:
            results.append(detections)
            if on_result is not None:
                on_result(index, detections)

        stream = AsyncStream(self, jobs, collect)
        for index, frame in enumerate(frames):
            stream.submit(frame, index)
        stream.close()
        return results


class AsyncStream:
    """Frames in, :class:`Detections` out, through an ``AsyncInferQueue``: while one request infers, the
    caller prepares the next frame and finished ones are post-processed, so the stages overlap.

    ``on_result(tag, detections, timings)`` is called in submission order (from OpenVINO's callback thread);
    ``timings`` holds the preprocess, inference (submit to completion) and postprocess seconds.
    """

    def __init__(self, detector: OpenVINODetector, depth: int,
                 on_result: Callable[[Any, Detections, Dict[str, float]], None]) -> None:
        import threading

        ov = _import_openvino()
        self.detector, self.on_result = detector, on_result
        self.queue = ov.AsyncInferQueue(detector.compiled, depth)
        self.queue.set_callback(self._done)
        self.lock = threading.Lock()
        self.submitted = 0
        self.next_out = 0
        self.finished: Dict[int, Tuple[Any, Detections, Dict[str, float]]] = {}

    def submit(self, frame: np.ndarray, tag: Any) -> None:
        """Queue one (H, W, 3) uint8 BGR frame; blocks while every request is busy."""
        size = check_image(frame)
        start = time.perf_counter()
        batch = self.detector.prepare(frame)
        prepared = time.perf_counter()
        self.queue.start_async({0: batch}, (self.submitted, tag, size, prepared - start, prepared))
        self.submitted += 1

    def _done(self, request: Any, userdata: Tuple[int, Any, Tuple[int, int], float, float]) -> None:
        sequence, tag, size, pre_s, submitted = userdata
        inferred = time.perf_counter()
        outputs = {name: request.get_output_tensor(i).data for i, name in enumerate(self.detector.output_names)}
        detections = self.detector.postprocessor(outputs, size)
        timings = {"preprocess": pre_s, "inference": inferred - submitted,
                   "postprocess": time.perf_counter() - inferred}
        with self.lock:  # hand results on in submission order, whatever order requests finish in
            self.finished[sequence] = (tag, detections, timings)
            while self.next_out in self.finished:
                self.on_result(*self.finished.pop(self.next_out))
                self.next_out += 1

    def close(self) -> None:
        """Wait for every submitted frame to be handed on."""
        self.queue.wait_all()


def ir_paths(xml: Path) -> List[Path]:
    return [Path(xml), Path(xml).with_suffix(".bin")]
