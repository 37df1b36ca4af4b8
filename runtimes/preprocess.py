"""The ONE preprocessing function: BGR uint8 frame -> network input, as the metadata describes it.

Every runtime, the calibrators and the evaluator call :func:`preprocess`, so INT8 calibration sees
exactly the tensors inference will see.
"""

from __future__ import annotations

from typing import Optional, Tuple

import cv2
import numpy as np

from runtimes.metadata import InputSpec, ModelMetadata
from runtimes.pillow_resize import pillow_bilinear

# ResizeSpec.interpolation -> OpenCV's flag.
CV2_INTERPOLATIONS = {"linear": cv2.INTER_LINEAR, "nearest": cv2.INTER_NEAREST, "area": cv2.INTER_AREA,
                      "cubic": cv2.INTER_CUBIC}


class Preprocessor:
    """Resize (stretch; the filter and pixel type ``meta.resize`` names), reorder channels,
    ``(x - mean) / std``, HWC -> NCHW float32: the steps a graph's :class:`InputSpec` leaves to the host.

    Call it on a (H, W, 3) uint8 BGR image; it returns (1, 3, input_height, input_width) float32 for an
    exported graph, or whatever ``spec`` (default: the model file's ``meta.input``) takes: e.g. (1, H, W, 3)
    resized BGR pixels for a graph that reorders channels and normalises itself.

    By default the resize runs on float pixels, as torchvision's transform does when the model is trained:
    resizing the uint8 frame instead rounds every pixel to a grey level, which moves confident boxes against
    PyTorch (docs/benchmark/openvino_latency.md, "Host-side choices", has the counts and the cost). Models of
    codebases that resize the 8-bit image (pytorch-ssd's ``cv2.resize`` on the frame as read) say
    ``resize.pixels == "uint8"``, and get exactly that.
    """

    def __init__(self, meta: ModelMetadata, spec: Optional[InputSpec] = None) -> None:
        self.spec = spec or meta.inputs
        self.size = (meta.input_width, meta.input_height)  # cv2 order
        self.interpolation = CV2_INTERPOLATIONS[meta.resize.interpolation]
        self.resize_uint8 = meta.resize.pixels == "uint8"
        self.pillow = meta.resize.library == "pillow"
        self.swap_rb = self.spec.channel_order == "RGB"
        self.normalise = not self.spec.normalisation_in_graph
        self.nchw = self.spec.layout == "NCHW"
        # (x - mean) / std as one multiply-add; mean/std are in the model's channel order.
        std = np.asarray(meta.std, dtype=np.float32)
        self.scale = (1.0 / std).astype(np.float32)
        self.bias = (-np.asarray(meta.mean, dtype=np.float32) / std).astype(np.float32)

    def resize_bgr(self, image_bgr: np.ndarray) -> np.ndarray:
        """The resized frame, (H, W, 3) float32 pixels 0..255, still BGR; for graphs that reorder the
        channels and normalise themselves (OpenVINO IRs)."""
        check_image(image_bgr)
        if self.pillow:
            return pillow_bilinear(image_bgr, *self.size).astype(np.float32)
        if self.resize_uint8:
            return cv2.resize(image_bgr, self.size, interpolation=self.interpolation).astype(np.float32)
        return cv2.resize(image_bgr.astype(np.float32), self.size, interpolation=self.interpolation)

    def resize(self, image_bgr: np.ndarray) -> np.ndarray:
        """The resized frame, (H, W, 3) float32 pixels 0..255 in the input's channel order; for graphs
        that normalise themselves."""
        resized = self.resize_bgr(image_bgr)
        return cv2.cvtColor(resized, cv2.COLOR_BGR2RGB) if self.swap_rb else resized

    def __call__(self, image_bgr: np.ndarray) -> np.ndarray:
        pixels = self.resize(image_bgr)
        if self.normalise:
            pixels = pixels * self.scale + self.bias
        if self.nchw:
            return np.ascontiguousarray(pixels.transpose(2, 0, 1))[None]
        return pixels[None]


def leave_cores_to_runtime() -> None:
    """Run OpenCV single-threaded, process-wide: when the inference runtime uses the same CPU cores
    (OpenVINO, ONNX Runtime: ``Detector.shares_cpu``), OpenCV's worker threads for the resize compete with
    the runtime's threads (docs/benchmark/openvino_latency.md, "Host-side choices"). The apps call it;
    constructing a detector does not."""
    cv2.setNumThreads(1)


def check_image(image: np.ndarray) -> Tuple[int, int]:
    """(height, width) of a valid BGR uint8 frame; ValueError that says what is wrong otherwise."""
    if not isinstance(image, np.ndarray) or image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        desc = f"{image.dtype} {image.shape}" if isinstance(image, np.ndarray) else type(image).__name__
        raise ValueError(f"expected an (H, W, 3) uint8 BGR image, got {desc}")
    if image.shape[0] == 0 or image.shape[1] == 0:
        raise ValueError("empty image")
    return int(image.shape[0]), int(image.shape[1])
