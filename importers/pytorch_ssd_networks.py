"""pytorch-ssd's networks (qfgaohao/pytorch-ssd and dusty-nv's fork, which jetson-inference trains with),
built so that their state dict keys and shapes are that codebase's own: ``base_net.*``,
``source_layer_add_ons.*``, ``extras.*``, ``classification_headers.*``, ``regression_headers.*``.

Each network is a backbone list (``base_net``), the points of it that feed a head (:class:`Tap`), extra
blocks that each feed one more head, and per head a classification and a regression conv. Activations are
the codebase's defaults of ``train_ssd.py`` (ReLU6 in MobileNetV2/V3 and their heads, hard-swish as
``x * relu6(x + 3) / 6``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from torch import nn


class HardSwish(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * F.relu6(x + 3) / 6


class HardSigmoid(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu6(x + 3) / 6


def conv_bn(c_in: int, c_out: int, kernel: int, stride: int, act: nn.Module, groups: int = 1) -> List[nn.Module]:
    """A bias-free conv (padding kernel // 2), its BatchNorm and ``act``."""
    return [nn.Conv2d(c_in, c_out, kernel, stride, kernel // 2, groups=groups, bias=False), nn.BatchNorm2d(c_out), act]


def separable(c_in: int, c_out: int, stride: int = 1, padding: int = 1, batch_norm: bool = False) -> nn.Sequential:
    """pytorch-ssd's ``SeperableConv2d``: a 3x3 depthwise conv (with bias), [BatchNorm, ReLU6 | ReLU], a 1x1 conv."""
    depthwise = nn.Conv2d(c_in, c_in, 3, stride, padding, groups=c_in)
    middle: List[nn.Module] = [nn.BatchNorm2d(c_in), nn.ReLU6()] if batch_norm else [nn.ReLU()]
    return nn.Sequential(depthwise, *middle, nn.Conv2d(c_in, c_out, 1))


# -- backbones ------------------------------------------------------------------------------------------

def vgg16_base() -> List[nn.Module]:
    """VGG16 to conv7 as SSD uses it: conv5 keeps its resolution (pool5 3x3 stride 1), dilated conv6, conv7.
    Index 23 is pool4's input (conv4_3 after its ReLU)."""
    layers: List[nn.Module] = []
    c_in = 3
    for v in (64, 64, "M", 128, 128, "M", 256, 256, 256, "C", 512, 512, 512, "M", 512, 512, 512):
        if isinstance(v, int):
            layers += [nn.Conv2d(c_in, v, 3, padding=1), nn.ReLU()]
            c_in = v
        else:  # "C" rounds up: 75 -> 38 at 300 pixels
            layers.append(nn.MaxPool2d(2, 2, ceil_mode=v == "C"))
    return layers + [nn.MaxPool2d(3, 1, padding=1), nn.Conv2d(512, 1024, 3, padding=6, dilation=6), nn.ReLU(),
                     nn.Conv2d(1024, 1024, 1), nn.ReLU()]


def mobilenet_v1_base() -> List[nn.Module]:
    """MobileNetV1's 14 conv blocks: a 3x3 conv, then depthwise-separable blocks (BatchNorm, ReLU)."""
    plan = [(32, 64, 1), (64, 128, 2), (128, 128, 1), (128, 256, 2), (256, 256, 1), (256, 512, 2)] + \
        [(512, 512, 1)] * 5 + [(512, 1024, 2), (1024, 1024, 1)]
    blocks: List[nn.Module] = [nn.Sequential(*conv_bn(3, 32, 3, 2, nn.ReLU()))]
    for c_in, c_out, stride in plan:
        blocks.append(nn.Sequential(*conv_bn(c_in, c_in, 3, stride, nn.ReLU(), groups=c_in),
                                    *conv_bn(c_in, c_out, 1, 1, nn.ReLU())))
    return blocks


class InvertedResidual(nn.Module):
    """MobileNetV2's block: [1x1 expansion,] 3x3 depthwise, linear 1x1 projection; the input is added back
    when the shape is kept."""

    def __init__(self, c_in: int, c_out: int, stride: int, expand: float) -> None:
        super().__init__()
        hidden = round(c_in * expand)
        layers = conv_bn(c_in, hidden, 1, 1, nn.ReLU6()) if expand != 1 else []
        layers += conv_bn(hidden, hidden, 3, stride, nn.ReLU6(), groups=hidden)
        layers += conv_bn(hidden, c_out, 1, 1, nn.Identity())[:2]
        self.conv = nn.Sequential(*layers)
        self.residual = stride == 1 and c_in == c_out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv(x) if self.residual else self.conv(x)


def mobilenet_v2_base(width: float) -> List[nn.Module]:
    """MobileNetV2's features at width multiplier ``width``: 19 modules, the last a 1x1 conv to 1280 channels."""
    c_in = int(32 * width)
    layers: List[nn.Module] = [nn.Sequential(*conv_bn(3, c_in, 3, 2, nn.ReLU6()))]
    for t, c, n, s in ((1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1), (6, 160, 3, 2),
                       (6, 320, 1, 1)):
        for i in range(n):
            layers.append(InvertedResidual(c_in, int(c * width), s if i == 0 else 1, t))
            c_in = int(c * width)
    last = int(1280 * width) if width > 1.0 else 1280
    return layers + [nn.Sequential(*conv_bn(c_in, last, 1, 1, nn.ReLU6()))]


class SqueezeExcite(nn.Module):
    """MobileNetV3's squeeze-and-excitation: channel weights from the pooled map (reduction 4, hard sigmoid)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.se = nn.Sequential(nn.AdaptiveAvgPool2d(1), *conv_bn(channels, channels // 4, 1, 1, nn.ReLU()),
                                *conv_bn(channels // 4, channels, 1, 1, HardSigmoid()))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.se(x)


class Bottleneck(nn.Module):
    """MobileNetV3's block as pytorch-ssd writes it: expansion, depthwise, projection, squeeze-excitation
    after the projection; a shortcut (a 1x1 conv when the channels change) at stride 1 only."""

    def __init__(self, kernel: int, c_in: int, expand: int, c_out: int, act: Callable[[], nn.Module],
                 excite: bool, stride: int) -> None:
        super().__init__()
        self.stride = stride
        self.conv1, self.bn1 = nn.Conv2d(c_in, expand, 1, bias=False), nn.BatchNorm2d(expand)
        self.conv2 = nn.Conv2d(expand, expand, kernel, stride, kernel // 2, groups=expand, bias=False)
        self.bn2 = nn.BatchNorm2d(expand)
        self.conv3, self.bn3 = nn.Conv2d(expand, c_out, 1, bias=False), nn.BatchNorm2d(c_out)
        self.act = act()
        self.se = SqueezeExcite(c_out) if excite else None
        self.shortcut = nn.Sequential(*conv_bn(c_in, c_out, 1, 1, nn.Identity())[:2]) \
            if stride == 1 and c_in != c_out else nn.Sequential()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.act(self.bn1(self.conv1(x)))
        out = self.act(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        if self.se is not None:
            out = self.se(out)
        return out + self.shortcut(x) if self.stride == 1 else out


R, H = nn.ReLU, HardSwish
# (kernel, in, expansion, out, activation, squeeze-excitation, stride) of each bottleneck.
MOBILENET_V3_LARGE = [(3, 16, 16, 16, R, False, 1), (3, 16, 64, 24, R, False, 2), (3, 24, 72, 24, R, False, 1),
                      (5, 24, 72, 40, R, True, 2), (5, 40, 120, 40, R, True, 1), (5, 40, 120, 40, R, True, 1),
                      (3, 40, 240, 80, H, False, 2), (3, 80, 200, 80, H, False, 1), (3, 80, 184, 80, H, False, 1),
                      (3, 80, 184, 80, H, False, 1), (3, 80, 480, 112, H, True, 1), (3, 112, 672, 112, H, True, 1),
                      (5, 112, 672, 160, H, True, 1), (5, 160, 672, 160, H, True, 2), (5, 160, 960, 160, H, True, 1)]
MOBILENET_V3_SMALL = [(3, 16, 16, 16, R, True, 2), (3, 16, 72, 24, R, False, 2), (3, 24, 88, 24, R, False, 1),
                      (5, 24, 96, 40, H, True, 2), (5, 40, 240, 40, H, True, 1), (5, 40, 240, 40, H, True, 1),
                      (5, 40, 120, 48, H, True, 1), (5, 48, 144, 48, H, True, 1), (5, 48, 288, 96, H, True, 2),
                      (5, 96, 576, 96, H, True, 1), (5, 96, 576, 96, H, True, 1)]


def mobilenet_v3_base(plan: Sequence[tuple], last: int) -> List[nn.Module]:
    """MobileNetV3's features as one flat list: stem conv, BatchNorm, hard-swish, the bottlenecks, a 1x1 conv
    to ``last`` channels, BatchNorm, hard-swish."""
    stem: List[nn.Module] = [nn.Conv2d(3, 16, 3, 2, 1, bias=False), nn.BatchNorm2d(16), HardSwish()]
    blocks: List[nn.Module] = [Bottleneck(*row) for row in plan]
    return stem + blocks + [nn.Conv2d(plan[-1][3], last, 1, bias=False), nn.BatchNorm2d(last), HardSwish()]


class Fire(nn.Module):
    """SqueezeNet's fire module: a 1x1 squeeze, then 1x1 and 3x3 expansions side by side."""

    def __init__(self, c_in: int, squeeze: int, expand: int) -> None:
        super().__init__()
        self.squeeze = nn.Conv2d(c_in, squeeze, 1)
        self.expand1x1 = nn.Conv2d(squeeze, expand, 1)
        self.expand3x3 = nn.Conv2d(squeeze, expand, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.squeeze(x))
        return torch.cat([F.relu(self.expand1x1(x)), F.relu(self.expand3x3(x))], 1)


def squeezenet_base() -> List[nn.Module]:
    """SqueezeNet 1.1's features (13 modules)."""
    def pool() -> nn.Module:
        return nn.MaxPool2d(3, 2)

    return [nn.Conv2d(3, 64, 3, 2), nn.ReLU(), pool(), Fire(64, 16, 64), Fire(128, 16, 64), pool(),
            Fire(128, 32, 128), Fire(256, 32, 128), pool(), Fire(256, 48, 192), Fire(384, 48, 192),
            Fire(384, 64, 256), Fire(512, 64, 256)]


# -- extras ---------------------------------------------------------------------------------------------

def squeeze_then(c_in: int, mid: int, last: nn.Module) -> nn.Sequential:
    """An extra block: a 1x1 conv to ``mid`` channels, ReLU, then ``last`` (a strided conv or separable)."""
    return nn.Sequential(nn.Conv2d(c_in, mid, 1), nn.ReLU(), last)


def conv_extras(channels: Sequence[Tuple[int, int, int]], valid_from: int) -> List[nn.Module]:
    """VGG16-SSD's and MobileNetV1-SSD's extras: (in, mid, out) blocks of a 1x1 conv, ReLU, a 3x3 conv, ReLU;
    the 3x3 conv has stride 2 and padding 1 before block ``valid_from``, stride 1 and no padding from it on."""
    return [nn.Sequential(nn.Conv2d(c_in, mid, 1), nn.ReLU(),
                          nn.Conv2d(mid, c_out, 3, *((2, 1) if i < valid_from else (1, 0))), nn.ReLU())
            for i, (c_in, mid, c_out) in enumerate(channels)]


# -- the SSD --------------------------------------------------------------------------------------------

@dataclass
class Tap:
    """A backbone point that feeds a head: the output of ``base_net[:end]``; through the next add-on
    (``source_layer_add_ons``) when ``add_on``; or, with ``inner``, inside block ``end`` after the first
    ``inner`` layers of its ``conv`` (pytorch-ssd's GraphPath, which skips that block's residual)."""

    end: int
    add_on: bool = False
    inner: Optional[int] = None


class PytorchSSD(nn.Module):
    """A pytorch-ssd SSD up to its raw head outputs.

    Input: ``images`` (B, 3, H, W) float32, resized and normalised. Outputs: ``bbox_regression`` (B, N, 4)
    offsets (dx, dy, dw, dh against centre-size priors) and ``cls_logits`` (B, N, C) logits, background at
    0; N runs over the feature maps, their cells row by row, then each cell's boxes, as the priors do.
    """

    def __init__(self, base_net: List[nn.Module], taps: List[Tap], extras: List[nn.Module],
                 regression: List[nn.Module], classification: List[nn.Module], num_classes: int,
                 add_ons: Sequence[nn.Module] = ()) -> None:
        super().__init__()
        self.base_net = nn.ModuleList(base_net)
        self.source_layer_add_ons = nn.ModuleList(add_ons)
        self.extras = nn.ModuleList(extras)
        self.classification_headers = nn.ModuleList(classification)
        self.regression_headers = nn.ModuleList(regression)
        self.taps = taps
        self.num_classes = num_classes

    def feature_maps(self, x: torch.Tensor) -> List[torch.Tensor]:
        maps: List[torch.Tensor] = []
        start, add_ons = 0, iter(self.source_layer_add_ons)
        for tap in self.taps:
            for layer in self.base_net[start:tap.end]:
                x = layer(x)
            start = tap.end
            if tap.inner is not None:
                inner = self.base_net[tap.end].conv
                assert isinstance(inner, nn.Sequential)  # an InvertedResidual's layers
                x = inner[:tap.inner](x)
                maps.append(x)
                x = inner[tap.inner:](x)
                start += 1
            else:
                maps.append(next(add_ons)(x) if tap.add_on else x)
        for layer in self.base_net[start:]:
            x = layer(x)
        for extra in self.extras:
            x = extra(x)
            maps.append(x)
        return maps

    def forward(self, images: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        batch = images.shape[0]
        regression, classification = [], []
        for fmap, reg, cls in zip(self.feature_maps(images), self.regression_headers, self.classification_headers):
            regression.append(reg(fmap).permute(0, 2, 3, 1).reshape(batch, -1, 4))
            classification.append(cls(fmap).permute(0, 2, 3, 1).reshape(batch, -1, self.num_classes))
        return torch.cat(regression, 1), torch.cat(classification, 1)


def heads(channels: Sequence[int], anchors: Sequence[int], outputs: int, kind: str) -> List[nn.Module]:
    """One head per feature map: ``kind`` "conv" 3x3 convs; "separable" / "separable_bn" separable convs with a
    plain 1x1 conv for the last map."""
    if kind == "conv":
        return [nn.Conv2d(c, a * outputs, 3, padding=1) for c, a in zip(channels, anchors)]
    layers: List[nn.Module] = [separable(c, a * outputs, batch_norm=kind == "separable_bn")
                               for c, a in zip(channels[:-1], anchors[:-1])]
    return layers + [nn.Conv2d(channels[-1], anchors[-1] * outputs, 1)]


@dataclass
class Layout:
    """A network's parts before the class count is known."""

    base_net: Callable[[], List[nn.Module]]
    taps: List[Tap]
    extras: Callable[[], List[nn.Module]]
    head_channels: List[int]
    anchors: List[int]
    head_kind: str
    add_ons: Callable[[], List[nn.Module]] = list


def build(layout: Layout, num_classes: int) -> PytorchSSD:
    return PytorchSSD(layout.base_net(), layout.taps, layout.extras(),
                      heads(layout.head_channels, layout.anchors, 4, layout.head_kind),
                      heads(layout.head_channels, layout.anchors, num_classes, layout.head_kind),
                      num_classes, layout.add_ons()).eval()


def _v1_extras(lite: bool) -> List[nn.Module]:
    plan = [(1024, 256, 512), (512, 128, 256), (256, 128, 256), (256, 128, 256)]
    if lite:
        return [squeeze_then(c_in, mid, separable(mid, c_out, stride=2)) for c_in, mid, c_out in plan]
    return conv_extras(plan, valid_from=len(plan))


def _v3_extras(first: int) -> List[nn.Module]:
    return [Bottleneck(3, c_in, expand, c_out, HardSwish, False, 2)
            for c_in, expand, c_out in ((first, 256, 512), (512, 128, 256), (256, 128, 256), (256, 64, 64))]


def _squeezenet_extras() -> List[nn.Module]:
    return [squeeze_then(512, 256, separable(256, 512, stride=2, padding=2)),
            squeeze_then(512, 256, separable(256, 512, stride=2)),
            squeeze_then(512, 128, separable(128, 256, stride=2)),
            squeeze_then(256, 128, separable(128, 256, stride=2)),
            squeeze_then(256, 128, separable(128, 256, stride=2))]


def _mobilenet_v2_extras() -> List[nn.Module]:
    return [InvertedResidual(1280, 512, 2, 0.2), InvertedResidual(512, 256, 2, 0.25),
            InvertedResidual(256, 256, 2, 0.5), InvertedResidual(256, 64, 2, 0.25)]


def layouts(width: float = 1.0) -> Dict[str, Layout]:
    """Every network by its ``train_ssd.py --net`` name; ``width`` is mb2-ssd-lite's ``--mb2_width_mult``."""
    six = [6] * 6
    return {
        "vgg16-ssd": Layout(vgg16_base, [Tap(23, add_on=True), Tap(35)],
                            lambda: conv_extras([(1024, 256, 512), (512, 128, 256), (256, 128, 256),
                                                 (256, 128, 256)], valid_from=2),
                            [512, 1024, 512, 256, 256, 256], [4, 6, 6, 6, 4, 4], "conv",
                            add_ons=lambda: [nn.BatchNorm2d(512)]),
        "mb1-ssd": Layout(mobilenet_v1_base, [Tap(12), Tap(14)], lambda: _v1_extras(False),
                          [512, 1024, 512, 256, 256, 256], six, "conv"),
        "mb1-ssd-lite": Layout(mobilenet_v1_base, [Tap(12), Tap(14)], lambda: _v1_extras(True),
                               [512, 1024, 512, 256, 256, 256], six, "separable"),
        "sq-ssd-lite": Layout(squeezenet_base, [Tap(12)], _squeezenet_extras,
                              [512, 512, 512, 256, 256, 256], six, "separable"),
        "mb2-ssd-lite": Layout(lambda: mobilenet_v2_base(width), [Tap(14, inner=3), Tap(19)], _mobilenet_v2_extras,
                               [round(576 * width), 1280, 512, 256, 256, 64], six, "separable_bn"),
        "mb3-large-ssd-lite": Layout(lambda: mobilenet_v3_base(MOBILENET_V3_LARGE, 960), [Tap(15), Tap(21)],
                                     lambda: _v3_extras(960), [112, 960, 512, 256, 256, 64], six, "separable_bn"),
        "mb3-small-ssd-lite": Layout(lambda: mobilenet_v3_base(MOBILENET_V3_SMALL, 576), [Tap(11), Tap(17)],
                                     lambda: _v3_extras(576), [48, 576, 512, 256, 256, 64], six, "separable_bn"),
    }
