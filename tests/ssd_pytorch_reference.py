"""amdegroot/ssd.pytorch's network and inference, written from its code's maths (ssd.py, layers/modules/
l2norm.py, layers/functions/prior_box.py, layers/functions/detection.py, layers/box_utils.py, data/config.py,
data/__init__.py's BaseTransform, data/voc0712.py's pull_item) for the parity tests: its state dict layout
(``vgg.N``, ``L2Norm.weight``, ``extras.N``, ``loc.N``, ``conf.N``), its priors, decoding and Detect."""

from __future__ import annotations

import itertools
import math
from typing import Dict, List, Sequence, Tuple

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

BASE = [64, 64, "M", 128, 128, "M", 256, 256, 256, "C", 512, 512, 512, "M", 512, 512, 512]
EXTRAS = [256, "S", 512, 128, "S", 256, 128, 256, 128, 256]
MBOX = [4, 6, 6, 6, 4, 4]
SIZES = {"voc": ([30, 60, 111, 162, 213, 264], [60, 111, 162, 213, 264, 315]),
         "coco": ([21, 45, 99, 153, 207, 261], [45, 99, 153, 207, 261, 315])}
RATIOS = [[2], [2, 3], [2, 3], [2, 3], [2], [2]]


def _vgg() -> List[nn.Module]:
    layers: List[nn.Module] = []
    channels = 3
    for v in BASE:
        if v in ("M", "C"):
            layers.append(nn.MaxPool2d(2, 2, ceil_mode=v == "C"))
        else:
            layers += [nn.Conv2d(channels, int(v), 3, padding=1), nn.ReLU(inplace=True)]
            channels = int(v)
    return layers + [nn.MaxPool2d(3, 1, 1), nn.Conv2d(512, 1024, 3, padding=6, dilation=6), nn.ReLU(inplace=True),
                     nn.Conv2d(1024, 1024, 1), nn.ReLU(inplace=True)]


def _extras() -> List[nn.Module]:
    layers: List[nn.Module] = []
    channels, small = 1024, False
    for k, v in enumerate(EXTRAS):
        if channels != "S":
            if v == "S":
                layers.append(nn.Conv2d(int(channels), EXTRAS[k + 1], (1, 3)[small], stride=2, padding=1))
            else:
                layers.append(nn.Conv2d(int(channels), int(v), (1, 3)[small]))
            small = not small
        channels = v
    return layers


class L2Norm(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.full((512,), 20.0))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.weight[None, :, None, None] * (x / (x.pow(2).sum(dim=1, keepdim=True).sqrt() + 1e-10))


class SSD(nn.Module):
    """ssd.py's SSD in train phase: (loc (B, N, 4), conf (B, N, C)) raw."""

    def __init__(self, num_classes: int) -> None:
        super().__init__()
        self.vgg = nn.ModuleList(_vgg())
        self.L2Norm = L2Norm()
        self.extras = nn.ModuleList(_extras())
        sources = [512, 1024] + [self.extras[k].out_channels for k in range(1, 8, 2)]
        self.loc = nn.ModuleList(nn.Conv2d(c, a * 4, 3, padding=1) for c, a in zip(sources, MBOX))
        self.conf = nn.ModuleList(nn.Conv2d(c, a * num_classes, 3, padding=1) for c, a in zip(sources, MBOX))
        self.num_classes = num_classes

    def sources(self, x: torch.Tensor) -> List[torch.Tensor]:
        for k in range(23):
            x = self.vgg[k](x)
        out = [self.L2Norm(x)]
        for k in range(23, len(self.vgg)):
            x = self.vgg[k](x)
        out.append(x)
        for k, v in enumerate(self.extras):
            x = F.relu(v(x), inplace=True)
            if k % 2 == 1:
                out.append(x)
        return out

    def forward(self, x: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        srcs = self.sources(x)
        loc = torch.cat([h(s).permute(0, 2, 3, 1).reshape(x.size(0), -1) for s, h in zip(srcs, self.loc)], 1)
        conf = torch.cat([h(s).permute(0, 2, 3, 1).reshape(x.size(0), -1) for s, h in zip(srcs, self.conf)], 1)
        return loc.view(x.size(0), -1, 4), conf.view(x.size(0), -1, self.num_classes)


def priors(preset: str) -> torch.Tensor:
    """PriorBox.forward: (N, 4) centre-size, relative, clamped to [0, 1]."""
    mins, maxs = SIZES[preset]
    mean: List[float] = []
    for k, f in enumerate([38, 19, 10, 5, 3, 1]):
        for i, j in itertools.product(range(f), repeat=2):
            f_k = 300 / [8, 16, 32, 64, 100, 300][k]
            cx, cy = (j + 0.5) / f_k, (i + 0.5) / f_k
            s_k = mins[k] / 300
            mean += [cx, cy, s_k, s_k]
            s_prime = math.sqrt(s_k * (maxs[k] / 300))
            mean += [cx, cy, s_prime, s_prime]
            for ar in RATIOS[k]:
                mean += [cx, cy, s_k * math.sqrt(ar), s_k / math.sqrt(ar)]
                mean += [cx, cy, s_k / math.sqrt(ar), s_k * math.sqrt(ar)]
    return torch.tensor(mean, dtype=torch.float32).view(-1, 4).clamp_(max=1, min=0)


def transform(image_bgr: np.ndarray) -> torch.Tensor:
    """BaseTransform(300, (104, 117, 123)) then pull_item's reversal to RGB: (3, 300, 300)."""
    x = cv2.resize(image_bgr, (300, 300)).astype(np.float32)
    x -= np.array((104, 117, 123), dtype=np.float32)
    return torch.from_numpy(x[:, :, (2, 1, 0)].copy()).permute(2, 0, 1)


def nms(boxes: torch.Tensor, scores: torch.Tensor, overlap: float, top_k: int) -> List[int]:
    """box_utils.nms: the top_k best by score, then greedy, keeping IoU <= overlap."""
    area = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    idx = scores.sort(0)[1][-top_k:]
    keep: List[int] = []
    while idx.numel() > 0:
        i = int(idx[-1])
        keep.append(i)
        idx = idx[:-1]
        if idx.numel() == 0:
            break
        lt = torch.max(boxes[idx, :2], boxes[i, :2])
        rb = torch.min(boxes[idx, 2:], boxes[i, 2:])
        inter = (rb - lt).clamp(min=0.0).prod(dim=1)
        idx = idx[(inter / ((area[idx] - inter) + area[i])).le(overlap)]
    return keep


def decode(loc: torch.Tensor, conf: torch.Tensor, preset: str, image_shape: Sequence[int]) -> Dict[str, np.ndarray]:
    """Detect (0.01, 0.45, top_k 200) on one image's ``loc`` (N, 4) and ``conf`` (N, C) logits (background
    first), as eval.py reads it: boxes (K, 4) xyxy pixels of an image of ``image_shape``, best first."""
    loc, conf = torch.as_tensor(loc, dtype=torch.float32), torch.as_tensor(conf, dtype=torch.float32)
    scores = torch.softmax(conf, dim=-1).t()
    prior = priors(preset)
    centre = torch.cat([prior[:, :2] + loc[:, :2] * 0.1 * prior[:, 2:],
                        prior[:, 2:] * torch.exp(loc[:, 2:] * 0.2)], 1)
    boxes = torch.cat([centre[:, :2] - centre[:, 2:] / 2, centre[:, :2] + centre[:, 2:] / 2], 1)
    found: List[Tuple[float, int, np.ndarray]] = []
    for cl in range(1, conf.shape[1]):
        mask = scores[cl].gt(0.01)
        if int(mask.sum()) == 0:
            continue
        cls_boxes, cls_scores = boxes[mask], scores[cl][mask]
        found += [(float(cls_scores[i]), cl, cls_boxes[i].numpy()) for i in nms(cls_boxes, cls_scores, 0.45, 200)]
    found.sort(key=lambda d: -d[0])
    height, width = image_shape[:2]
    return {"boxes": np.array([d[2] for d in found]).reshape(-1, 4) * np.array([width, height, width, height]),
            "scores": np.array([d[0] for d in found]), "labels": np.array([d[1] for d in found])}


def predict(net: SSD, preset: str, image_bgr: np.ndarray) -> Dict[str, np.ndarray]:
    """Detect (0.01, 0.45, top_k 200) as eval.py reads it: boxes (K, 4) xyxy image pixels, best first."""
    with torch.no_grad():
        loc, conf = net(transform(image_bgr)[None])
    return decode(loc[0], conf[0], preset, image_bgr.shape)


def decisive_ssd(num_classes: int, images: Sequence[np.ndarray], seed: int = 0, logit_max: float = 6.0,
                 offset_max: float = 2.0) -> SSD:
    """Seeded He-initialised weights (features stay alive through VGG's 15 ReLU convs), each head's
    classification conv scaled so its logits reach +-``logit_max`` on ``images``, each regression conv so
    its offsets reach +-``offset_max``: confident, varied detections near their priors."""
    torch.manual_seed(seed)
    net = SSD(num_classes).eval()
    for m in net.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, nonlinearity="relu")
            nn.init.uniform_(m.bias, -0.1, 0.1)
    with torch.no_grad():
        net.L2Norm.weight.uniform_(10.0, 30.0)  # varied, so a misplaced scale shows
        batch = torch.stack([transform(image) for image in images])
        for src, reg, cls in zip(net.sources(batch), net.loc, net.conf):
            for head, top in ((cls, logit_max), (reg, offset_max)):
                factor = top / float(head(src).abs().max())
                head.weight.mul_(factor)
                head.bias.mul_(factor)
    return net
