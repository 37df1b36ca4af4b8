"""What a model file carries about itself: one JSON document, the same in every format.

ONNX stores it in ``metadata_props`` under :data:`METADATA_KEY`, OpenVINO IR in ``rt_info`` under the same
key, TensorRT engines in a header before the plan. Pre-processing, anchors, the post-processor and the apps
read everything they need from here, so a model file is self-describing.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields
from typing import Any, Dict, List, Optional

from runtimes.errors import UserError

METADATA_KEY = "ssd_edge.metadata"
# 2: the input contract (InputSpec), precision and quantization became typed fields; files of schema 1
# still load (their side fields are read once, in _upgrade_schema_1).
SCHEMA_VERSION = 2

# Tensor names every model produced by the toolkit uses.
INPUT_NAME = "images"
RAW_OUTPUTS = ("bbox_regression", "cls_logits")  # box-coder offsets (B,N,4), class logits (B,N,C)
DECODED_OUTPUTS = ("boxes", "scores")  # normalised xyxy corners (B,N,4), class probabilities (B,N,C)
NMS_OUTPUTS = ("num_detections", "detection_boxes", "detection_scores", "detection_classes")

VOC_CLASSES = (
    "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow",
    "diningtable", "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa", "train", "tvmonitor",
)


CLIP_MODES = ("size", "box")  # what an anchor clip bounds to [0, 1]: width and height, or centre and size too


@dataclass
class AnchorConfig:
    """Default boxes: the feature-map grid and the boxes each cell gets.

    A cell's boxes are torchvision ``DefaultBoxGenerator``'s (``scales`` s_k, the square sqrt(s_k s_{k+1}),
    then each aspect ratio's pair), or, when ``box_sizes`` is given, that level's explicit list: (w, h) as
    fractions of the input width and height, in the codebase's order (pytorch-ssd's SSDSpecs, UltraFace's
    min_boxes). Cell centres are ``(i + 0.5) * steps[k] / input size``, or ``(i + 0.5) / cells``
    without ``steps``. ``clip`` bounds each box to [0, 1] in centre-size form: ``clip_mode`` "size" clips
    width and height only (torchvision), "box" clamps the centre too (pytorch-ssd, ssd.pytorch, lufficc's
    SSD, NVIDIA's SSD300).
    """

    feature_maps: List[List[int]]  # (height, width) of each head's feature map
    aspect_ratios: List[List[float]]
    scales: List[float]  # one more than feature maps: s_k and the last s_{k+1}
    steps: Optional[List[int]] = None
    clip: bool = True
    clip_mode: str = "size"  # one of CLIP_MODES
    box_sizes: Optional[List[List[List[float]]]] = None  # per level, [w, h] of each box of a cell

    def problems(self) -> List[str]:
        found = []
        if self.clip_mode not in CLIP_MODES:
            found.append(f"anchors clip_mode must be one of {', '.join(CLIP_MODES)}, not {self.clip_mode!r}")
        if self.box_sizes is not None and (len(self.box_sizes) != len(self.feature_maps) or not all(
                level and all(len(wh) == 2 for wh in level) for level in self.box_sizes)):
            found.append("anchors box_sizes needs, per feature map, a list of [w, h] pairs")
        return found


LAYOUTS = ("NCHW", "NHWC")
CHANNEL_ORDERS = ("RGB", "BGR")
DYNAMIC_BATCH = 0
MAX_INPUT_SIDE = 8192  # pixels; more is no SSD input (and would reach cv2.resize as a request for gigabytes)
QUANTIZATIONS = ("none", "qdq", "nncf")  # qdq: explicit Q/DQ ONNX; nncf: OpenVINO IR with FakeQuantize
PRECISIONS = ("fp32", "fp16", "int8")  # what a model file computes in; every build and benchmark row is one


@dataclass
class InputSpec:
    """What the model file's graph input takes, so every consumer (runner, calibrator, benchmark_app, a
    server) feeds it the same tensor.

    ``layout`` NCHW or NHWC; ``channel_order`` of the pixels it takes; ``dtype``; ``resize_in_graph``
    (False: the host resizes to the model's input size); ``normalisation_in_graph`` (True: the graph does
    ``(x - mean) / std`` on 0..255 pixels itself); ``batch`` images per call, :data:`DYNAMIC_BATCH` (0) for a
    dynamic batch axis.
    """

    layout: str = "NCHW"
    channel_order: str = "RGB"
    dtype: str = "float32"
    resize_in_graph: bool = False
    normalisation_in_graph: bool = False
    batch: int = 1

    @property
    def dynamic_batch(self) -> bool:
        return self.batch == DYNAMIC_BATCH

    def problems(self) -> List[str]:
        found = []
        if self.layout not in LAYOUTS:
            found.append(f"input layout must be one of {', '.join(LAYOUTS)}, not {self.layout!r}")
        if self.channel_order not in CHANNEL_ORDERS:
            found.append(f"input channel_order must be RGB or BGR, not {self.channel_order!r}")
        if self.dtype != "float32":
            found.append(f"input dtype {self.dtype!r} is not supported (float32)")
        if self.resize_in_graph:
            found.append("a resize inside the graph is not supported: the host resizes")
        if not isinstance(self.batch, int) or self.batch < 0:
            found.append(f"input batch must be a positive count or {DYNAMIC_BATCH} (dynamic), not {self.batch!r}")
        return found


RESIZE_LIBRARIES = ("opencv", "pillow")
INTERPOLATIONS = ("linear", "nearest", "area", "cubic")
RESIZE_PIXELS = ("float32", "uint8")


@dataclass
class ResizeSpec:
    """How the host resizes a frame to the input size, as the codebase did when it trained and evaluated.

    ``library`` the resize's implementation (OpenCV's ``cv2.resize``, or Pillow's, runtimes/pillow_resize.py);
    ``interpolation`` its filter;
    ``pixels`` "float32" resizes float pixels (torchvision's transform, lufficc's SSD), "uint8" the 8-bit
    frame as read, which rounds every resized pixel to a grey level (pytorch-ssd, ssd.pytorch, MMDetection).
    """

    library: str = "opencv"
    interpolation: str = "linear"
    pixels: str = "float32"

    def problems(self) -> List[str]:
        found = []
        for name, value, allowed in (("library", self.library, RESIZE_LIBRARIES),
                                     ("interpolation", self.interpolation, INTERPOLATIONS),
                                     ("pixels", self.pixels, RESIZE_PIXELS)):
            if value not in allowed:
                found.append(f"resize {name} must be one of {', '.join(allowed)}, not {value!r}")
        if self.library == "pillow" and (self.interpolation, self.pixels) != ("linear", "uint8"):
            found.append("resize library pillow is Pillow's bilinear resize of the uint8 image only")
        return found


CLIP_BOXES = ("before_nms", "after_nms", "none")  # where decoded boxes are clipped to the image


@dataclass
class ModelMetadata:
    """Everything needed to run a detector file; thresholds here are the defaults callers may override.

    Pre-processing: resize (stretch, bilinear) to ``input_height`` x ``input_width``, reorder channels to
    ``channel_order`` (the order the network was trained in; ``mean`` and ``std`` are in that order),
    ``(pixel - mean) / std`` on 0..255 values; ``input`` says which of these the file's graph does itself
    and in which layout it takes the tensor.
    ``resize`` says how the host resizes (library, filter, uint8 or float pixels).
    Post-processing: ``clip_boxes`` clips decoded boxes to the image before NMS (torchvision, MMDetection),
    after it, or never (pytorch-ssd, ssd.pytorch); ``iou_epsilon`` is added to every union in NMS, in units
    of the input's area (pytorch-ssd's ``iou_of`` adds 1e-5 to unions of normalised boxes).
    Outputs: ``output_format`` "raw" (offsets against anchors + logits), "decoded" (normalised corners +
    probabilities) or "nms" (NMS inside the model: EfficientNMS_TRT or OpenVINO's MulticlassNms; box corners
    in input pixels).
    """

    arch: str
    input_height: int
    input_width: int
    channel_order: str
    mean: List[float]
    std: List[float]
    class_names: List[str]  # index = label; index 0 is the background
    output_format: str = "raw"
    box_coder_weights: List[float] = field(default_factory=lambda: [10.0, 10.0, 5.0, 5.0])
    anchors: Optional[AnchorConfig] = None
    score_threshold: float = 0.01
    iou_threshold: float = 0.45
    topk_candidates: int = 400
    max_detections: int = 200
    checkpoint_sha256: Optional[str] = None
    source: str = ""
    input: Optional[InputSpec] = None  # None: the exported graph's contract (NCHW, normalised, batch 1)
    precision: str = "fp32"  # one of PRECISIONS
    quantization: str = "none"  # one of QUANTIZATIONS
    resize: ResizeSpec = field(default_factory=ResizeSpec)
    clip_boxes: str = "before_nms"  # one of CLIP_BOXES
    iou_epsilon: float = 0.0
    extra: Dict[str, Any] = field(default_factory=dict)  # build records: calibration, tools, settings
    schema: int = SCHEMA_VERSION

    def __post_init__(self) -> None:
        if self.input is None:
            self.input = InputSpec(channel_order=self.channel_order)

    @property
    def inputs(self) -> InputSpec:
        """``input``, typed as present (``__post_init__`` fills it in)."""
        assert self.input is not None
        return self.input

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def nms_in_model(self) -> bool:
        """Whether the model runs NMS itself (EfficientNMS_TRT or OpenVINO's MulticlassNms) and returns
        final detections; the place is "model" in build records and on the command line, else "host"."""
        return self.output_format == "nms"

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str, origin: str = "model") -> "ModelMetadata":
        try:
            data = json.loads(text)
            if not isinstance(data, dict):
                raise ValueError(f"a JSON object was expected, not {type(data).__name__}")
            if int(data.get("schema", 1)) < 2:
                data = _upgrade_schema_1(data)
            meta = cls._from_dict(data)
            meta.validate(origin)  # inside: a field of the wrong type fails its check with a TypeError
        except (TypeError, ValueError, AttributeError) as exc:
            raise UserError(f"{origin}: its SSD metadata is unreadable ({exc}); re-export it with "
                            "export/export_onnx.py") from None
        return meta

    @classmethod
    def _from_dict(cls, data: Dict[str, Any]) -> "ModelMetadata":
        known = {f.name for f in fields(cls)}
        data = {k: v for k, v in data.items() if k in known}
        for name, kind in (("anchors", AnchorConfig), ("input", InputSpec), ("resize", ResizeSpec)):
            if data.get(name) is not None:
                if not isinstance(data[name], dict):
                    raise ValueError(f"{name} must be an object, not {type(data[name]).__name__}")
                data[name] = kind(**data[name])
        return cls(**data)

    def validate(self, origin: str = "model") -> None:
        problems = self.inputs.problems() + self.resize.problems()
        if self.anchors is not None:
            problems += self.anchors.problems()
        if self.clip_boxes not in CLIP_BOXES:
            problems.append(f"clip_boxes must be one of {', '.join(CLIP_BOXES)}, not {self.clip_boxes!r}")
        if not 0.0 <= float(self.iou_epsilon) < 1.0:
            problems.append(f"iou_epsilon must lie in [0, 1), not {self.iou_epsilon!r}")
        if self.output_format not in ("raw", "decoded", "nms"):
            problems.append(f"unknown output_format {self.output_format!r}")
        if self.output_format == "raw" and self.anchors is None:
            problems.append("raw outputs need an anchor configuration")
        if self.channel_order not in ("RGB", "BGR"):
            problems.append(f"channel_order must be RGB or BGR, not {self.channel_order!r}")
        if len(self.mean) != 3 or len(self.std) != 3 or min(self.std) <= 0:
            problems.append("mean and std need 3 values each, std > 0")
        if not isinstance(self.class_names, list) or len(self.class_names) < 2 or \
                not all(isinstance(n, str) for n in self.class_names):
            problems.append("class_names needs the background and at least one class, as strings")
        if not all(type(v) is int and 1 <= v <= MAX_INPUT_SIDE for v in (self.input_height, self.input_width)):
            problems.append(f"input size must be whole numbers from 1 to {MAX_INPUT_SIDE}, not "
                            f"{self.input_height!r}x{self.input_width!r}")
        if self.precision not in PRECISIONS:
            problems.append(f"unknown precision {self.precision!r}")
        if self.quantization not in QUANTIZATIONS:
            problems.append(f"unknown quantization {self.quantization!r}")
        if problems:
            raise UserError(f"{origin}: invalid SSD metadata: {'; '.join(problems)}")

    def replace(self, **changes: Any) -> "ModelMetadata":
        data = asdict(self)
        typed = (AnchorConfig, InputSpec, ResizeSpec)
        data.update({k: asdict(v) if isinstance(v, typed) else v for k, v in changes.items()})
        return ModelMetadata._from_dict(data)


def _upgrade_schema_1(data: Dict[str, Any]) -> Dict[str, Any]:
    """Schema 1 kept the input contract and the precision in untyped side fields: read them into the typed
    ones, so files written before schema 2 still load."""
    data = dict(data)
    extra = data.get("extra") or {}
    build = extra.get("build") or {}
    folded = bool(build.get("normalisation_in_graph"))
    data["input"] = {"layout": "NHWC" if folded else "NCHW", "channel_order": data.get("channel_order", "RGB"),
                     "normalisation_in_graph": folded}
    quant = extra.get("quantization")
    data["precision"] = build.get("precision") or extra.get("precision") or "fp32"
    if isinstance(quant, dict) and quant.get("route") == "explicit Q/DQ":
        data["quantization"], data["precision"] = "qdq", "int8"
    elif data["precision"] == "int8" and "nncf" in build:
        data["quantization"] = "nncf"
    data["schema"] = SCHEMA_VERSION
    return data
