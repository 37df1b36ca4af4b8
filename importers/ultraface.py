"""UltraFace checkpoints (Linzaer/Ultra-Light-Fast-Generic-Face-Detector-1MB: ``version-slim-320.pth``,
``version-RFB-320.pth``, ``-640``): 1 MB face detectors.

Recognised by pytorch-ssd's module names (``base_net.*``, ``extras.*``, ``classification_headers.*``,
``regression_headers.*``) on its own backbone: Mb_Tiny (13 layers, 16 channels first), whose layer 7 is a
``BasicRFB`` in version-RFB (``base_net.7.branch0.*``). Heads on layers 8, 11, 13 and one extra block,
read in (cell, box, class) order as the toolkit's. Its inference, reproduced through the metadata:

* priors (vision/ssd/config/fd_config.py, ``generate_priors``): explicit sizes per level, ``min_boxes``
  [[10, 16, 24], [32, 48], [64, 96], [128, 192, 256]] pixels over the input's width and height, centres
  (i + 0.5) / feature map, the whole centre-size prior clamped to [0, 1]; center variance 0.1, size 0.2;
* pre-processing (``PredictionTransform`` after the scripts' BGR -> RGB): ``cv2.resize`` bilinear of the uint8
  image to 320x240 (``--input-size`` 128/160/480/640/1280: ``define_img_size``'s other sizes), minus 127, / 128;
* post-processing (widerface_evaluate/evaluation_on_widerface.py: ``predict(im, 800 / 2, 0.1)``, the
  WIDER FACE figures' settings): softmax, per class scores > 0.1, the best 800, hard NMS keeping IoU <= 0.3
  with 1e-5 added to every union (normalised boxes), at most 400 kept per class; boxes never clipped.
"""

from __future__ import annotations

from typing import Dict, List, Optional, Tuple

import torch
from torch import nn

from importers.base import ImportedModel, Importer, ImportOptions, Recognised, StateDict, load_exact, placeholder_names
from runtimes.errors import UserError
from runtimes.metadata import AnchorConfig, ModelMetadata, ResizeSpec

CODEBASE = "UltraFace"
PREFIXES = {"base_net", "extras", "classification_headers", "regression_headers"}
MIN_BOXES = [[10, 16, 24], [32, 48], [64, 96], [128, 192, 256]]
# define_img_size: input (width, height) and feature maps ([widths], [heights]) per size.
SIZES: Dict[int, Tuple[List[int], List[List[int]]]] = {
    128: ([128, 96], [[16, 8, 4, 2], [12, 6, 3, 2]]), 160: ([160, 120], [[20, 10, 5, 3], [15, 8, 4, 2]]),
    320: ([320, 240], [[40, 20, 10, 5], [30, 15, 8, 4]]), 480: ([480, 360], [[60, 30, 15, 8], [45, 23, 12, 6]]),
    640: ([640, 480], [[80, 40, 20, 10], [60, 30, 15, 8]]),
    1280: ([1280, 960], [[160, 80, 40, 20], [120, 60, 30, 15]])}
MEAN, STD = 127.0, 128.0
SCORE_THRESH, NMS_THRESH, CANDIDATES, TOP_K = 0.1, 0.3, 800, 400
BASE = 16  # Mb_Tiny.base_channel


def _conv_bn(inp: int, oup: int, stride: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(inp, oup, 3, stride, 1, bias=False), nn.BatchNorm2d(oup), nn.ReLU(inplace=True))


def _conv_dw(inp: int, oup: int, stride: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(inp, inp, 3, stride, 1, groups=inp, bias=False), nn.BatchNorm2d(inp),
                         nn.ReLU(inplace=True), nn.Conv2d(inp, oup, 1, 1, 0, bias=False), nn.BatchNorm2d(oup),
                         nn.ReLU(inplace=True))


class BasicConv(nn.Module):
    """mb_tiny_RFB.py's conv + BatchNorm (+ ReLU)."""

    def __init__(self, inp: int, oup: int, kernel: int, stride: int = 1, padding: int = 0, dilation: int = 1,
                 relu: bool = True) -> None:
        super().__init__()
        self.conv = nn.Conv2d(inp, oup, kernel, stride, padding, dilation, bias=False)
        self.bn = nn.BatchNorm2d(oup)
        self.relu = nn.ReLU(inplace=True) if relu else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.bn(self.conv(x))
        return self.relu(x) if self.relu is not None else x


class BasicRFB(nn.Module):
    """mb_tiny_RFB.py's BasicRFB as Mb_Tiny_RFB uses it (stride 1, scale 1.0, map_reduce 8, vision 1): three
    dilated branches (2, 3, 5), concatenated, projected, plus a 1x1 shortcut, then ReLU."""

    def __init__(self, planes: int) -> None:
        super().__init__()
        inter = planes // 8
        self.branch0 = nn.Sequential(BasicConv(planes, inter, 1, relu=False), BasicConv(inter, 2 * inter, 3, padding=1),
                                     BasicConv(2 * inter, 2 * inter, 3, padding=2, dilation=2, relu=False))
        self.branch1 = nn.Sequential(BasicConv(planes, inter, 1, relu=False), BasicConv(inter, 2 * inter, 3, padding=1),
                                     BasicConv(2 * inter, 2 * inter, 3, padding=3, dilation=3, relu=False))
        self.branch2 = nn.Sequential(BasicConv(planes, inter, 1, relu=False),
                                     BasicConv(inter, inter // 2 * 3, 3, padding=1),
                                     BasicConv(inter // 2 * 3, 2 * inter, 3, padding=1),
                                     BasicConv(2 * inter, 2 * inter, 3, padding=5, dilation=5, relu=False))
        self.ConvLinear = BasicConv(6 * inter, planes, 1, relu=False)
        self.shortcut = BasicConv(planes, planes, 1, relu=False)
        self.relu = nn.ReLU(inplace=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.ConvLinear(torch.cat((self.branch0(x), self.branch1(x), self.branch2(x)), 1))
        return self.relu(out + self.shortcut(x))


def _separable(inp: int, oup: int, stride: int = 1) -> nn.Sequential:
    """SeperableConv2d (3x3, padding 1): depthwise conv with bias, ReLU, 1x1 conv."""
    return nn.Sequential(nn.Conv2d(inp, inp, 3, stride, 1, groups=inp), nn.ReLU(), nn.Conv2d(inp, oup, 1))


class UltraFaceSSD(nn.Module):
    """create_mb_tiny_fd / create_Mb_Tiny_RFB_fd under their module names; ``bbox_regression`` (B, N, 4) and
    ``cls_logits`` (B, N, C) as SSD.compute_header orders them (level, cell, box)."""

    SOURCES = (8, 11, 13)

    def __init__(self, rfb: bool, num_classes: int) -> None:
        super().__init__()
        c = BASE
        self.base_net = nn.Sequential(
            _conv_bn(3, c, 2), _conv_dw(c, 2 * c, 1), _conv_dw(2 * c, 2 * c, 2), _conv_dw(2 * c, 2 * c, 1),
            _conv_dw(2 * c, 4 * c, 2), _conv_dw(4 * c, 4 * c, 1), _conv_dw(4 * c, 4 * c, 1),
            BasicRFB(4 * c) if rfb else _conv_dw(4 * c, 4 * c, 1),
            _conv_dw(4 * c, 8 * c, 2), _conv_dw(8 * c, 8 * c, 1), _conv_dw(8 * c, 8 * c, 1),
            _conv_dw(8 * c, 16 * c, 2), _conv_dw(16 * c, 16 * c, 1))
        self.extras = nn.ModuleList([nn.Sequential(nn.Conv2d(16 * c, 4 * c, 1), nn.ReLU(),
                                                   _separable(4 * c, 16 * c, stride=2), nn.ReLU())])
        channels, boxes = [4 * c, 8 * c, 16 * c], [len(b) for b in MIN_BOXES]
        self.regression_headers = nn.ModuleList(
            [_separable(ch, n * 4) for ch, n in zip(channels, boxes)] + [nn.Conv2d(16 * c, boxes[3] * 4, 3, padding=1)])
        self.classification_headers = nn.ModuleList(
            [_separable(ch, n * num_classes) for ch, n in zip(channels, boxes)]
            + [nn.Conv2d(16 * c, boxes[3] * num_classes, 3, padding=1)])
        self.num_classes = num_classes

    def _head(self, i: int, x: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        loc = self.regression_headers[i](x).permute(0, 2, 3, 1)
        conf = self.classification_headers[i](x).permute(0, 2, 3, 1)
        return loc.reshape(loc.size(0), -1, 4), conf.reshape(conf.size(0), -1, self.num_classes)

    def forward(self, images: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        outputs, x, start = [], images, 0
        for i, end in enumerate(self.SOURCES):
            for layer in self.base_net[start:end]:
                x = layer(x)
            outputs.append(self._head(i, x))
            start = end
        x = self.extras[0](x)
        outputs.append(self._head(len(self.SOURCES), x))
        return torch.cat([o[0] for o in outputs], 1), torch.cat([o[1] for o in outputs], 1)


def recognise(state: StateDict) -> Optional[Recognised]:
    first = state.get("base_net.0.0.weight")
    if {key.split(".")[0] for key in state} != PREFIXES or first is None or tuple(first.shape) != (BASE, 3, 3, 3):
        return None
    if "base_net.12.0.weight" not in state or "base_net.13.0.weight" in state or "extras.0.2.0.weight" not in state:
        return None
    return Recognised(CODEBASE, "version-RFB" if "base_net.7.branch0.0.conv.weight" in state else "version-slim")


def priors(input_size: int) -> AnchorConfig:
    """generate_priors for ``define_img_size(input_size)``: per level the min_boxes over the input's width
    and height, on the codebase's feature maps; the whole prior clamped."""
    (width, height), (widths, heights) = SIZES[input_size]
    return AnchorConfig(feature_maps=[[h, w] for h, w in zip(heights, widths)], aspect_ratios=[], scales=[],
                        steps=None, clip=True, clip_mode="box",
                        box_sizes=[[[size / width, size / height] for size in level] for level in MIN_BOXES])


def build_model(state: StateDict, recognised: Recognised, options: ImportOptions) -> ImportedModel:
    size = 320 if options.input_size is None else options.input_size
    if size not in SIZES or options.preset is not None or options.config is not None:
        flag = f"--input-size {size}" if size not in SIZES else "--preset" if options.preset else "--config"
        raise UserError(f"{flag}: UltraFace's define_img_size takes --input-size "
                        f"{', '.join(map(str, SIZES))} (width; height 3/4 of it) and nothing else")
    num_classes = int(state["classification_headers.3.weight"].shape[0]) // len(MIN_BOXES[3])
    network = str(recognised.network)
    what = f"an UltraFace {network} checkpoint ({num_classes} classes with the background)"
    module = load_exact(UltraFaceSSD(network == "version-RFB", num_classes), state, what)
    (width, height), _ = SIZES[size]
    meta = ModelMetadata(
        arch=f"{CODEBASE}/{network}-{size}", input_height=height, input_width=width, channel_order="RGB",
        mean=[MEAN] * 3, std=[STD] * 3, class_names=placeholder_names(num_classes), output_format="raw",
        box_coder_weights=[10.0, 10.0, 5.0, 5.0], anchors=priors(size), score_threshold=SCORE_THRESH,
        iou_threshold=NMS_THRESH, topk_candidates=CANDIDATES, max_detections=TOP_K * (num_classes - 1),
        resize=ResizeSpec(library="opencv", interpolation="linear", pixels="uint8"), clip_boxes="none",
        iou_epsilon=1e-5)
    return ImportedModel(module, meta)


IMPORTER = Importer(CODEBASE, recognise, build_model)
