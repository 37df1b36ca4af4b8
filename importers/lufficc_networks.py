"""lufficc/SSD's networks (ssd/modeling), built so that their state dict keys and shapes are its
``SSDDetector``'s: ``backbone.*`` (VGG: ``vgg.N``, ``l2_norm.weight``, ``extras.N``; MobileNetV2 and V3:
``features.N``, ``extras.N``) and ``box_head.predictor.{cls,reg}_headers.N``.

:class:`LufficcSSD` takes ``images`` (B, 3, S, S), RGB minus the pixel mean, and returns
``bbox_regression`` (B, N, 4) and ``cls_logits`` (B, N, C), background first, in BoxPredictor's order
(level, row-major cell, box), so the toolkit's post-processor reads them as it reads torchvision's.
"""

from __future__ import annotations

from typing import List, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from torch import nn

VGG_BASE = (64, 64, "M", 128, 128, "M", 256, 256, 256, "C", 512, 512, 512, "M", 512, 512, 512)
VGG_EXTRAS = {300: (256, "S", 512, 128, "S", 256, 128, 256, 128, 256),
              512: (256, "S", 512, 128, "S", 256, 128, "S", 256, 128, "S", 256)}
# MobileNetV2 inverted residual settings (expansion, channels, repeats, stride), torchvision's.
V2_SETTING = ((1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1), (6, 160, 3, 2),
              (6, 320, 1, 1))
# MobileNetV3-Large blocks (kernel, expansion, channels, squeeze-excite, hard-swish, stride), d-li14's.
V3_SETTING = ((3, 1, 16, 0, 0, 1), (3, 4, 24, 0, 0, 2), (3, 3, 24, 0, 0, 1), (5, 3, 40, 1, 0, 2),
              (5, 3, 40, 1, 0, 1), (5, 3, 40, 1, 0, 1), (3, 6, 80, 0, 1, 2), (3, 2.5, 80, 0, 1, 1),
              (3, 2.3, 80, 0, 1, 1), (3, 2.3, 80, 0, 1, 1), (3, 6, 112, 1, 1, 1), (3, 6, 112, 1, 1, 1),
              (5, 6, 160, 1, 1, 2), (5, 6, 160, 1, 1, 1), (5, 6, 160, 1, 1, 1))
# Per backbone: the channels of each head level's feature map (its configs' MODEL.BACKBONE.OUT_CHANNELS).
OUT_CHANNELS = {"vgg300": (512, 1024, 512, 256, 256, 256), "vgg512": (512, 1024, 512, 256, 256, 256, 256),
                "mobilenet_v2": (96, 1280, 512, 256, 256, 64), "mobilenet_v3": (112, 960, 512, 256, 256, 64)}


def map_side(side: int, module: nn.Module) -> int:
    """The side of a square feature map after ``module``'s convs and pools in their order (PyTorch's output
    size formula; the layers here run in the order they are registered)."""
    for m in module.modules():
        if isinstance(m, nn.Conv2d):
            k, s, p, d, ceil = m.kernel_size[0], m.stride[0], int(m.padding[0]), m.dilation[0], False
        elif isinstance(m, nn.MaxPool2d):
            k, s, p, d, ceil = int(m.kernel_size), int(m.stride), int(m.padding), int(m.dilation), m.ceil_mode  # type: ignore[arg-type]
        else:
            continue
        span = side + 2 * p - d * (k - 1) - 1
        side = (-(-span // s) if ceil else span // s) + 1
    return side


class L2Norm(nn.Module):
    """conv4_3's normalisation: ``weight * x / (||x|| + 1e-10)`` over channels."""

    def __init__(self, channels: int = 512) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.full((channels,), 20.0))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.weight[None, :, None, None] * (x / (x.pow(2).sum(dim=1, keepdim=True).sqrt() + 1e-10))


class VGG(nn.Module):
    """VGG16 to fc7 (pool5 3x3/1, dilated fc6), its extras (SSD512: one more stride-2 pair and a 4x4 conv)."""

    def __init__(self, size: int) -> None:
        super().__init__()
        layers: List[nn.Module] = []
        c_in = 3
        for v in VGG_BASE:
            if isinstance(v, int):
                layers += [nn.Conv2d(c_in, v, 3, padding=1), nn.ReLU()]
                c_in = v
            else:  # "C" rounds up: 75 -> 38 at 300 pixels
                layers.append(nn.MaxPool2d(2, 2, ceil_mode=v == "C"))
        layers += [nn.MaxPool2d(3, 1, 1), nn.Conv2d(512, 1024, 3, padding=6, dilation=6), nn.ReLU(),
                   nn.Conv2d(1024, 1024, 1), nn.ReLU()]
        self.vgg = nn.ModuleList(layers)
        self.extras = nn.ModuleList(_vgg_extras(size))
        self.l2_norm = L2Norm()

    def forward(self, x: torch.Tensor) -> List[torch.Tensor]:
        for layer in self.vgg[:23]:  # to conv4_3's ReLU
            x = layer(x)
        features = [self.l2_norm(x)]
        for layer in self.vgg[23:]:
            x = layer(x)
        features.append(x)
        for k, conv in enumerate(self.extras):
            x = F.relu(conv(x))
            if k % 2 == 1:
                features.append(x)
        return features

    def feature_sizes(self, size: int) -> List[int]:
        """Each head level's map side at a square ``size`` input, without running the network."""
        sides = [map_side(size, nn.Sequential(*self.vgg[:23]))]
        sides.append(map_side(sides[0], nn.Sequential(*self.vgg[23:])))
        side = sides[-1]
        for k, conv in enumerate(self.extras):
            side = map_side(side, conv)
            if k % 2 == 1:
                sides.append(side)
        return sides


def _vgg_extras(size: int) -> List[nn.Module]:
    """add_extras: alternating 1x1 and 3x3 convs, "S" making the next 3x3 stride 2 with padding 1."""
    spec = VGG_EXTRAS[size]
    layers: List[nn.Module] = []
    c_in, three = 1024, False
    for k, v in enumerate(spec):
        if c_in != "S":
            if v == "S":
                layers.append(nn.Conv2d(int(c_in), int(spec[k + 1]), (1, 3)[three], stride=2, padding=1))
            else:
                layers.append(nn.Conv2d(int(c_in), int(v), (1, 3)[three]))
            three = not three
        c_in = v  # type: ignore[assignment]
    if size == 512:
        layers += [nn.Conv2d(int(c_in), 128, 1), nn.Conv2d(128, 256, 4, padding=1)]
    return layers


def _conv_bn(c_in: int, c_out: int, kernel: int, stride: int, act: nn.Module, groups: int = 1) -> List[nn.Module]:
    return [nn.Conv2d(c_in, c_out, kernel, stride, (kernel - 1) // 2, groups=groups, bias=False),
            nn.BatchNorm2d(c_out), act]


class Residual(nn.Module):
    """An inverted residual block: ``conv`` (nn.Sequential), plus its input when shapes allow."""

    def __init__(self, layers: Sequence[nn.Module], identity: bool) -> None:
        super().__init__()
        self.conv = nn.Sequential(*layers)
        self.identity = identity

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv(x) if self.identity else self.conv(x)


def v2_block(c_in: int, c_out: int, stride: int, expand: float) -> Residual:
    """MobileNetV2's InvertedResidual: [1x1 ConvBNReLU6 expansion], 3x3 depthwise ConvBNReLU6, 1x1 conv, BN."""
    hidden = int(round(c_in * expand))
    layers: List[nn.Module] = []
    if expand != 1:
        layers.append(nn.Sequential(*_conv_bn(c_in, hidden, 1, 1, nn.ReLU6())))
    layers += [nn.Sequential(*_conv_bn(hidden, hidden, 3, stride, nn.ReLU6(), groups=hidden)),
               nn.Conv2d(hidden, c_out, 1, 1, 0, bias=False), nn.BatchNorm2d(c_out)]
    return Residual(layers, stride == 1 and c_in == c_out)


class MobileNetV2(nn.Module):
    """Width 1.0; heads on the 14th feature block's output (96 channels, stride 16) and on the last 1x1
    conv's (1280); four stride-2 inverted residual extras."""

    split = 14

    def __init__(self) -> None:
        super().__init__()
        blocks: List[nn.Module] = [nn.Sequential(*_conv_bn(3, 32, 3, 2, nn.ReLU6()))]
        c_in = 32
        for t, c, n, s in V2_SETTING:
            for i in range(n):
                blocks.append(v2_block(c_in, c, s if i == 0 else 1, t))
                c_in = c
        blocks.append(nn.Sequential(*_conv_bn(c_in, 1280, 1, 1, nn.ReLU6())))
        self.features = nn.Sequential(*blocks)
        self.extras = nn.ModuleList([v2_block(1280, 512, 2, 0.2), v2_block(512, 256, 2, 0.25),
                                     v2_block(256, 256, 2, 0.5), v2_block(256, 64, 2, 0.25)])

    def forward(self, x: torch.Tensor) -> List[torch.Tensor]:
        features = []
        for i, block in enumerate(self.features):
            x = block(x)
            if i == self.split - 1:
                features.append(x)
        features.append(x)
        for extra in self.extras:
            x = extra(x)
            features.append(x)
        return features

    def feature_sizes(self, size: int) -> List[int]:
        """Each head level's map side at a square ``size`` input, without running the network."""
        sides = [map_side(size, nn.Sequential(*self.features[:self.split]))]
        sides.append(map_side(sides[0], nn.Sequential(*self.features[self.split:])))
        for extra in self.extras:
            sides.append(map_side(sides[-1], extra))
        return sides


def make_divisible(v: float, divisor: int = 8) -> int:
    """The nearest multiple of ``divisor`` (at least ``divisor``), never more than 10% below ``v``."""
    new_v = max(divisor, int(v + divisor / 2) // divisor * divisor)
    return new_v + divisor if new_v < 0.9 * v else new_v


class HardSigmoid(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu6(x + 3) / 6


class HardSwish(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * (F.relu6(x + 3) / 6)


class SqueezeExcite(nn.Module):
    """SELayer: channel weights from the global average through Linear, ReLU, Linear, hard sigmoid (``fc``)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        squeezed = make_divisible(channels // 4)
        self.fc = nn.Sequential(nn.Linear(channels, squeezed), nn.ReLU(), nn.Linear(squeezed, channels),
                                HardSigmoid())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        weights = self.fc(x.mean(dim=(2, 3)))
        return x * weights[:, :, None, None]


def v3_block(c_in: int, hidden: int, c_out: int, kernel: int, stride: int, se: bool, hs: bool) -> Residual:
    """MobileNetV3's InvertedResidual (d-li14's layout: no expansion conv when ``hidden == c_in``; where there
    is one, the squeeze-excite sits between the depthwise BN and its activation)."""
    def act() -> nn.Module:
        return HardSwish() if hs else nn.ReLU()

    excite = SqueezeExcite(hidden) if se else nn.Identity()
    depthwise = [nn.Conv2d(hidden, hidden, kernel, stride, (kernel - 1) // 2, groups=hidden, bias=False),
                 nn.BatchNorm2d(hidden)]
    project = [nn.Conv2d(hidden, c_out, 1, 1, 0, bias=False), nn.BatchNorm2d(c_out)]
    if c_in == hidden:
        layers = depthwise + [act(), excite] + project
    else:
        layers = [nn.Conv2d(c_in, hidden, 1, 1, 0, bias=False), nn.BatchNorm2d(hidden), act()] + depthwise \
            + [excite, act()] + project
    return Residual(layers, stride == 1 and c_in == c_out)


class MobileNetV3(nn.Module):
    """MobileNetV3-Large, width 1.0; heads on the 13th feature block's output (112 channels, stride 16) and
    on the last 1x1 conv's (960); four stride-2 squeeze-excite, hard-swish extras."""

    split = 13

    def __init__(self) -> None:
        super().__init__()
        c_in = make_divisible(16)
        blocks: List[nn.Module] = [nn.Sequential(*_conv_bn(3, c_in, 3, 2, HardSwish()))]
        hidden = c_in
        for k, t, c, se, hs, s in V3_SETTING:
            c_out, hidden = make_divisible(c), make_divisible(c_in * t)
            blocks.append(v3_block(c_in, hidden, c_out, k, s, bool(se), bool(hs)))
            c_in = c_out
        blocks.append(nn.Sequential(*_conv_bn(c_in, hidden, 1, 1, HardSwish())))
        self.features = nn.Sequential(*blocks)
        self.extras = nn.ModuleList([v3_block(960, make_divisible(960 * 0.2), 512, 3, 2, True, True),
                                     v3_block(512, make_divisible(512 * 0.25), 256, 3, 2, True, True),
                                     v3_block(256, make_divisible(256 * 0.5), 256, 3, 2, True, True),
                                     v3_block(256, make_divisible(256 * 0.25), 64, 3, 2, True, True)])

    forward = MobileNetV2.forward
    feature_sizes = MobileNetV2.feature_sizes


class SeparableConv2d(nn.Module):
    """SSDLite's head conv: 3x3 depthwise (with bias), BN, ReLU6, 1x1 conv (``conv``)."""

    def __init__(self, c_in: int, c_out: int) -> None:
        super().__init__()
        self.conv = nn.Sequential(nn.Conv2d(c_in, c_in, 3, 1, 1, groups=c_in), nn.BatchNorm2d(c_in), nn.ReLU6(),
                                  nn.Conv2d(c_in, c_out, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x)


class BoxPredictor(nn.Module):
    """SSDBoxPredictor (3x3 convs) or, ``lite``, SSDLiteBoxPredictor (separable 3x3, a 1x1 conv on the
    last level)."""

    def __init__(self, channels: Sequence[int], boxes: Sequence[int], num_classes: int, lite: bool) -> None:
        super().__init__()
        self.num_classes = num_classes

        def head(level: int, c_in: int, c_out: int) -> nn.Module:
            if not lite:
                return nn.Conv2d(c_in, c_out, 3, 1, 1)
            return nn.Conv2d(c_in, c_out, 1) if level == len(channels) - 1 else SeparableConv2d(c_in, c_out)

        self.cls_headers = nn.ModuleList(head(i, c, b * num_classes) for i, (c, b) in enumerate(zip(channels, boxes)))
        self.reg_headers = nn.ModuleList(head(i, c, b * 4) for i, (c, b) in enumerate(zip(channels, boxes)))

    def forward(self, features: Sequence[torch.Tensor]) -> Tuple[torch.Tensor, torch.Tensor]:
        """(bbox_regression (B, N, 4), cls_logits (B, N, C)) in (level, cell, box) order."""
        batch = features[0].shape[0]
        cls = [h(f).permute(0, 2, 3, 1).reshape(batch, -1) for f, h in zip(features, self.cls_headers)]
        reg = [h(f).permute(0, 2, 3, 1).reshape(batch, -1) for f, h in zip(features, self.reg_headers)]
        return torch.cat(reg, 1).view(batch, -1, 4), torch.cat(cls, 1).view(batch, -1, self.num_classes)


class BoxHead(nn.Module):
    def __init__(self, predictor: BoxPredictor) -> None:
        super().__init__()
        self.predictor = predictor


class LufficcSSD(nn.Module):
    """SSDDetector without its post-processing: ``images`` -> (bbox_regression, cls_logits)."""

    def __init__(self, backbone: str, boxes: Sequence[int], num_classes: int, lite: Optional[bool] = None) -> None:
        """``lite``: SSDLiteBoxPredictor (default: for the MobileNets, as lufficc's configs pair them)."""
        super().__init__()
        self.backbone: nn.Module = {"vgg300": lambda: VGG(300), "vgg512": lambda: VGG(512),
                                    "mobilenet_v2": MobileNetV2, "mobilenet_v3": MobileNetV3}[backbone]()
        self.box_head = BoxHead(BoxPredictor(OUT_CHANNELS[backbone], boxes, num_classes,
                                             backbone.startswith("mobilenet") if lite is None else lite))

    def forward(self, images: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        return self.box_head.predictor(self.backbone(images))

    def feature_sizes(self, size: int) -> List[int]:
        """The side of each head level's feature map at a square ``size`` input (what PRIORS.FEATURE_MAPS
        must say), from the layers' arithmetic."""
        return self.backbone.feature_sizes(size)  # type: ignore[operator]
