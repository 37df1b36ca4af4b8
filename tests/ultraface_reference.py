"""UltraFace's inference written from its code's maths (vision/ssd/config/fd_config.py, vision/utils/box_utils.py,
vision/ssd/data_preprocessing.py's PredictionTransform, vision/ssd/predictor.py, widerface_evaluate's settings)
for the parity tests; its network is importers/ultraface.py's, whose state dict layout the test pins to the
codebase's."""

from __future__ import annotations

from typing import Dict, List, Sequence

import cv2
import numpy as np
import torch
from torch import nn

from importers.ultraface import MIN_BOXES, SIZES, UltraFaceSSD


def priors(size: int) -> torch.Tensor:
    """generate_priors(feature maps, shrinkages, image_size, min_boxes): (N, 4) centre-size, clamped."""
    (width, height), maps = SIZES[size]
    found: List[List[float]] = []
    for index in range(len(maps[0])):
        scale_w = width / (width / maps[0][index])
        scale_h = height / (height / maps[1][index])
        for j in range(maps[1][index]):
            for i in range(maps[0][index]):
                for min_box in MIN_BOXES[index]:
                    found.append([(i + 0.5) / scale_w, (j + 0.5) / scale_h, min_box / width, min_box / height])
    return torch.tensor(found).clamp(0.0, 1.0)


def transform(image_bgr: np.ndarray, size: int) -> torch.Tensor:
    """The scripts' BGR -> RGB, then PredictionTransform: cv2.resize, minus 127, / 128: (3, H, W)."""
    (width, height), _ = SIZES[size]
    image = cv2.resize(cv2.cvtColor(image_bgr, cv2.COLOR_BGR2RGB), (width, height))
    return torch.from_numpy((image.astype(np.float32) - np.float32(127)) / np.float32(128)).permute(2, 0, 1)


def _iou(boxes0: torch.Tensor, boxes1: torch.Tensor, eps: float = 1e-5) -> torch.Tensor:
    lt = torch.max(boxes0[..., :2], boxes1[..., :2])
    rb = torch.min(boxes0[..., 2:], boxes1[..., 2:])
    overlap = (rb - lt).clamp(min=0.0).prod(-1)
    area0 = (boxes0[..., 2:] - boxes0[..., :2]).clamp(min=0.0).prod(-1)
    area1 = (boxes1[..., 2:] - boxes1[..., :2]).clamp(min=0.0).prod(-1)
    return overlap / (area0 + area1 - overlap + eps)


def hard_nms(box_scores: torch.Tensor, iou_threshold: float, top_k: int, candidate_size: int) -> torch.Tensor:
    """box_utils.hard_nms: the best ``candidate_size``, greedy keeping IoU <= threshold, ``top_k`` at most."""
    scores, boxes = box_scores[:, -1], box_scores[:, :-1]
    picked: List[int] = []
    indexes = scores.sort(descending=True)[1][:candidate_size]
    while len(indexes) > 0:
        current = indexes[0]
        picked.append(int(current))
        if 0 < top_k == len(picked) or len(indexes) == 1:
            break
        indexes = indexes[1:]
        indexes = indexes[_iou(boxes[indexes], boxes[current].unsqueeze(0)) <= iou_threshold]
    return box_scores[picked]


def decode(locations: torch.Tensor, logits: torch.Tensor, size: int, image_shape: Sequence[int],
           candidate_size: int = 800, threshold: float = 0.1) -> Dict[str, np.ndarray]:
    """SSD.forward's is_test decoding, then Predictor.predict(image, candidate_size / 2, threshold) with
    iou_threshold 0.3 and ``candidate_size`` (evaluation_on_widerface.py's), on one image's ``locations``
    (N, 4) and ``logits`` (N, C): boxes (K, 4) xyxy pixels of ``image_shape``, best first."""
    prior = priors(size)
    locations = torch.as_tensor(locations, dtype=torch.float32)
    scores = torch.softmax(torch.as_tensor(logits, dtype=torch.float32), dim=1)
    centre = torch.cat([locations[:, :2] * 0.1 * prior[:, 2:] + prior[:, :2],
                        torch.exp(locations[:, 2:] * 0.2) * prior[:, 2:]], 1)
    boxes = torch.cat([centre[:, :2] - centre[:, 2:] / 2, centre[:, :2] + centre[:, 2:] / 2], 1)
    picked, labels = [], []
    for label in range(1, scores.size(1)):
        probs = scores[:, label]
        mask = probs > threshold
        if int(mask.sum()) == 0:
            continue
        kept = hard_nms(torch.cat([boxes[mask], probs[mask].reshape(-1, 1)], 1), 0.3, int(candidate_size / 2),
                        candidate_size)
        picked.append(kept)
        labels += [label] * kept.size(0)
    found = torch.cat(picked) if picked else torch.zeros(0, 5)
    order = torch.argsort(-found[:, 4], stable=True)
    height, width = image_shape[:2]
    return {"boxes": found[order, :4].numpy() * np.array([width, height, width, height]),
            "scores": found[order, 4].numpy(), "labels": np.array(labels)[order.numpy()]}


def decisive_ultraface(rfb: bool, num_classes: int, images: Sequence[np.ndarray], size: int = 320, seed: int = 0,
                       logit_max: float = 6.0, offset_max: float = 2.0) -> UltraFaceSSD:
    """Seeded He-initialised convs, varied BatchNorm affines with statistics measured on ``images`` (each
    variance at least its layer's median), heads scaled so logits reach +-``logit_max`` and offsets
    +-``offset_max`` on them: confident, varied detections near their priors."""
    torch.manual_seed(seed)
    net = UltraFaceSSD(rfb, num_classes)
    for m in net.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, nonlinearity="relu")
            if m.bias is not None:
                nn.init.uniform_(m.bias, -0.1, 0.1)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.uniform_(m.weight, 0.5, 1.5)
            nn.init.uniform_(m.bias, -0.2, 0.2)
            m.reset_running_stats()
            m.momentum = None
    batch = torch.stack([transform(image, size) for image in images])
    with torch.no_grad():
        net.train()
        net(batch)
        net.eval()
        for m in net.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_var.clamp_(min=float(m.running_var.median()))
        for feed, cls, reg in zip(_sources(net, batch), net.classification_headers, net.regression_headers):
            for head, limit in ((cls, logit_max), (reg, offset_max)):
                last = head[-1] if isinstance(head, nn.Sequential) else head  # the linear 1x1 conv
                factor = limit / float(head(feed).abs().max())
                last.weight.mul_(factor)
                last.bias.mul_(factor)
    return net


def _sources(net: UltraFaceSSD, x: torch.Tensor) -> List[torch.Tensor]:
    """The four feature maps the heads read."""
    feeds, start = [], 0
    for end in net.SOURCES:
        for layer in net.base_net[start:end]:
            x = layer(x)
        feeds.append(x)
        start = end
    feeds.append(net.extras[0](x))
    return feeds
