"""NVIDIA DeepLearningExamples' SSD300 (PyTorch/Detection/SSD) written from its code's maths for the parity
tests: model.py's network in its own layout (``bbox_view``: locations (B, 4, 8732), logits (B, C, 8732),
priors box-major within a level), utils.py's ``dboxes300_coco``, ``SSDTransformer``'s validation transform
and ``Encoder.decode_batch`` as evaluate.py calls it."""

from __future__ import annotations

import itertools
import math
from typing import Dict, List, Sequence, Tuple

import numpy as np
import torch
import torchvision
from PIL import Image
from torch import nn
from torchvision import transforms

FEATURE_MAPS, STEPS = [38, 19, 10, 5, 3, 1], [8, 16, 32, 64, 100, 300]
SCALES = [21, 45, 99, 153, 207, 261, 315]
RATIOS = [[2], [2, 3], [2, 3], [2, 3], [2], [2]]
BOXES = [4, 6, 6, 6, 4, 4]
CHANNELS = [1024, 512, 512, 256, 256, 256]  # ResNet('resnet50').out_channels


class SSD300(nn.Module):
    """model.py's SSD300(ResNet('resnet50')) for ``num_classes`` (its label_num): (locs (B, 4, N), confs (B, C, N))."""

    def __init__(self, num_classes: int) -> None:
        super().__init__()
        trunk = nn.Module()
        resnet = torchvision.models.resnet50(weights=None)
        trunk.feature_extractor = nn.Sequential(*list(resnet.children())[:7])
        first = resnet.layer3[0]
        first.conv1.stride, first.conv2.stride, first.downsample[0].stride = (1, 1), (1, 1), (1, 1)
        self.feature_extractor = trunk
        blocks = []
        for i, (c_in, c_out, mid) in enumerate(zip(CHANNELS[:-1], CHANNELS[1:], [256, 256, 128, 128, 128])):
            last = nn.Conv2d(mid, c_out, 3, padding=1, stride=2, bias=False) if i < 3 else \
                nn.Conv2d(mid, c_out, 3, bias=False)
            blocks.append(nn.Sequential(nn.Conv2d(c_in, mid, 1, bias=False), nn.BatchNorm2d(mid), nn.ReLU(inplace=True),
                                        last, nn.BatchNorm2d(c_out), nn.ReLU(inplace=True)))
        self.additional_blocks = nn.ModuleList(blocks)
        self.loc = nn.ModuleList(nn.Conv2d(c, n * 4, 3, padding=1) for c, n in zip(CHANNELS, BOXES))
        self.conf = nn.ModuleList(nn.Conv2d(c, n * num_classes, 3, padding=1) for c, n in zip(CHANNELS, BOXES))
        self.num_classes = num_classes

    def sources(self, x: torch.Tensor) -> List[torch.Tensor]:
        x = self.feature_extractor.feature_extractor(x)
        feeds = [x]
        for block in self.additional_blocks:
            x = block(x)
            feeds.append(x)
        return feeds

    def forward(self, x: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        feeds = self.sources(x)
        locs = [loc(s).reshape(s.size(0), 4, -1) for s, loc in zip(feeds, self.loc)]
        confs = [conf(s).reshape(s.size(0), self.num_classes, -1) for s, conf in zip(feeds, self.conf)]
        return torch.cat(locs, 2).contiguous(), torch.cat(confs, 2).contiguous()


def dboxes() -> torch.Tensor:
    """DefaultBoxes(300, ...) in ``xywh`` order: (8732, 4) float32 centre-size, clamped to [0, 1]; per level
    each (w, h) pair over all cells."""
    found = []
    for idx, size in enumerate(FEATURE_MAPS):
        fk = 300 / np.array(STEPS)
        sk1, sk2 = SCALES[idx] / 300, SCALES[idx + 1] / 300
        sk3 = math.sqrt(sk1 * sk2)
        sizes = [(sk1, sk1), (sk3, sk3)]
        for alpha in RATIOS[idx]:
            w, h = sk1 * math.sqrt(alpha), sk1 / math.sqrt(alpha)
            sizes += [(w, h), (h, w)]
        for w, h in sizes:
            for i, j in itertools.product(range(size), repeat=2):
                found.append(((j + 0.5) / fk[idx], (i + 0.5) / fk[idx], w, h))
    return torch.tensor(found, dtype=torch.float).clamp_(min=0, max=1)


def codebase_order() -> np.ndarray:
    """For each prior in the toolkit's order (level, cell, box), its index in the codebase's (level, box, cell)."""
    index, offset = [], 0
    for size, boxes in zip(FEATURE_MAPS, BOXES):
        cells = size * size
        index += [offset + box * cells + cell for cell in range(cells) for box in range(boxes)]
        offset += cells * boxes
    return np.array(index)


def transform(image_bgr: np.ndarray) -> torch.Tensor:
    """SSDTransformer((300, 300), val=True).trans_val on the RGB PIL image: (3, 300, 300)."""
    pipeline = transforms.Compose([transforms.Resize((300, 300)), transforms.ToTensor(),
                                   transforms.Normalize(mean=[0.485, 0.456, 0.406], std=[0.229, 0.224, 0.225])])
    return pipeline(Image.fromarray(np.ascontiguousarray(image_bgr[:, :, ::-1])))


def _iou(boxes: torch.Tensor, box: torch.Tensor) -> torch.Tensor:
    """calc_iou_tensor(boxes, box[None]) squeezed: plain union."""
    lt = torch.max(boxes[:, :2], box[:2])
    rb = torch.min(boxes[:, 2:], box[2:])
    delta = (rb - lt).clamp(min=0)
    inter = delta[:, 0] * delta[:, 1]
    area = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    return inter / (area + (box[2] - box[0]) * (box[3] - box[1]) - inter)


def decode(ploc: torch.Tensor, plabel: torch.Tensor, image_shape: Sequence[int], criteria: float = 0.5,
           max_output: int = 200) -> Dict[str, np.ndarray]:
    """Encoder.decode_batch(ploc[None], plabel[None], criteria, max_output) for one image's ``ploc`` (4, N)
    and ``plabel`` (C, N), as evaluate.py reads it: boxes (K, 4) xyxy pixels of ``image_shape``, best first."""
    prior = dboxes()
    loc = torch.as_tensor(ploc, dtype=torch.float32).t().clone()
    xy = 0.1 * loc[:, :2] * prior[:, 2:] + prior[:, :2]
    wh = (0.2 * loc[:, 2:]).exp() * prior[:, 2:]
    boxes = torch.cat([xy - 0.5 * wh, xy + 0.5 * wh], 1)
    probs = torch.softmax(torch.as_tensor(plabel, dtype=torch.float32).t(), dim=-1)
    found: List[Tuple[float, int, np.ndarray]] = []
    for label in range(1, probs.shape[1]):
        score = probs[:, label]
        mask = score > 0.05
        cls_boxes, cls_scores = boxes[mask], score[mask]
        order = cls_scores.sort(dim=0)[1][-200:]
        while order.numel() > 0:
            best = int(order[-1])
            found.append((float(cls_scores[best]), label, cls_boxes[best].numpy()))
            order = order[_iou(cls_boxes[order], cls_boxes[best]) < criteria]
    found = sorted(found, key=lambda d: -d[0])[:max_output]
    height, width = image_shape[:2]
    return {"boxes": np.array([d[2] for d in found]).reshape(-1, 4) * np.array([width, height, width, height]),
            "scores": np.array([d[0] for d in found]), "labels": np.array([d[1] for d in found])}


def decisive_nvidia_ssd(num_classes: int, images: Sequence[np.ndarray], seed: int = 0, logit_max: float = 6.0,
                        offset_max: float = 2.0) -> SSD300:
    """Seeded He-initialised convs, varied BatchNorm affines with statistics measured on ``images`` (each
    variance at least its layer's median), each head's classification conv scaled so its logits reach
    +-``logit_max`` there and each regression conv so its offsets reach +-``offset_max``: confident, varied
    detections near their priors."""
    torch.manual_seed(seed)
    net = SSD300(num_classes)
    for m in net.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, nonlinearity="relu")
            if m.bias is not None:
                nn.init.uniform_(m.bias, -0.1, 0.1)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.uniform_(m.weight, 0.5, 1.5)
            nn.init.uniform_(m.bias, -0.2, 0.2)
            m.reset_running_stats()
            m.momentum = None  # a cumulative average over the measuring pass
    batch = torch.stack([transform(image) for image in images])
    with torch.no_grad():
        net.train()
        net.sources(batch)
        net.eval()
        for m in net.modules():
            if isinstance(m, nn.BatchNorm2d):
                # The 3x3 and 1x1 maps give two images 18 and 2 samples: a variance near 0 there would
                # magnify float32 noise between runtimes 100-fold (seen: 3e-3 of the range at level 5).
                m.running_var.clamp_(min=float(m.running_var.median()))
        for src, reg, cls in zip(net.sources(batch), net.loc, net.conf):
            for head, top in ((cls, logit_max), (reg, offset_max)):
                factor = top / float(head(src).abs().max())
                head.weight.mul_(factor)
                head.bias.mul_(factor)
    return net
