"""pytorch-ssd's own inference, written from its code's maths (vision/utils/box_utils.py,
vision/ssd/predictor.py, vision/ssd/data_preprocessing.py, vision/ssd/config/*.py) for the parity tests:
its transform, priors, decoding and per-class hard NMS. The network itself is the module under test."""

from __future__ import annotations

import itertools
import math
from typing import Dict, List, Sequence

import cv2
import numpy as np
import torch

# (feature map, shrinkage, min size, max size, aspect ratios) of the configs at 300 pixels.
SPECS = {
    "vgg": [(38, 8, 30, 60, [2]), (19, 16, 60, 111, [2, 3]), (10, 32, 111, 162, [2, 3]), (5, 64, 162, 213, [2, 3]),
            (3, 100, 213, 264, [2]), (1, 300, 264, 315, [2])],
    "mobilenet": [(19, 16, 60, 105, [2, 3]), (10, 32, 105, 150, [2, 3]), (5, 64, 150, 195, [2, 3]),
                  (3, 100, 195, 240, [2, 3]), (2, 150, 240, 285, [2, 3]), (1, 300, 285, 330, [2, 3])],
    "squeezenet": [(17, 16, 60, 105, [2, 3]), (10, 32, 105, 150, [2, 3]), (5, 64, 150, 195, [2, 3]),
                   (3, 100, 195, 240, [2, 3]), (2, 150, 240, 285, [2, 3]), (1, 300, 285, 330, [2, 3])],
}


def specs_for(network: str, feature_maps: Sequence[int], size: int) -> List[tuple]:
    """The specs ``network`` trains with at ``size``; other sizes follow dusty-nv's set_image_size."""
    if size == 300:
        return SPECS["vgg" if network == "vgg16-ssd" else "squeezenet" if network == "sq-ssd-lite" else "mobilenet"]
    step = int(math.floor((90 - 20) / (len(feature_maps) - 2)))
    mins = [size * 10 / 100.0] + [size * r / 100.0 for r in range(20, 91, step)]
    maxs = [size * 20 / 100.0] + [size * (r + step) / 100.0 for r in range(20, 91, step)]
    return [(f, math.ceil(size * 1.0 / f), lo, hi, [2, 3]) for f, lo, hi in zip(feature_maps, mins, maxs)]


def priors(specs: Sequence[tuple], size: int) -> torch.Tensor:
    """generate_ssd_priors: (N, 4) centre-form priors relative to the image, clamped to [0, 1]."""
    out = []
    for cells, shrinkage, low, high, ratios in specs:
        scale = size / shrinkage
        for j, i in itertools.product(range(cells), repeat=2):
            cx, cy = (i + 0.5) / scale, (j + 0.5) / scale
            small, big = low / size, math.sqrt(high * low) / size
            out += [[cx, cy, small, small], [cx, cy, big, big]]
            for ratio in ratios:
                r = math.sqrt(ratio)
                out += [[cx, cy, small * r, small / r], [cx, cy, small / r, small * r]]
    return torch.clamp(torch.tensor(out), 0.0, 1.0)


def transform(image_bgr: np.ndarray, size: int, mean: Sequence[float], std: float) -> torch.Tensor:
    """PredictionTransform on the RGB image as run_ssd_example.py reads it."""
    rgb = cv2.cvtColor(image_bgr, cv2.COLOR_BGR2RGB)
    resized = cv2.resize(rgb, (size, size)).astype(np.float32)
    resized -= np.array(mean, dtype=np.float32)
    return torch.from_numpy((resized / std).astype(np.float32)).permute(2, 0, 1)


def _iou(boxes0: torch.Tensor, boxes1: torch.Tensor, eps: float = 1e-5) -> torch.Tensor:
    def area(lt: torch.Tensor, rb: torch.Tensor) -> torch.Tensor:
        wh = torch.clamp(rb - lt, min=0.0)
        return wh[..., 0] * wh[..., 1]

    overlap = area(torch.max(boxes0[..., :2], boxes1[..., :2]), torch.min(boxes0[..., 2:], boxes1[..., 2:]))
    return overlap / (area(boxes0[..., :2], boxes0[..., 2:]) + area(boxes1[..., :2], boxes1[..., 2:]) - overlap + eps)


def hard_nms(box_scores: torch.Tensor, iou_threshold: float, candidate_size: int = 200) -> torch.Tensor:
    scores, boxes = box_scores[:, -1], box_scores[:, :-1]
    picked: List[int] = []
    indexes = scores.sort(descending=True)[1][:candidate_size]
    while len(indexes) > 0:
        current = indexes[0]
        picked.append(int(current))
        if len(indexes) == 1:
            break
        indexes = indexes[1:]
        indexes = indexes[_iou(boxes[indexes], boxes[current].unsqueeze(0)) <= iou_threshold]
    return box_scores[picked]


def network_input(network: str, image_bgr: np.ndarray, size: int = 300) -> torch.Tensor:
    """The (1, 3, size, size) tensor Predictor gives the network: PredictionTransform with the config's mean
    and std (vgg: 123, 117, 104 and 1; the others: 127 and 128)."""
    vgg = network == "vgg16-ssd"
    return transform(image_bgr, size, [123, 117, 104] if vgg else [127, 127, 127], 1.0 if vgg else 128.0)[None]


def decode(locations: torch.Tensor, logits: torch.Tensor, network: str, maps: Sequence[int], size: int,
           image_shape: Sequence[int], threshold: float = 0.01, iou_threshold: float = 0.45) -> Dict[str, np.ndarray]:
    """Predictor.predict's work after the network, on one image's ``locations`` (N, 4) and ``logits``
    (N, C) (background first, as SSD.forward returns them): softmax, priors of ``maps`` (the feature map
    sizes), convert_locations_to_boxes, per-class hard NMS, scaled to ``image_shape`` (height, width)."""
    locations, logits = torch.as_tensor(locations, dtype=torch.float32), torch.as_tensor(logits, dtype=torch.float32)
    scores = torch.softmax(logits, dim=1)
    prior = priors(specs_for(network, maps, size), size)
    centre = torch.cat([locations[:, :2] * 0.1 * prior[:, 2:] + prior[:, :2],
                        torch.exp(locations[:, 2:] * 0.2) * prior[:, 2:]], dim=-1)
    boxes = torch.cat([centre[:, :2] - centre[:, 2:] / 2, centre[:, :2] + centre[:, 2:] / 2], dim=-1)
    picked, labels = [], []
    for cls in range(1, scores.size(1)):
        mask = scores[:, cls] > threshold
        if int(mask.sum()) == 0:
            continue
        kept = hard_nms(torch.cat([boxes[mask], scores[mask, cls].reshape(-1, 1)], dim=1), iou_threshold)
        picked.append(kept)
        labels += [cls] * kept.size(0)
    every = torch.cat(picked)
    height, width = image_shape[:2]
    every[:, :4] *= torch.tensor([width, height, width, height], dtype=every.dtype)
    order = np.argsort(-every[:, 4].numpy(), kind="stable")
    return {"boxes": every[:, :4].numpy()[order], "scores": every[:, 4].numpy()[order],
            "labels": np.asarray(labels)[order]}


def run_network(net: torch.nn.Module, x: torch.Tensor) -> tuple:
    """(locations (1, N, 4), logits (1, N, C), feature map sizes) of a test-mode SSD on input ``x``."""
    with torch.no_grad():
        locations, logits = net(torch.as_tensor(x))
        maps = [int(m.shape[-1]) for m in net.feature_maps(torch.as_tensor(x))]
    return locations, logits, maps


def predict(net: torch.nn.Module, network: str, image_bgr: np.ndarray, size: int = 300,
            threshold: float = 0.01, iou_threshold: float = 0.45) -> Dict[str, np.ndarray]:
    """Predictor.predict(image) of a test-mode SSD: boxes (K, 4) xyxy image pixels, labels, scores, best
    first."""
    locations, logits, maps = run_network(net, network_input(network, image_bgr, size))
    return decode(locations[0], logits[0], network, maps, size, image_bgr.shape, threshold, iou_threshold)
