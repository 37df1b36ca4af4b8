"""NVIDIA DeepLearningExamples' SSD300 checkpoints (PyTorch/Detection/SSD, ``main.py --backbone resnet50``).

Recognised by the keys ``feature_extractor.feature_extractor.*`` (torchvision's ResNet up to layer3, whose
first block has stride 1, so layer3 stays 38x38), ``additional_blocks.*``, ``loc.*``, ``conf.*``; main.py saves
``{"model": state, "optimizer": ..., "label_map": ...}``, the torch hub copy may carry DDP's ``module.``. The
backbone (ResNet-18/34/50/101/152, ``--backbone``) is told by layer3's blocks. Its inference, reproduced:

* heads: ``bbox_view`` reshapes each level's (B, 4 x boxes, H, W) to (B, 4, boxes x H x W), so channel
  ``coord x boxes + box`` (coordinate-major, classes likewise) and priors box-major within a level; the
  module below reorders both to the toolkit's (cell, box) order, the same priors in another order;
* priors (``dboxes300_coco``): sizes 21/45/99/153/207/261/315 of 300, per cell the min square, the
  sqrt(min * next) square, each ratio's pair, centres (j + 0.5) * step / 300, the whole centre-size prior
  clamped to [0, 1] (``clip_mode`` "box"); offsets scaled by ``scale_xy`` 0.1 and ``scale_wh`` 0.2;
* pre-processing (``SSDTransformer(val=True)``, what evaluate.py's COCO mAP is measured with):
  ``transforms.Resize((300, 300))`` on the RGB PIL image (Pillow's bilinear, runtimes/pillow_resize.py),
  ``ToTensor``, ImageNet mean/std;
* post-processing (evaluate.py: ``Encoder.decode_batch(ploc, plabel, 0.50, 200)``): softmax, per class
  (background 0 skipped) the scores above 0.05, the best 200, greedy NMS at IoU 0.5 (plain union), then the
  best 200 over all classes; boxes never clipped. The decoder itself has no clamp of the size offset (the
  toolkit's stops at log(1000 / 16), reached only at offsets above 20).
"""

from __future__ import annotations

from typing import Any, Dict, List, Optional, Tuple

import torch
import torchvision
from torch import nn

from importers.base import ImportedModel, Importer, ImportOptions, Recognised, StateDict, load_exact, placeholder_names
from importers.ssd_pytorch import box_sizes
from runtimes.errors import UserError
from runtimes.metadata import AnchorConfig, ModelMetadata, ResizeSpec

CODEBASE = "nvidia-ssd"
PREFIXES = {"feature_extractor", "additional_blocks", "loc", "conf"}
BACKBONE = "feature_extractor.feature_extractor."
SIZE = 300
FEATURE_MAPS, STEPS = [38, 19, 10, 5, 3, 1], [8, 16, 32, 64, 100, 300]
SCALES = [21, 45, 99, 153, 207, 261, 315]
RATIOS = [[2], [2, 3], [2, 3], [2, 3], [2], [2]]
BOXES = [4, 6, 6, 6, 4, 4]  # SSD300.num_defaults
# ResNet(backbone)'s out_channels in model.py, keyed by torchvision's constructor; layer3's (blocks,
# bottleneck) tells which.
OUT_CHANNELS = {"resnet18": [256, 512, 512, 256, 256, 128], "resnet34": [256, 512, 512, 256, 256, 256],
                "resnet50": [1024, 512, 512, 256, 256, 256], "resnet101": [1024, 512, 512, 256, 256, 256],
                "resnet152": [1024, 512, 512, 256, 256, 256]}
LAYER3 = {(2, False): "resnet18", (6, False): "resnet34", (6, True): "resnet50", (23, True): "resnet101",
          (36, True): "resnet152"}
MEAN_RGB = [0.485 * 255, 0.456 * 255, 0.406 * 255]  # transforms.Normalize on ToTensor's 0..1, in 0..255 units
STD_RGB = [0.229 * 255, 0.224 * 255, 0.225 * 255]
SCORE_THRESH, NMS_THRESH, PER_CLASS, MAX_OUTPUT = 0.05, 0.5, 200, 200


def _layer3(state: StateDict) -> Tuple[int, bool]:
    """(blocks, bottleneck) of the backbone's layer3 (``feature_extractor.feature_extractor.6.N``)."""
    prefix = BACKBONE + "6."
    blocks = {key[len(prefix):].split(".")[0] for key in state if key.startswith(prefix)}
    return len(blocks), f"{prefix}0.conv3.weight" in state


def recognise(state: StateDict) -> Optional[Recognised]:
    prefixes = {key.split(".")[0] for key in state}
    if prefixes != PREFIXES or not any(key.startswith(BACKBONE) for key in state):
        return None
    layer3 = _layer3(state)
    if layer3 not in LAYER3:
        blocks, bottleneck = layer3
        return Recognised(CODEBASE, None, f"its backbone's layer3 ({blocks} {'bottleneck' if bottleneck else 'basic'} "
                                          "blocks) is none of ResNet-18/34/50/101/152's, the backbones model.py builds")
    if "loc.6.weight" in state or "loc.5.weight" not in state:
        levels = sum(k.startswith("loc.") and k.endswith(".weight") for k in state)
        return Recognised(CODEBASE, None, f"its {levels} head levels are not SSD300's 6; export an SSD300 checkpoint")
    return Recognised(CODEBASE, f"ssd300-{LAYER3[layer3]}")


class ResNetTrunk(nn.Module):
    """model.py's ResNet: torchvision's ``backbone`` up to layer3 (children 0-6), layer3's first block at
    stride 1, so conv4's map stays 38x38."""

    def __init__(self, backbone: str) -> None:
        super().__init__()
        resnet = getattr(torchvision.models, backbone)(weights=None)
        self.feature_extractor = nn.Sequential(*list(resnet.children())[:7])
        block: Any = resnet.layer3[0]
        block.conv1.stride = block.conv2.stride = block.downsample[0].stride = (1, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.feature_extractor(x)


def _extra(c_in: int, mid: int, c_out: int, stride2: bool) -> nn.Sequential:
    """One of model.py's additional blocks: 1x1 conv, BN, ReLU, 3x3 conv (stride 2, pad 1 for the first
    three; valid for the last two), BN, ReLU."""
    return nn.Sequential(nn.Conv2d(c_in, mid, 1, bias=False), nn.BatchNorm2d(mid), nn.ReLU(inplace=True),
                         nn.Conv2d(mid, c_out, 3, stride=2 if stride2 else 1, padding=1 if stride2 else 0,
                                   bias=False),
                         nn.BatchNorm2d(c_out), nn.ReLU(inplace=True))


class NvidiaSSD300(nn.Module):
    """model.py's SSD300 under its own module names (so its state dict loads as is), returning the toolkit's
    outputs: ``bbox_regression`` (B, 8732, 4) and ``cls_logits`` (B, 8732, C), ordered level, cell, box."""

    def __init__(self, backbone: str, num_classes: int) -> None:
        super().__init__()
        channels = OUT_CHANNELS[backbone]
        self.num_classes = num_classes
        self.feature_extractor = ResNetTrunk(backbone)
        self.additional_blocks = nn.ModuleList(
            _extra(c_in, mid, c_out, i < 3)
            for i, (c_in, c_out, mid) in enumerate(zip(channels[:-1], channels[1:], [256, 256, 128, 128, 128])))
        self.loc = nn.ModuleList(nn.Conv2d(c, n * 4, 3, padding=1) for c, n in zip(channels, BOXES))
        self.conf = nn.ModuleList(nn.Conv2d(c, n * num_classes, 3, padding=1) for c, n in zip(channels, BOXES))

    def forward(self, images: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        x = self.feature_extractor(images)
        feeds = [x]
        for block in self.additional_blocks:
            x = block(x)
            feeds.append(x)
        locs, confs = [], []
        for feed, loc, conf, boxes in zip(feeds, self.loc, self.conf, BOXES):
            batch = feed.size(0)
            # bbox_view's reshape(B, 4, -1) reads channel coord x boxes + box: (B, 4, boxes, cells) -> cells first
            locs.append(loc(feed).reshape(batch, 4, boxes, -1).permute(0, 3, 2, 1).reshape(batch, -1, 4))
            confs.append(conf(feed).reshape(batch, self.num_classes, boxes, -1).permute(0, 3, 2, 1)
                         .reshape(batch, -1, self.num_classes))
        return torch.cat(locs, 1), torch.cat(confs, 1)


def priors() -> AnchorConfig:
    """dboxes300_coco as the toolkit's per-level box sizes (the same set; the toolkit's order is cell-major)."""
    sizes: List[List[List[float]]] = [box_sizes(lo, hi, r) for lo, hi, r in zip(SCALES[:-1], SCALES[1:], RATIOS)]
    return AnchorConfig(feature_maps=[[f, f] for f in FEATURE_MAPS], aspect_ratios=[], scales=[], steps=STEPS,
                        clip=True, clip_mode="box", box_sizes=sizes)


def build_model(state: StateDict, recognised: Recognised, options: ImportOptions) -> ImportedModel:
    given: Dict[str, object] = {"--input-size": options.input_size if options.input_size != SIZE else None,
                                "--preset": options.preset, "--config": options.config}
    for flag, value in given.items():
        if value is not None:
            raise UserError(f"{flag} {value}: NVIDIA's SSD is SSD300 with dboxes300_coco's priors, nothing to "
                            f"choose; leave {flag} out")
    num_classes = int(state["conf.0.weight"].shape[0]) // BOXES[0]
    network = str(recognised.network)
    what = f"an NVIDIA DeepLearningExamples {network} checkpoint ({num_classes} classes with the background)"
    module = load_exact(NvidiaSSD300(network.split("-")[1], num_classes), state, what)
    meta = ModelMetadata(
        arch=f"{CODEBASE}/{network}", input_height=SIZE, input_width=SIZE, channel_order="RGB", mean=MEAN_RGB,
        std=STD_RGB, class_names=placeholder_names(num_classes), output_format="raw",
        box_coder_weights=[10.0, 10.0, 5.0, 5.0], anchors=priors(), score_threshold=SCORE_THRESH,
        iou_threshold=NMS_THRESH, topk_candidates=PER_CLASS, max_detections=MAX_OUTPUT,
        resize=ResizeSpec(library="pillow", interpolation="linear", pixels="uint8"), clip_boxes="none",
        iou_epsilon=0.0)
    return ImportedModel(module, meta)


IMPORTER = Importer(CODEBASE, recognise, build_model)
