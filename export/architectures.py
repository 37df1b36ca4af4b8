"""The SSD architectures the toolkit knows, built from torchvision's own modules.

``ssd300_vgg16`` and ``ssdlite320_mobilenet_v3_large`` are torchvision's models as it defines them;
``ssd512_vgg16`` is the paper's SSD512 assembled from the same blocks: VGG16 with the extra conv12_2 block
(torchvision's ``highres`` extractor, strided as in the paper), 7 feature maps of 64/32/16/8/4/2/1 cells
and 24564 default boxes, with the Caffe SSD512 box sizes (20.48 ... 542.72 px, i.e. scales 0.04 ... 1.06) and steps.

Everything about a model that the runtimes need later (input size, normalisation, anchors, box coder,
thresholds) is read back from the built module by :func:`describe`, so it is stated once, here.
"""

from __future__ import annotations

from typing import Any, Callable, Dict

import torch
from torch import nn
from torchvision.models import vgg16
from torchvision.models.detection import ssd300_vgg16, ssdlite320_mobilenet_v3_large
from torchvision.models.detection.anchor_utils import DefaultBoxGenerator
from torchvision.models.detection.ssd import SSD, _vgg_extractor, _xavier_init

from runtimes.metadata import AnchorConfig, ModelMetadata


def _ssd300_vgg16(num_classes: int) -> SSD:
    return ssd300_vgg16(weights=None, weights_backbone=None, num_classes=num_classes)


def _ssdlite320(num_classes: int) -> SSD:
    return ssdlite320_mobilenet_v3_large(weights=None, weights_backbone=None, num_classes=num_classes)


def _ssd512_vgg16(num_classes: int) -> SSD:
    backbone = _vgg_extractor(vgg16(weights=None), highres=True, trainable_layers=5)
    # torchvision's highres extras keep SSD300's valid 3x3 convs (maps 64/32/16/8/6/4/1, 24732 boxes).
    # The paper's SSD512 strides conv10_2 and conv11_2 (pad 1) and ends with a 4x4 conv12_2 (pad 1):
    # maps 64/32/16/8/4/2/1. Only stride/padding change, so the state_dict keys and shapes stay.
    extra = backbone.extra  # extra[0] is pool5 + fc6/fc7; then conv8_2 ... conv12_2
    extra[3][2] = nn.Conv2d(128, 256, kernel_size=3, stride=2, padding=1)  # conv10_2
    extra[4][2] = nn.Conv2d(128, 256, kernel_size=3, stride=2, padding=1)  # conv11_2
    extra[5][2] = nn.Conv2d(128, 256, kernel_size=4, padding=1)  # conv12_2
    _xavier_init(extra[3:])
    anchor_generator = DefaultBoxGenerator(
        [[2], [2, 3], [2, 3], [2, 3], [2, 3], [2], [2]],
        scales=[0.04, 0.1, 0.26, 0.42, 0.58, 0.74, 0.9, 1.06],
        steps=[8, 16, 32, 64, 128, 256, 512],
    )
    # Same normalisation as torchvision's SSD300: VGG's Caffe means on 0..255 pixels.
    return SSD(backbone, anchor_generator, (512, 512), num_classes,
               image_mean=[0.48235, 0.45882, 0.40784], image_std=[1.0 / 255.0] * 3)


ARCHITECTURES: Dict[str, Callable[[int], SSD]] = {
    "ssd300_vgg16": _ssd300_vgg16,
    "ssd512_vgg16": _ssd512_vgg16,
    "ssdlite320_mobilenet_v3_large": _ssdlite320,
}


class UnknownArchitecture(ValueError):
    pass


def build_model(arch: str, num_classes: int) -> SSD:
    """A randomly initialised ``arch`` with ``num_classes`` outputs (background included), in eval mode."""
    if arch not in ARCHITECTURES:
        raise UnknownArchitecture(
            f"unknown architecture '{arch}': choose one of {', '.join(sorted(ARCHITECTURES))}")
    if num_classes < 2:
        raise ValueError(f"--num-classes must be at least 2 (background + 1 class), got {num_classes}")
    return ARCHITECTURES[arch](num_classes).eval()


class RawHeadOutputs(nn.Module):
    """SSD up to its raw head outputs; decoding and NMS stay on the host.

    Input: ``images`` (B, 3, H, W) float32, already resized and normalised.
    Outputs: ``bbox_regression`` (B, N, 4) box-coder offsets, ``cls_logits`` (B, N, C) logits (no softmax).
    """

    def __init__(self, model: SSD) -> None:
        super().__init__()
        self.backbone = model.backbone
        self.head = model.head

    def forward(self, images: torch.Tensor):
        features = list(self.backbone(images).values())
        out = self.head(features)
        return out["bbox_regression"], out["cls_logits"]


def feature_map_sizes(model: SSD) -> list:
    height, width = model.transform.fixed_size
    with torch.no_grad():
        features = model.backbone(torch.zeros(1, 3, height, width))
    return [list(f.shape[-2:]) for f in features.values()]


def describe(model: SSD, arch: str, class_names: list, **extra: Any) -> ModelMetadata:
    """The metadata of ``model``: everything a runtime needs to pre- and post-process it."""
    gen = model.anchor_generator
    height, width = model.transform.fixed_size
    mean = [round(m * 255.0, 6) for m in model.transform.image_mean]
    std = [round(s * 255.0, 6) for s in model.transform.image_std]
    return ModelMetadata(
        arch=arch,
        input_height=int(height),
        input_width=int(width),
        channel_order="RGB",
        mean=mean,
        std=std,
        class_names=["__background__"] + list(class_names),
        output_format="raw",
        box_coder_weights=[float(w) for w in model.box_coder.weights],
        anchors=AnchorConfig(
            feature_maps=feature_map_sizes(model),
            aspect_ratios=[list(map(float, r)) for r in gen.aspect_ratios],
            scales=[float(s) for s in gen.scales],
            steps=None if gen.steps is None else [int(s) for s in gen.steps],
            clip=bool(gen.clip),
        ),
        score_threshold=float(model.score_thresh),
        iou_threshold=float(model.nms_thresh),
        topk_candidates=int(model.topk_candidates),
        max_detections=int(model.detections_per_img),
        **extra,
    )
