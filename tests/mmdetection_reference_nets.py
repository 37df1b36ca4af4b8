"""MMDetection's SSD512 and SSDLite-MobileNetV2 networks written as functions over a state dict under
MMDetection's keys (SSDVGG, MobileNetV2 and its InvertedResidual, SSDNeck, SSDHead, mmcv's ConvModule and
DepthwiseSeparableConvModule as configs/ssd/ssd512_coco.py and ssdlite_mobilenetv2 build them), for the
parity tests; independent of importers/mmdet_networks.py's modules, which must load the same keys.

``make_state`` creates the weights by running the function once on the images: convs He-initialised (seeded),
each BatchNorm's running mean 0 and running variance its input's mean square (over the batch) plus 1, so
features keep about unit size through MobileNetV2's 50 convs without the normalisation amplifying rounding
(the batch's own variance, over the two pixels of a 1x1 map, made float32 differ from float64 by 3e-3 of the
outputs' range), each head's last conv scaled so its logits reach +-``logit_max`` and offsets +-``offset_max``."""

from __future__ import annotations

from typing import Callable, Dict, List, Optional, Tuple

import torch
import torch.nn.functional as F

State = Dict[str, torch.Tensor]
VGG = [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512]
MOBILENET_V2 = [(1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1), (6, 160, 3, 2),
                (6, 320, 1, 1)]
EPS = 1e-3  # ssdlite's norm_cfg


class Weights:
    """A state dict that, while ``building``, creates each tensor it is asked for."""

    def __init__(self, state: Optional[State] = None, generator: Optional[torch.Generator] = None) -> None:
        self.state: State = dict(state or {})
        self.generator = generator

    def conv(self, key: str, cout: int, cin: int, k: int, bias: bool) -> Tuple[torch.Tensor, Optional[torch.Tensor]]:
        if self.generator is not None and f"{key}.weight" not in self.state:
            w = torch.randn(cout, cin, k, k, generator=self.generator) * (2.0 / (cin * k * k)) ** 0.5
            self.state[f"{key}.weight"] = w
            if bias:
                self.state[f"{key}.bias"] = (torch.rand(cout, generator=self.generator) - 0.5) * 0.2
        return self.state[f"{key}.weight"], self.state.get(f"{key}.bias")

    def bn(self, key: str, x: torch.Tensor) -> torch.Tensor:
        if self.generator is not None and f"{key}.weight" not in self.state:
            n = x.shape[1]
            self.state.update({f"{key}.running_mean": torch.zeros(n),
                               f"{key}.running_var": x.pow(2).mean(dim=(0, 2, 3)) + 1.0,
                               f"{key}.weight": 0.5 + torch.rand(n, generator=self.generator),
                               f"{key}.bias": (torch.rand(n, generator=self.generator) - 0.3) * 0.5,
                               f"{key}.num_batches_tracked": torch.tensor(0)})
        s = self.state
        return F.batch_norm(x, s[f"{key}.running_mean"], s[f"{key}.running_var"], s[f"{key}.weight"],
                            s[f"{key}.bias"], False, 0.0, EPS)


def conv_module(w: Weights, key: str, x: torch.Tensor, cout: int, k: int = 1, stride: int = 1, pad: int = 0,
                groups: int = 1, norm: bool = True, act: Optional[Callable] = F.relu6) -> torch.Tensor:
    """mmcv's ConvModule: conv (no bias when normed), ``bn``, activation."""
    weight, bias = w.conv(f"{key}.conv", cout, x.shape[1] // groups, k, bias=not norm)
    x = F.conv2d(x, weight, bias, stride, pad, 1, groups)
    x = w.bn(f"{key}.bn", x) if norm else x
    return x if act is None else act(x)


def head(w: Weights, features: List[torch.Tensor], classes: int, anchors: List[int], depthwise: bool):
    """SSDHead: (1, N, 4) offsets and (1, N, classes) logits, background LAST as MMDetection has them."""
    reg, cls = [], []
    for level, (f, a) in enumerate(zip(features, anchors)):
        for name, width, out in (("reg", 4, reg), ("cls", classes, cls)):
            key = f"bbox_head.{name}_convs.{level}"
            x = conv_module(w, f"{key}.0", f, f.shape[1], 3, 1, 1, groups=f.shape[1]) if depthwise else f
            weight, bias = w.conv(f"{key}.{1 if depthwise else 0}", a * width, f.shape[1], 1 if depthwise else 3, True)
            out.append(F.conv2d(x, weight, bias, 1, 0 if depthwise else 1).permute(0, 2, 3, 1)
                       .reshape(f.shape[0], -1, width))
    return torch.cat(reg, 1), torch.cat(cls, 1)


def ssd512(w: Weights, x: torch.Tensor, classes: int) -> Tuple[torch.Tensor, torch.Tensor]:
    """SSDVGG (ceil-mode pools, no last pool, pool5 3x3/1, conv6 dilated 6, conv7), L2Norm on conv4_3,
    extras 1x1 then 3x3 (stride 2, 2, 2, 2 then a 4x4 stride 1), all padded 1, 3x3 heads."""
    features, index, cin = [], 0, 3
    for v in VGG + ["pool5", 1024, 1024]:
        if v in ("M", "pool5"):
            x = F.max_pool2d(x, 2, 2, ceil_mode=True) if v == "M" else F.max_pool2d(x, 3, 1, 1)
            index += 1
            continue
        k, pad, dilation = (3, 6, 6) if index == 31 else (1, 0, 1) if index == 33 else (3, 1, 1)
        weight, bias = w.conv(f"backbone.features.{index}", int(v), cin, k, True)
        x = F.relu(F.conv2d(x, weight, bias, 1, pad, dilation))
        index, cin = index + 2, int(v)
        if index - 1 == 22:
            scale = w.state.setdefault("neck.l2_norm.weight", torch.linspace(10.0, 30.0, 512))
            features.append(scale[None, :, None, None] * x / (x.pow(2).sum(1, keepdim=True).sqrt() + 1e-10))
    features.append(x)
    for level, (cout, stride, k) in enumerate([(512, 2, 3), (256, 2, 3), (256, 2, 3), (256, 2, 3), (256, 1, 4)]):
        key = f"neck.extra_layers.{level}"
        x = conv_module(w, f"{key}.0", x, cout // 2, norm=False, act=F.relu)
        x = conv_module(w, f"{key}.1", x, cout, k, stride, 1, norm=False, act=F.relu)
        features.append(x)
    return head(w, features, classes, [4, 6, 6, 6, 6, 4, 4], depthwise=False)


def ssdlite(w: Weights, x: torch.Tensor, classes: int) -> Tuple[torch.Tensor, torch.Tensor]:
    """MobileNetV2 (outputs of layer5 and conv2), depthwise SSDNeck extras, depthwise SSDHead; ReLU6."""
    x = conv_module(w, "backbone.conv1", x, 32, 3, 2, 1)
    cin, features = 32, []
    for i, (expand, cout, blocks, first_stride) in enumerate(MOBILENET_V2):
        for b in range(blocks):
            key, stride = f"backbone.layer{i + 1}.{b}", first_stride if b == 0 else 1
            out = conv_module(w, f"{key}.expand_conv", x, cin * expand) if expand != 1 else x
            out = conv_module(w, f"{key}.depthwise_conv", out, out.shape[1], 3, stride, 1, groups=out.shape[1])
            out = conv_module(w, f"{key}.linear_conv", out, cout, act=None)
            x, cin = (x + out if stride == 1 and cin == cout else out), cout
        if i == 4:
            features.append(x)
    x = conv_module(w, "backbone.conv2", x, 1280)
    features.append(x)
    for level, cout in enumerate([512, 256, 256, 128]):
        key = f"neck.extra_layers.{level}"
        x = conv_module(w, f"{key}.0", x, cout // 2)
        x = conv_module(w, f"{key}.1.depthwise_conv", x, cout // 2, 3, 2, 1, groups=cout // 2)
        x = conv_module(w, f"{key}.1.pointwise_conv", x, cout)
        features.append(x)
    return head(w, features, classes, [6] * 6, depthwise=True)


NETWORKS = {"ssd512": ssd512, "ssdlite": ssdlite}


def make_state(network: str, classes: int, batch: torch.Tensor, seed: int = 0, logit_max: float = 6.0,
               offset_max: float = 2.0) -> State:
    """Decisive weights (see the module's docstring) for ``network``, built on ``batch`` (B, 3, S, S)."""
    w = Weights(generator=torch.Generator().manual_seed(seed))
    with torch.no_grad():
        # the pass that creates the weights computes the outputs with them: it measures every level's peak
        reg, cls = NETWORKS[network](w, batch, classes)
    last = "1" if network == "ssdlite" else "0"
    maps, per_cell = (([64, 32, 16, 8, 4, 2, 1], [4, 6, 6, 6, 6, 4, 4]) if network == "ssd512"
                      else ([20, 10, 5, 3, 2, 1], [6] * 6))
    start = 0
    for level, count in enumerate(m * m * a for m, a in zip(maps, per_cell)):
        for name, out, top in (("reg", reg, offset_max), ("cls", cls, logit_max)):
            factor = top / float(out[:, start:start + count].abs().max())
            for leaf in ("weight", "bias"):
                w.state[f"bbox_head.{name}_convs.{level}.{last}.{leaf}"] *= factor
        start += count
    return w.state


def run(network: str, state: State, x: torch.Tensor, classes: int) -> Tuple[torch.Tensor, torch.Tensor]:
    """The network on ``x`` (1, 3, S, S): (1, N, 4) offsets, (1, N, classes) logits, background last."""
    with torch.no_grad():
        return NETWORKS[network](Weights(state), x, classes)
