"""MMDetection's SSD inference, written from its code's maths (SSDAnchorGenerator, DeltaXYWHBBoxCoder,
SSDHead/BaseDenseHead's ``_predict_by_feat_single`` and ``_bbox_post_process``, mmcv's ``batched_nms``,
configs/_base_/models/ssd300.py, ssd512_coco.py, ssdlite_mobilenetv2) for the parity tests. SSD300's network:
SSDVGG + SSDNeck + SSDHead compute what ssd.pytorch's SSD computes (tests/ssd_pytorch_reference.py), so its
module serves, with its weights saved under MMDetection's keys and the LAST of each box's classes read as the
background; SSD512's and SSDLite's are functional (tests/mmdetection_reference_nets.py)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Dict, List, Sequence

import cv2
import numpy as np
import torch

from tests.ssd_pytorch_reference import SSD

RANGES = {"coco": (0.15, 0.9), "voc": (0.2, 0.9)}
STRIDES, MAPS = [8, 16, 32, 64, 100, 300], [38, 19, 10, 5, 3, 1]
RATIOS = [[2], [2, 3], [2, 3], [2, 3], [2], [2]]


def mmdet_state_dict(net: SSD) -> Dict[str, torch.Tensor]:
    """``net``'s weights under MMDetection (>= 2.18) keys: SSDVGG features, SSDNeck, SSDHead."""
    out = {}
    for key, value in net.state_dict().items():
        group, rest = key.split(".", 1)
        if group == "vgg":
            out[f"backbone.features.{rest}"] = value
        elif group == "L2Norm":
            out["neck.l2_norm.weight"] = value
        elif group == "extras":
            index, leaf = rest.split(".")
            out[f"neck.extra_layers.{int(index) // 2}.{int(index) % 2}.conv.{leaf}"] = value
        else:
            index, leaf = rest.split(".")
            out[f"bbox_head.{'cls' if group == 'conf' else 'reg'}_convs.{index}.0.{leaf}"] = value
    return out


@dataclass
class Priors:
    """An SSDAnchorGenerator: input size, per level stride, feature map, ratios, min and max sizes (pixels)."""

    size: int
    strides: Sequence[int]
    maps: Sequence[int]
    ratios: Sequence[Sequence[int]]
    mins: Sequence[int]
    maxs: Sequence[int]


def ssd300_priors(preset: str) -> Priors:
    """SSD300's sizes from basesize_ratio_range, the first level hard-coded per range."""
    low, high = int(RANGES[preset][0] * 100), int(RANGES[preset][1] * 100)
    step = int(np.floor(high - low) / 4)
    mins = [int(300 * r / 100) for r in range(low, high + 1, step)]
    maxs = [int(300 * (r + step) / 100) for r in range(low, high + 1, step)]
    first = (7, 15) if RANGES[preset][0] == 0.15 else (10, 20)
    return Priors(300, STRIDES, MAPS, RATIOS, [int(300 * first[0] / 100)] + mins, [int(300 * first[1] / 100)] + maxs)


# ssd512_voc0712 (basesize_ratio_range (0.15, 0.9): first level 7-15 %, then 15 + 15 k) and ssdlite's own sizes
SSD512_VOC = Priors(512, [8, 16, 32, 64, 128, 256, 512], [64, 32, 16, 8, 4, 2, 1],
                    [[2], [2, 3], [2, 3], [2, 3], [2, 3], [2], [2]],
                    [35, 76, 153, 230, 307, 384, 460], [76, 153, 230, 307, 384, 460, 537])
SSDLITE = Priors(320, [16, 32, 64, 107, 160, 320], [20, 10, 5, 3, 2, 1], [[2, 3]] * 6,
                 [48, 100, 150, 202, 253, 304], [100, 150, 202, 253, 304, 320])


def anchors(spec: "str | Priors") -> torch.Tensor:
    """SSDAnchorGenerator.grid_priors: (N, 4) xyxy pixels, level by level, cell by cell; ``spec`` an
    SSD300 preset name or the priors of another network."""
    spec = ssd300_priors(spec) if isinstance(spec, str) else spec
    levels = []
    for k, stride in enumerate(spec.strides):
        ratios = torch.tensor([1.0] + [x for r in spec.ratios[k] for x in (1 / r, r)])
        scales = torch.tensor([1.0, math.sqrt(spec.maxs[k] / spec.mins[k])])
        h_ratios = torch.sqrt(ratios)
        ws = (spec.mins[k] * scales[:, None] * (1 / h_ratios)[None, :]).view(-1)
        hs = (spec.mins[k] * scales[:, None] * h_ratios[None, :]).view(-1)
        centre = stride / 2.0
        base = torch.stack([centre - 0.5 * ws, centre - 0.5 * hs, centre + 0.5 * ws, centre + 0.5 * hs], dim=-1)
        order = list(range(len(ratios)))
        order.insert(1, len(order))  # the second scale's square right after the first
        base = base[order]
        shift = torch.arange(spec.maps[k], dtype=torch.float32) * stride
        yy, xx = torch.meshgrid(shift, shift, indexing="ij")
        shifts = torch.stack([xx.reshape(-1), yy.reshape(-1)] * 2, dim=-1)
        levels.append((base[None] + shifts[:, None]).reshape(-1, 4))
    return torch.cat(levels)


def decode(priors: torch.Tensor, deltas: torch.Tensor, size: int = 300) -> torch.Tensor:
    """DeltaXYWHBBoxCoder.decode (means 0, stds 0.1, 0.1, 0.2, 0.2), clipped to the size x size input."""
    d = deltas * torch.tensor([0.1, 0.1, 0.2, 0.2])
    limit = abs(math.log(16 / 1000))
    pxy, pwh = (priors[:, :2] + priors[:, 2:]) * 0.5, priors[:, 2:] - priors[:, :2]
    gxy, gwh = pxy + pwh * d[:, :2], pwh * d[:, 2:].clamp(-limit, limit).exp()
    return torch.cat([gxy - gwh * 0.5, gxy + gwh * 0.5], dim=-1).clamp(0, size)


def greedy_nms(boxes: torch.Tensor, scores: torch.Tensor, iou: float) -> List[int]:
    """mmcv's nms: best first, a box dropped when its IoU with a kept one exceeds ``iou``."""
    area = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    order = scores.argsort(descending=True)
    keep: List[int] = []
    while order.numel():
        i = int(order[0])
        keep.append(i)
        lt, rb = torch.max(boxes[order[1:], :2], boxes[i, :2]), torch.min(boxes[order[1:], 2:], boxes[i, 2:])
        inter = (rb - lt).clamp(min=0).prod(dim=1)
        order = order[1:][inter / (area[order[1:]] + area[i] - inter) <= iou]
    return keep


def network_input(image_bgr: np.ndarray, size: int = 300, std: Sequence[float] = (1.0, 1.0, 1.0)) -> torch.Tensor:
    """The test pipeline and data_preprocessor: Resize size x size (bilinear on the uint8 image, no ratio
    kept), BGR to RGB, minus mean over ``std``: (1, 3, size, size)."""
    x = cv2.resize(image_bgr, (size, size), interpolation=cv2.INTER_LINEAR)[:, :, ::-1].astype(np.float32)
    x = (x - np.array([123.675, 116.28, 103.53], dtype=np.float32)) / np.asarray(std, dtype=np.float32)
    return torch.from_numpy(x.copy()).permute(2, 0, 1)[None]


def decode_outputs(loc: torch.Tensor, conf: torch.Tensor, preset: "str | Priors", image_shape: Sequence[int],
                   score_thr: float = 0.02, nms_pre: int = 1000, iou: float = 0.45,
                   max_per_img: int = 200) -> Dict[str, np.ndarray]:
    """SSDHead's predict_by_feat with test_cfg on one image's ``loc`` (N, 4) deltas and ``conf`` (N, C)
    logits, the background LAST (MMDetection's order): boxes (K, 4) xyxy pixels of an image of
    ``image_shape``, labels (1-based: the toolkit's, MMDetection's label + 1), scores, best first."""
    loc, conf = torch.as_tensor(loc, dtype=torch.float32), torch.as_tensor(conf, dtype=torch.float32)
    height, width = image_shape[:2]
    scores = torch.softmax(conf, dim=-1)[:, :-1]
    spec = ssd300_priors(preset) if isinstance(preset, str) else preset
    prior = anchors(spec)
    picked: List[torch.Tensor] = []
    start = 0
    for cells, ratios in zip(spec.maps, spec.ratios):
        stop = start + cells * cells * (2 + 2 * len(ratios))
        level = scores[start:stop]
        valid = torch.nonzero(level > score_thr)
        kept, order = level[valid[:, 0], valid[:, 1]].sort(descending=True)
        top = valid[order[:nms_pre]]
        picked.append(torch.cat([(top[:, :1] + start).float(), top[:, 1:].float(), kept[:nms_pre, None]], dim=1))
        start = stop
    cand = torch.cat(picked)
    anchor_idx, labels, cand_scores = cand[:, 0].long(), cand[:, 1].long(), cand[:, 2]
    size = spec.size
    boxes = decode(prior[anchor_idx], loc[anchor_idx], size) / torch.tensor([size / width, size / height] * 2)
    offsets = labels.to(boxes) * (boxes.max() + 1)
    keep = greedy_nms(boxes + offsets[:, None], cand_scores, iou)[:max_per_img]
    return {"boxes": boxes[keep].numpy(), "scores": cand_scores[keep].numpy(), "labels": labels[keep].numpy() + 1}


def predict(net: SSD, preset: str, image_bgr: np.ndarray, score_thr: float = 0.02, nms_pre: int = 1000,
            iou: float = 0.45, max_per_img: int = 200) -> Dict[str, np.ndarray]:
    """SingleStageDetector.predict with ssd300.py's pipeline and test_cfg: boxes (K, 4) xyxy image pixels,
    labels (1-based: the toolkit's, MMDetection's label + 1), scores, best first."""
    with torch.no_grad():
        loc, conf = net(network_input(image_bgr))
    return decode_outputs(loc[0], conf[0], preset, image_bgr.shape, score_thr, nms_pre, iou, max_per_img)
