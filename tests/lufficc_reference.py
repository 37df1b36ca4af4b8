"""lufficc/SSD's inference written from its code's maths (ssd/modeling/anchors/prior_box.py,
ssd/data/transforms: Resize and SubtractMeans, ssd/utils/box_utils.py, ssd/modeling/box_head/box_head.py and
inference.py's PostProcessor, ssd/utils/nms.py's batched_nms, ssd/structures/container.py's resize), for the
parity tests, and seeded networks of its layout (importers/lufficc_networks.py) whose detections are
decisive. ``config`` is a merged training config (importers/lufficc_config.py)."""

from __future__ import annotations

import itertools
import math
from typing import Any, Dict, List, Sequence

import cv2
import numpy as np
import torch
import torchvision
from torch import nn

from importers.lufficc_networks import LufficcSSD, SeparableConv2d


def priors(config: Dict[str, Any]) -> torch.Tensor:
    """PriorBox()(): (N, 4) centre-size float32, relative to the input, clamped to [0, 1] if PRIORS.CLIP."""
    pri, size = config["MODEL"]["PRIORS"], config["INPUT"]["IMAGE_SIZE"]
    out: List[List[float]] = []
    for k, f in enumerate(pri["FEATURE_MAPS"]):
        scale = size / pri["STRIDES"][k]
        for i, j in itertools.product(range(f), repeat=2):
            cx, cy = (j + 0.5) / scale, (i + 0.5) / scale
            w = h = pri["MIN_SIZES"][k] / size
            out.append([cx, cy, w, h])
            w = h = math.sqrt(pri["MIN_SIZES"][k] * pri["MAX_SIZES"][k]) / size
            out.append([cx, cy, w, h])
            w = h = pri["MIN_SIZES"][k] / size
            for ratio in pri["ASPECT_RATIOS"][k]:
                ratio = math.sqrt(ratio)
                out += [[cx, cy, w * ratio, h / ratio], [cx, cy, w / ratio, h * ratio]]
    boxes = torch.tensor(out)
    return boxes.clamp_(max=1, min=0) if pri["CLIP"] else boxes


def transform(image_rgb: np.ndarray, config: Dict[str, Any]) -> torch.Tensor:
    """build_transforms(cfg, is_train=False) on an RGB uint8 image (PIL's, as its datasets and demo read
    it): cv2.resize of the uint8 image, minus PIXEL_MEAN in float32, to (3, S, S)."""
    size = config["INPUT"]["IMAGE_SIZE"]
    x = cv2.resize(image_rgb, (size, size)).astype(np.float32)
    x -= np.array(config["INPUT"]["PIXEL_MEAN"], dtype=np.float32)
    return torch.from_numpy(x).permute(2, 0, 1)


def decode(bbox_pred: Any, cls_logits: Any, config: Dict[str, Any],
           image_shape: Sequence[int]) -> Dict[str, np.ndarray]:
    """SSDBoxHead._forward_test and PostProcessor on one image's (N, 4) offsets and (N, C) logits, then
    Container.resize to the image, as demo.py reads it: boxes (K, 4) xyxy image pixels, best first."""
    loc = torch.as_tensor(np.asarray(bbox_pred), dtype=torch.float32)
    scores = torch.softmax(torch.as_tensor(np.asarray(cls_logits), dtype=torch.float32), dim=1)
    prior = priors(config)
    centre = torch.cat([loc[:, :2] * config["MODEL"]["CENTER_VARIANCE"] * prior[:, 2:] + prior[:, :2],
                        torch.exp(loc[:, 2:] * config["MODEL"]["SIZE_VARIANCE"]) * prior[:, 2:]], dim=1)
    boxes = torch.cat([centre[:, :2] - centre[:, 2:] / 2, centre[:, :2] + centre[:, 2:] / 2], dim=1)
    num_boxes, num_classes = scores.shape
    boxes = boxes.view(num_boxes, 1, 4).expand(num_boxes, num_classes, 4)[:, 1:].reshape(-1, 4)
    labels = torch.arange(num_classes).view(1, num_classes).expand_as(scores)[:, 1:].reshape(-1)
    scores = scores[:, 1:].reshape(-1)
    indices = torch.nonzero(scores > config["TEST"]["CONFIDENCE_THRESHOLD"]).squeeze(1)
    boxes, scores, labels = boxes[indices], scores[indices], labels[indices]
    size = config["INPUT"]["IMAGE_SIZE"]
    boxes = boxes * size
    # batched_nms: every class's boxes shifted by label * (max coordinate + 1), one torchvision NMS
    offsets = labels.to(boxes) * (boxes.max() + 1)
    keep = torchvision.ops.nms(boxes + offsets[:, None], scores, config["TEST"]["NMS_THRESHOLD"])
    keep = keep[:config["TEST"]["MAX_PER_IMAGE"]]
    boxes, scores, labels = boxes[keep], scores[keep], labels[keep]
    height, width = image_shape[:2]
    boxes[:, 0::2] *= width / size
    boxes[:, 1::2] *= height / size
    return {"boxes": boxes.numpy(), "scores": scores.numpy(), "labels": labels.numpy()}


def _last_conv(head: nn.Module) -> nn.Conv2d:
    return head.conv[3] if isinstance(head, SeparableConv2d) else head  # type: ignore[return-value]


def decisive_lufficc(backbone: str, boxes: Sequence[int], num_classes: int, config: Dict[str, Any],
                     images_rgb: Sequence[np.ndarray], seed: int = 0, logit_max: float = 6.0,
                     offset_max: float = 2.0, background: float = 8.0) -> LufficcSSD:
    """Seeded weights whose detections are decisive and distinct: He-initialised convs (features stay
    alive through the ReLUs), BatchNorm statistics measured on ``images_rgb`` (clamped, so no near-constant
    channel amplifies float noise) with affine terms away from identity, the L2Norm scale drawn in 10..30,
    each head's last convs centred on the images (so no class wins everywhere) and scaled so that the
    logits reach +-``logit_max`` and the offsets +-``offset_max`` (boxes near their priors, as a trained
    model's), and each box's background logit raised by ``background``: as in a trained model, most anchors
    are background, so a few thousand (box, class) scores pass the 0.01 threshold rather than 100,000, which
    lufficc's uncapped NMS would take half a minute over on a CPU."""
    torch.manual_seed(seed)
    model = LufficcSSD(backbone, boxes, num_classes)
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, nonlinearity="relu")
            if m.bias is not None:
                nn.init.uniform_(m.bias, -0.1, 0.1)
    batch = torch.stack([transform(image, config) for image in images_rgb])
    norms = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    for m in norms:
        m.reset_running_stats()
        m.momentum = None  # the average over the one batch
    model.train()
    with torch.no_grad():
        if norms:  # (VGG has none: one forward fewer)
            model(batch)  # the heads' separable convs have BatchNorm too
        for m in norms:
            m.running_var.clamp_(min=float(m.running_var.median()) * 0.1)
            m.weight.uniform_(0.7, 1.3)
            m.bias.uniform_(-0.2, 0.2)
        if hasattr(model.backbone, "l2_norm"):
            model.backbone.l2_norm.weight.uniform_(10.0, 30.0)
    model.eval()
    predictor = model.box_head.predictor
    with torch.no_grad():
        features = model.backbone(batch)
        for feature, cls, reg in zip(features, predictor.cls_headers, predictor.reg_headers):
            for head, top in ((cls, logit_max), (reg, offset_max)):
                out = head(feature)
                mean = out.mean(dim=(0, 2, 3))
                factor = top / float((out - mean[None, :, None, None]).abs().max())
                _last_conv(head).bias.sub_(mean).mul_(factor)
                _last_conv(head).weight.mul_(factor)
            _last_conv(cls).bias[::num_classes] += background  # channels are box-major: box b's class 0 at b * C
    return model.eval()
