"""Seeded random-weight SSDs whose scores are decisive, for parity tests and benchmarks.

A freshly initialised SSD gives near-uniform class scores, which makes every comparison a tie-break
contest. The last classification convs are scaled up so that scores spread out, and for SSDLite the
BatchNorm statistics are re-estimated on real images first (fresh statistics make its outputs ~1e-15).
"""

from __future__ import annotations

from pathlib import Path
from typing import List

import cv2
import numpy as np
import torch

from export.architectures import build_model

VOC_MINI = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "voc-mini"


def voc_mini_images() -> List[Path]:
    return sorted((VOC_MINI / "VOCdevkit").glob("VOC*/JPEGImages/*.jpg"))


def _recalibrate_batchnorm(model: torch.nn.Module, size: int, images: List[Path]) -> None:
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.reset_running_stats()
            m.momentum = None  # cumulative average over all batches
    model.train()
    with torch.no_grad():
        batch = []
        for path in images[:16]:
            rgb = cv2.cvtColor(cv2.resize(cv2.imread(str(path)), (size, size)), cv2.COLOR_BGR2RGB)
            batch.append(torch.from_numpy(rgb.transpose(2, 0, 1).astype(np.float32) / 127.5 - 1.0))
        model.head(list(model.backbone(torch.stack(batch)).values()))
    model.eval()


def _sample_batch(size: int, images: List[Path], mean: float, scale: float) -> torch.Tensor:
    batch = []
    for path in images[:8]:
        rgb = cv2.cvtColor(cv2.resize(cv2.imread(str(path)), (size, size)), cv2.COLOR_BGR2RGB)
        batch.append(torch.from_numpy((rgb.transpose(2, 0, 1).astype(np.float32) - mean) * scale))
    return torch.stack(batch)


def decisive_model(arch: str, num_classes: int = 21, seed: int = 0, logit_max: float = 6.0) -> torch.nn.Module:
    """Random ``arch`` whose class logits reach +-``logit_max`` on real images: spread out enough to
    decide, not so far that softmax saturates near 1.0, where float32 scores tie and the order of tied
    boxes (an implementation detail of each sort) would decide NMS."""
    torch.manual_seed(seed)
    model = build_model(arch, num_classes)
    size = model.transform.fixed_size[0]
    images = voc_mini_images()
    if arch.startswith("ssdlite"):
        _recalibrate_batchnorm(model, size, images)
        batch = _sample_batch(size, images, 127.5, 1 / 127.5)
    else:
        batch = _sample_batch(size, images, 117.0, 1.0)
    with torch.no_grad():
        logits = model.head(list(model.backbone(batch).values()))["cls_logits"]
        factor = logit_max / float(logits.abs().max())
        for block in model.head.classification_head.module_list:
            last_conv = [m for m in block.modules() if isinstance(m, torch.nn.Conv2d)][-1]
            last_conv.weight.mul_(factor)  # the logits are this conv's output: they scale by factor
            if last_conv.bias is not None:
                last_conv.bias.mul_(factor)
    return model.eval()


def save_state_dict(model: torch.nn.Module, path: Path) -> Path:
    torch.save(model.state_dict(), path)
    return path


def _last_conv(module: torch.nn.Module) -> torch.nn.Conv2d:
    return [m for m in module.modules() if isinstance(m, torch.nn.Conv2d)][-1]


def decisive_pytorch_ssd(network: str, num_classes: int = 21, seed: int = 0, size: int = 300,
                         logit_max: float = 6.0, offset_max: float = 2.0) -> torch.nn.Module:
    """A pytorch-ssd ``network`` (importers/pytorch_ssd_networks.py, keys and shapes checked against the
    codebase by tests/test_importers_pytorch_ssd.py) with seeded random weights whose detections are
    decisive and distinct: He-initialised convs and BatchNorm statistics measured on real images keep the
    features alive (PyTorch's default init shrinks them until ReLU zeroes whole regions, whose anchors then
    tie exactly, and pytorch-ssd's unstable sort orders ties arbitrarily); BatchNorm's affine terms are drawn
    away from identity (so a misplaced one shows); each head's last classification conv is scaled so that its
    logits reach +-``logit_max`` on real images, each regression conv so that its offsets reach
    +-``offset_max`` (boxes stay near their priors, as a trained model's do)."""
    from importers.pytorch_ssd import MOBILE_MEAN, MOBILE_STD, VGG_MEAN
    from importers.pytorch_ssd_networks import build, layouts

    torch.manual_seed(seed)
    model = build(layouts()[network], num_classes)
    for m in model.modules():
        if isinstance(m, torch.nn.Conv2d):
            torch.nn.init.kaiming_normal_(m.weight, nonlinearity="relu")
            if m.bias is not None:
                torch.nn.init.uniform_(m.bias, -0.1, 0.1)
    vgg = network == "vgg16-ssd"
    batch = _sample_batch(size, voc_mini_images(), VGG_MEAN[1] if vgg else MOBILE_MEAN[0],
                          1.0 if vgg else 1.0 / MOBILE_STD[0])
    norms = [m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    for m in norms:
        m.reset_running_stats()
        m.momentum = None  # the average over the one batch
    model.train()
    with torch.no_grad():
        model.feature_maps(batch)
        for m in norms:  # a channel that is almost constant on the batch would amplify float noise 300-fold
            m.running_var.clamp_(min=float(m.running_var.median()) * 0.1)
            m.weight.uniform_(0.7, 1.3)
            m.bias.uniform_(-0.2, 0.2)
    model.eval()
    with torch.no_grad():
        maps = model.feature_maps(batch)
        for fmap, reg, cls in zip(maps, model.regression_headers, model.classification_headers):
            for head, top in ((cls, logit_max), (reg, offset_max)):
                factor = top / float(head(fmap).abs().max())
                _last_conv(head).weight.mul_(factor)
                _last_conv(head).bias.mul_(factor)
    return model.eval()
