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
SCHEMA_VERSION = 1

# Tensor names every model produced by the toolkit uses.
INPUT_NAME = "images"
RAW_OUTPUTS = ("bbox_regression", "cls_logits")  # box-coder offsets (B,N,4), class logits (B,N,C)
DECODED_OUTPUTS = ("boxes", "scores")  # normalised xyxy corners (B,N,4), class probabilities (B,N,C)
NMS_OUTPUTS = ("num_detections", "detection_boxes", "detection_scores", "detection_classes")

VOC_CLASSES = (
    "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow",
    "diningtable", "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa", "train", "tvmonitor",
)


@dataclass
class AnchorConfig:
    """torchvision ``DefaultBoxGenerator`` settings plus the feature-map grid they tile."""

    feature_maps: List[List[int]]  # (height, width) of each head's feature map
    aspect_ratios: List[List[float]]
    scales: List[float]  # one more than feature maps: s_k and the last s_{k+1}
    steps: Optional[List[int]] = None
    clip: bool = True


@dataclass
class ModelMetadata:
    """Everything needed to run a detector file; thresholds here are the defaults callers may override.

    Pre-processing: resize (stretch, bilinear) to ``input_height`` x ``input_width``, reorder channels to
    ``channel_order``, ``(pixel - mean) / std`` on 0..255 values, NCHW float32.
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
    extra: Dict[str, Any] = field(default_factory=dict)  # e.g. precision, calibration record
    schema: int = SCHEMA_VERSION

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str, origin: str = "model") -> "ModelMetadata":
        try:
            data = json.loads(text)
            known = {f.name for f in fields(cls)}
            data = {k: v for k, v in data.items() if k in known}
            if data.get("anchors") is not None:
                data["anchors"] = AnchorConfig(**data["anchors"])
            meta = cls(**data)
        except (TypeError, ValueError) as exc:
            raise UserError(f"{origin}: its SSD metadata is unreadable ({exc}); re-export it with "
                            "export/export_onnx.py") from None
        meta.validate(origin)
        return meta

    def validate(self, origin: str = "model") -> None:
        problems = []
        if self.output_format not in ("raw", "decoded", "nms"):
            problems.append(f"unknown output_format {self.output_format!r}")
        if self.output_format == "raw" and self.anchors is None:
            problems.append("raw outputs need an anchor configuration")
        if self.channel_order not in ("RGB", "BGR"):
            problems.append(f"channel_order must be RGB or BGR, not {self.channel_order!r}")
        if len(self.mean) != 3 or len(self.std) != 3 or min(self.std) <= 0:
            problems.append("mean and std need 3 values each, std > 0")
        if len(self.class_names) < 2:
            problems.append("class_names needs the background and at least one class")
        if problems:
            raise UserError(f"{origin}: invalid SSD metadata: {'; '.join(problems)}")

    def replace(self, **changes: Any) -> "ModelMetadata":
        data = asdict(self)
        data.update(changes)
        if isinstance(data.get("anchors"), dict):
            data["anchors"] = AnchorConfig(**data["anchors"])
        return ModelMetadata(**data)
