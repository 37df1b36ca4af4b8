"""MMDetection's SSD networks as modules whose state dict keys are its own, for the networks that are not
torchvision's ``ssd300_vgg16`` layer for layer: SSD512 (SSDVGG + a fifth extra level) and SSDLite on
MobileNetV2 (configs/ssd/ssd512_coco.py, ssdlite_mobilenetv2-scratch_8xb24-600e_coco.py).

The pieces and their keys, as MMDetection builds them (mmcv's ``ConvModule`` is conv, then ``bn`` when a
norm is configured (the conv then has no bias), then the activation):

* ``backbone``: SSDVGG, ``features.N`` = VGG16 with ceil-mode pools and no last pool, then pool5 (3x3/1),
  the dilated conv6 and conv7; outputs after ReLU 22 (conv4_3) and 34 (conv7). Or MobileNetV2:
  ``conv1``, ``layer1..7`` of inverted residuals (``expand_conv``, ``depthwise_conv``, ``linear_conv``
  without activation, a shortcut when stride 1 keeps the channels), ``conv2`` (1x1 to 1280); outputs of
  ``layer5`` (stride 16) and ``conv2`` (stride 32);
* ``neck`` (SSDNeck): ``l2_norm`` on the first output (VGG only: x / (||x|| + 1e-10) * weight), then per
  extra level a 1x1 ConvModule to half the channels and a kxk ConvModule (``use_depthwise``: a depthwise
  ConvModule and a pointwise one) with the level's stride and padding;
* ``bbox_head`` (SSDHead): per level ``cls_convs.i`` and ``reg_convs.i``, a 3x3 conv, or with
  ``use_depthwise`` a depthwise 3x3 ConvModule then a 1x1 conv.
"""

from __future__ import annotations

from typing import List, Optional, Sequence, Tuple, Union

import torch
from torch import nn

VGG16: List[Union[int, str]] = [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512]
VGG_OUTPUTS = (22, 34)  # SSDVGG's out_feature_indices: conv4_3's and conv7's ReLU
MOBILENET_V2 = [(1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1), (6, 160, 3, 2),
                (6, 320, 1, 1)]  # expand ratio, channels, blocks, stride of layer1..7


class ConvModule(nn.Module):
    """mmcv's ConvModule: ``conv``, then ``bn`` (when ``eps`` is given; the conv then has no bias), then
    ``act`` (None for none)."""

    def __init__(self, cin: int, cout: int, kernel: int, stride: int = 1, padding: int = 0, groups: int = 1,
                 eps: Optional[float] = None, act: Optional[nn.Module] = None) -> None:
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, kernel, stride, padding, groups=groups, bias=eps is None)
        if eps is not None:
            self.bn = nn.BatchNorm2d(cout, eps=eps)
        self.act = act

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv(x)
        if hasattr(self, "bn"):
            x = self.bn(x)
        return x if self.act is None else self.act(x)


class DepthwiseSeparable(nn.Module):
    """mmcv's DepthwiseSeparableConvModule: ``depthwise_conv`` then ``pointwise_conv``, both normed and activated."""

    def __init__(self, cin: int, cout: int, kernel: int, stride: int, padding: int, eps: float) -> None:
        super().__init__()
        self.depthwise_conv = ConvModule(cin, cin, kernel, stride, padding, groups=cin, eps=eps, act=nn.ReLU6())
        self.pointwise_conv = ConvModule(cin, cout, 1, eps=eps, act=nn.ReLU6())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pointwise_conv(self.depthwise_conv(x))


class SSDVGG(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        layers: List[nn.Module] = []
        cin = 3
        for v in VGG16:
            if v == "M":
                layers.append(nn.MaxPool2d(2, 2, ceil_mode=True))
            else:
                layers += [nn.Conv2d(cin, int(v), 3, padding=1), nn.ReLU(inplace=True)]
                cin = int(v)
        layers += [nn.MaxPool2d(3, 1, 1), nn.Conv2d(512, 1024, 3, padding=6, dilation=6), nn.ReLU(inplace=True),
                   nn.Conv2d(1024, 1024, 1), nn.ReLU(inplace=True)]
        self.features = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> List[torch.Tensor]:
        outs = []
        for i, layer in enumerate(self.features):
            x = layer(x)
            if i in VGG_OUTPUTS:
                outs.append(x)
        return outs


class InvertedResidual(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int, expand: int, eps: float) -> None:
        super().__init__()
        mid = int(round(cin * expand))
        if expand != 1:
            self.expand_conv = ConvModule(cin, mid, 1, eps=eps, act=nn.ReLU6())
        self.depthwise_conv = ConvModule(mid, mid, 3, stride, 1, groups=mid, eps=eps, act=nn.ReLU6())
        self.linear_conv = ConvModule(mid, cout, 1, eps=eps)
        self.shortcut = stride == 1 and cin == cout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.expand_conv(x) if hasattr(self, "expand_conv") else x
        out = self.linear_conv(self.depthwise_conv(out))
        return x + out if self.shortcut else out


class MobileNetV2(nn.Module):
    def __init__(self, eps: float) -> None:
        super().__init__()
        self.conv1 = ConvModule(3, 32, 3, 2, 1, eps=eps, act=nn.ReLU6())
        cin = 32
        for i, (expand, cout, blocks, stride) in enumerate(MOBILENET_V2):
            layer = [InvertedResidual(cin if b == 0 else cout, cout, stride if b == 0 else 1, expand, eps)
                     for b in range(blocks)]
            self.add_module(f"layer{i + 1}", nn.Sequential(*layer))
            cin = cout
        self.conv2 = ConvModule(320, 1280, 1, eps=eps, act=nn.ReLU6())

    def forward(self, x: torch.Tensor) -> List[torch.Tensor]:
        outs = []
        for name, module in self.named_children():  # conv1, layer1..7, conv2: their registration order
            x = module(x)
            if name in ("layer5", "conv2"):
                outs.append(x)
        return outs


class L2Norm(nn.Module):
    def __init__(self, channels: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        norm = x.pow(2).sum(1, keepdim=True).sqrt() + 1e-10
        return self.weight[None, :, None, None] * x / norm


class SSDNeck(nn.Module):
    def __init__(self, channels: Sequence[int], inputs: int, strides: Sequence[int], paddings: Sequence[int],
                 last_kernel: int, l2_norm: bool, eps: Optional[float]) -> None:
        super().__init__()
        if l2_norm:
            self.l2_norm = L2Norm(channels[0])
        act = (lambda: nn.ReLU6()) if eps is not None else (lambda: nn.ReLU(inplace=True))
        layers = []
        for i, (cout, stride, padding) in enumerate(zip(channels[inputs:], strides, paddings)):
            cin, kernel = channels[inputs - 1 + i], last_kernel if i == len(strides) - 1 else 3
            second: nn.Module = DepthwiseSeparable(cout // 2, cout, kernel, stride, padding, eps) if eps is not None \
                else ConvModule(cout // 2, cout, kernel, stride, padding, act=act())
            layers.append(nn.Sequential(ConvModule(cin, cout // 2, 1, eps=eps, act=act()), second))
        self.extra_layers = nn.ModuleList(layers)

    def forward(self, features: List[torch.Tensor]) -> List[torch.Tensor]:
        outs = list(features)
        if hasattr(self, "l2_norm"):
            outs[0] = self.l2_norm(outs[0])
        for layer in self.extra_layers:
            outs.append(layer(outs[-1]))
        return outs


class SSDHead(nn.Module):
    def __init__(self, channels: Sequence[int], anchors: Sequence[int], num_classes: int, eps: Optional[float]):
        super().__init__()

        def tower(cin: int, cout: int) -> nn.Sequential:
            if eps is None:
                return nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1))
            return nn.Sequential(ConvModule(cin, cin, 3, 1, 1, groups=cin, eps=eps, act=nn.ReLU6()),
                                 nn.Conv2d(cin, cout, 1))

        self.cls_convs = nn.ModuleList([tower(c, a * num_classes) for c, a in zip(channels, anchors)])
        self.reg_convs = nn.ModuleList([tower(c, a * 4) for c, a in zip(channels, anchors)])
        self.num_classes = num_classes

    def forward(self, features: List[torch.Tensor]) -> Tuple[torch.Tensor, torch.Tensor]:
        """(B, N, 4) offsets and (B, N, C) logits, level by level, cell by cell, box by box."""
        batch = features[0].shape[0]
        reg = [conv(f).permute(0, 2, 3, 1).reshape(batch, -1, 4) for f, conv in zip(features, self.reg_convs)]
        cls = [conv(f).permute(0, 2, 3, 1).reshape(batch, -1, self.num_classes)
               for f, conv in zip(features, self.cls_convs)]
        return torch.cat(reg, dim=1), torch.cat(cls, dim=1)


class MMDetSSD(nn.Module):
    """images (B, 3, H, W) normalised -> ``bbox_regression`` (B, N, 4), ``cls_logits`` (B, N, C) in the
    order of its head's channels (the importer moves the background first in the weights)."""

    def __init__(self, backbone: nn.Module, neck: SSDNeck, head: SSDHead) -> None:
        super().__init__()
        self.backbone, self.neck, self.bbox_head = backbone, neck, head

    def forward(self, images: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        return self.bbox_head(self.neck(self.backbone(images)))


def ssd512(num_classes: int, anchors: Sequence[int]) -> MMDetSSD:
    """configs/ssd/ssd512_coco.py's network: (512, 1024) from SSDVGG, extras 512, 256, 256, 256, 256 with
    strides (2, 2, 2, 2, 1), padding 1 and a 4x4 last kernel."""
    channels = (512, 1024, 512, 256, 256, 256, 256)
    neck = SSDNeck(channels, 2, (2, 2, 2, 2, 1), (1, 1, 1, 1, 1), 4, l2_norm=True, eps=None)
    return MMDetSSD(SSDVGG(), neck, SSDHead(channels, anchors, num_classes, eps=None))


def ssdlite_mobilenetv2(num_classes: int, anchors: Sequence[int], eps: float = 1e-3) -> MMDetSSD:
    """ssdlite_mobilenetv2's network: (96, 1280) from MobileNetV2, depthwise extras 512, 256, 256, 128 with
    stride 2, padding 1; BN (``eps``) and ReLU6 throughout, a depthwise head."""
    channels = (96, 1280, 512, 256, 256, 128)
    neck = SSDNeck(channels, 2, (2, 2, 2, 2), (1, 1, 1, 1), 3, l2_norm=False, eps=eps)
    return MMDetSSD(MobileNetV2(eps), neck, SSDHead(channels, anchors, num_classes, eps=eps))


def feature_maps(model: MMDetSSD, size: int) -> List[List[int]]:
    """(height, width) of each head level's feature map at a ``size`` x ``size`` input."""
    with torch.no_grad():
        features = model.neck(model.backbone(torch.zeros(1, 3, size, size)))
    return [list(f.shape[-2:]) for f in features]
