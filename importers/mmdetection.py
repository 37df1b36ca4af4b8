"""MMDetection SSD checkpoints (``{"meta", "state_dict"}``): SSD300, SSD512 (configs/ssd/ssd300_coco.py,
ssd300_voc0712.py, ssd512_coco.py) and SSDLite on MobileNetV2 (ssdlite_mobilenetv2-scratch_8xb24-600e_coco.py,
ssdlite_mobilenetv2_scratch_600e_coco.py in 2.x).

Recognised by ``backbone.*``, ``neck.extra_layers.*`` (SSDNeck), ``bbox_head.{cls,reg}_convs.*`` (SSDHead); the
network by its backbone (SSDVGG's ``features.*`` with ``neck.l2_norm``: 4 extra levels SSD300, 5 SSD512;
MobileNetV2's ``conv1``, ``layer1..7``, ``conv2``: SSDLite). SSD300's SSDVGG, SSDNeck and SSDHead are
ssd.pytorch's layers, so its weights are renamed onto torchvision's ``ssd300_vgg16`` (importers/ssd_pytorch.py);
SSD512 and SSDLite load under their own keys into importers/mmdet_networks.py. Either way the classification
convs are re-ordered: MMDetection puts the background LAST of each box's C + 1 channels, the toolkit first.
Its inference, reproduced through the metadata:

* priors (SSDAnchorGenerator, ``scale_major=False``): per level integer min/max sizes, from
  ``basesize_ratio_range`` (SSD300 coco (0.15, 0.9), voc (0.2, 0.9); SSD512 coco (0.1, 0.9), voc (0.15, 0.9))
  or given as ``min_sizes``/``max_sizes`` (SSDLite); per cell the min square, the sqrt(max / min) scaled
  square, then per ratio r (w sqrt r, h / sqrt r) and its transpose; centres at (i + 0.5) * stride; no clip;
* pre-processing: LoadImageFromFile (BGR uint8), ``Resize(scale=(S, S), keep_ratio=False)`` = mmcv's
  ``imresize``, cv2 bilinear on the uint8 image; then RGB, mean (123.675, 116.28, 103.53), std 1 (SSD300,
  SSD512) or (58.395, 57.12, 57.375) (SSDLite);
* post-processing (test_cfg; BaseDenseHead's ``_predict_by_feat_single``): softmax, background dropped, per
  level the best ``nms_pre`` (1000) of the (box, class) scores above ``score_thr`` (0.02),
  DeltaXYWHBBoxCoder (stds 0.1, 0.1, 0.2, 0.2) clipped to the image BEFORE NMS, class-wise NMS at IoU 0.45,
  the best ``max_per_img`` (200) over all classes.

The per-level ``nms_pre`` cut has no field in the metadata yet: it is recorded in ``extra`` and the host
considers every candidate above the threshold (per class at most nms_pre x levels), which gives the same
detections unless a box outside a level's best 1000 would survive NMS into the best 200.

What the checkpoint does not tell (the prior sizes, thresholds, normalisation) comes from ``--config`` (the
training config, read as data: importers/mmdet_config.py), else the network's own config (SSDLite) or
``--preset coco | voc`` (81 outputs mean coco, 21 voc).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Sequence, Tuple, cast

import torch

from export.architectures import RawHeadOutputs
from export.architectures import build_model as build_torchvision
from importers.base import ImportedModel, Importer, ImportOptions, Recognised, StateDict, load_exact, placeholder_names
from importers.mmdet_config import first, read_config
from importers.mmdet_networks import MMDetSSD, feature_maps, ssd512, ssdlite_mobilenetv2
from importers.ssd_pytorch import FEATURE_MAPS, torchvision_key
from runtimes.errors import UserError
from runtimes.metadata import AnchorConfig, ModelMetadata, ResizeSpec

CODEBASE = "mmdetection"
PRESET_OF_CLASSES = {81: "coco", 21: "voc"}
# configs/_base_/models/ssd300.py's normalisation and test_cfg, which ssd512 and ssdlite keep (but std)
DEFAULTS: Dict[str, Any] = {"mean": [123.675, 116.28, 103.53], "std": [1.0, 1.0, 1.0], "score_thr": 0.02,
                            "iou_threshold": 0.45, "max_per_img": 200, "nms_pre": 1000, "rgb": True}
HEAD = ("bbox_head.cls_convs.", "bbox_head.reg_convs.")


@dataclass
class Network:
    """What a network's config says about its priors: input size, strides, ratios, and either the
    ``basesize_ratio_range`` of each preset (with the first level SSDAnchorGenerator hard-codes for it, in
    percent of the input) or explicit ``min_sizes``/``max_sizes``; ``defaults`` the rest of its config."""

    size: int
    strides: List[int]
    ratios: List[List[int]]
    presets: Dict[str, Tuple[float, float]] = field(default_factory=dict)
    first_level: Dict[float, Tuple[int, int]] = field(default_factory=dict)
    min_sizes: Optional[List[int]] = None
    max_sizes: Optional[List[int]] = None
    defaults: Dict[str, Any] = field(default_factory=dict)


NETWORKS = {
    "ssd300": Network(300, [8, 16, 32, 64, 100, 300], [[2], [2, 3], [2, 3], [2, 3], [2], [2]],
                      {"coco": (0.15, 0.9), "voc": (0.2, 0.9)}, {0.15: (7, 15), 0.2: (10, 20)}),
    "ssd512": Network(512, [8, 16, 32, 64, 128, 256, 512], [[2], [2, 3], [2, 3], [2, 3], [2, 3], [2], [2]],
                      {"coco": (0.1, 0.9), "voc": (0.15, 0.9)}, {0.1: (4, 10), 0.15: (7, 15)}),
    "ssdlite_mobilenetv2": Network(320, [16, 32, 64, 107, 160, 320], [[2, 3]] * 6,
                                   min_sizes=[48, 100, 150, 202, 253, 304], max_sizes=[100, 150, 202, 253, 304, 320],
                                   defaults={"std": [58.395, 57.12, 57.375], "bn_eps": 1e-3}),
}


def sizes(network: Network, ratio_range: Sequence[float]) -> Tuple[List[int], List[int]]:
    """SSDAnchorGenerator's per-level min and max box sizes in pixels from ``basesize_ratio_range``."""
    low, high = int(ratio_range[0] * 100), int(ratio_range[1] * 100)
    step = int(math.floor(high - low) / (len(network.strides) - 2))
    mins = [int(network.size * r / 100) for r in range(low, high + 1, step)]
    maxs = [int(network.size * (r + step) / 100) for r in range(low, high + 1, step)]
    first_level = network.first_level.get(float(ratio_range[0]))
    if first_level is None:
        starts = " or ".join(str(v) for v in network.first_level) or "no range (only explicit min_sizes)"
        raise UserError(f"basesize_ratio_range {tuple(ratio_range)}: SSDAnchorGenerator takes {starts} as its "
                        f"first value at {network.size}; is the config the checkpoint's own?")
    return [int(network.size * first_level[0] / 100)] + mins, [int(network.size * first_level[1] / 100)] + maxs


def box_sizes(min_size: float, max_size: float, ratios: Sequence[int], size: int) -> List[List[float]]:
    """A cell's priors as (w, h) fractions of the input, in SSDAnchorGenerator's order (min square,
    sqrt(max / min) scaled square, then each ratio's pair)."""
    big = min_size * math.sqrt(max_size / min_size)
    pairs = [[min_size, min_size], [big, big]]
    for r in ratios:
        wide, tall = min_size * math.sqrt(r), min_size / math.sqrt(r)
        pairs += [[wide, tall], [tall, wide]]
    return [[w / size, h / size] for w, h in pairs]


def network_of(state: StateDict) -> Tuple[Optional[str], str]:
    """The network of an MMDetection SSD state dict, or None and why."""
    extras = {k.split(".")[2] for k in state if k.startswith("neck.extra_layers.")}
    if "backbone.features.0.weight" in state and "neck.l2_norm.weight" in state:
        found = {4: "ssd300", 5: "ssd512"}.get(len(extras))
        return found, "" if found else f"its SSDVGG neck has {len(extras)} extra levels, not SSD300's 4 or SSD512's 5"
    if {"backbone.conv1.conv.weight", "backbone.layer7.0.linear_conv.conv.weight",
            "backbone.conv2.conv.weight"} <= set(state):
        return "ssdlite_mobilenetv2", ""
    backbone = sorted({k.split(".")[1] for k in state if k.startswith("backbone.")})[:4]
    return None, (f"its backbone ({', '.join(backbone)}, ...) is neither SSDVGG nor MobileNetV2 (other SSD "
                  "backbones are not built); export an SSD300, SSD512 or SSDLite-MobileNetV2 checkpoint")


def recognise(state: StateDict) -> Optional[Recognised]:
    prefixes = {key.split(".")[0] for key in state}
    if prefixes != {"backbone", "neck", "bbox_head"} or not any(k.startswith(HEAD[0]) for k in state) \
            or not any(k.startswith("neck.extra_layers.") for k in state):
        return None
    network, missing = network_of(state)
    return Recognised(CODEBASE, network, missing)


def ssd_pytorch_key(key: str) -> str:
    """The ssd.pytorch name of an MMDetection SSD300 key (same layers), unchanged for a key it has no place for."""
    parts = key.split(".")
    if parts[0] == "backbone" and parts[1] == "features":
        return ".".join(["vgg"] + parts[2:])
    if key == "neck.l2_norm.weight":
        return "L2Norm.weight"
    if key.startswith("neck.extra_layers.") and len(parts) == 6 and parts[4] == "conv":
        return f"extras.{2 * int(parts[2]) + int(parts[3])}.{parts[5]}"
    for prefix, name in zip(HEAD, ("conf", "loc")):
        if key.startswith(prefix):  # cls_convs.i.0.weight (MMDetection >= 2.18) or cls_convs.i.weight
            return f"{name}.{parts[2]}.{parts[-1]}"
    return key


def sequential_head_key(key: str) -> str:
    """A head key of MMDetection < 2.18 (``cls_convs.i.weight``) as later versions name it
    (``cls_convs.i.0.weight``)."""
    parts = key.split(".")
    return ".".join(parts[:3] + ["0"] + parts[3:]) if key.startswith(HEAD) and len(parts) == 4 else key


def background_first(tensor: torch.Tensor, classes: int) -> torch.Tensor:
    """A classification conv's (A * (C + 1), ...) outputs with each box's background moved from last to first."""
    boxes = int(tensor.shape[0]) // classes
    order = torch.arange(boxes * classes).view(boxes, classes)
    return tensor[torch.cat([order[:, -1:], order[:, :-1]], dim=1).reshape(-1)]


def _from_config(options: ImportOptions, network: Network) -> Dict[str, Any]:
    config = read_config(options.config)  # type: ignore[arg-type]
    anchor = ["model", "bbox_head", "anchor_generator"]
    found = {"ratio_range": first(config, anchor + ["basesize_ratio_range"]),
             "min_sizes": first(config, anchor + ["min_sizes"]), "max_sizes": first(config, anchor + ["max_sizes"]),
             "strides": first(config, anchor + ["strides"]), "ratios": first(config, anchor + ["ratios"]),
             "size": first(config, anchor + ["input_size"]),
             "mean": first(config, ["model", "data_preprocessor", "mean"], ["img_norm_cfg", "mean"]),
             "std": first(config, ["model", "data_preprocessor", "std"], ["img_norm_cfg", "std"]),
             "rgb": first(config, ["model", "data_preprocessor", "bgr_to_rgb"], ["img_norm_cfg", "to_rgb"]),
             "bn_eps": first(config, ["model", "backbone", "norm_cfg", "eps"]),
             "score_thr": first(config, ["model", "test_cfg", "score_thr"]),
             "iou_threshold": first(config, ["model", "test_cfg", "nms", "iou_threshold"]),
             "max_per_img": first(config, ["model", "test_cfg", "max_per_img"]),
             "nms_pre": first(config, ["model", "test_cfg", "nms_pre"])}
    if found["ratio_range"] is None and found["min_sizes"] is None:
        raise UserError(f"{options.config}: no model.bbox_head.anchor_generator.basesize_ratio_range nor min_sizes; "
                        "is this the SSD config the checkpoint was trained with?")
    if found["min_sizes"] is None and found["size"] not in (None, network.size):
        raise UserError(f"{options.config}: input_size {found['size']}, but the checkpoint is a {network.size} "
                        "network; is this its config?")
    return {k: v for k, v in found.items() if v is not None and k != "size"}


def settings(options: ImportOptions, name: str, num_classes: int) -> Dict[str, Any]:
    """Priors, thresholds and normalisation from --config, else the network's own config (explicit sizes),
    else --preset, else the class count."""
    network = NETWORKS[name]
    found = {**DEFAULTS, **network.defaults, "strides": network.strides, "ratios": network.ratios}
    if options.config is not None:
        found.update(_from_config(options, network))
    elif network.min_sizes is not None and options.preset is None:
        found.update(min_sizes=network.min_sizes, max_sizes=network.max_sizes)
    else:
        preset = options.preset or PRESET_OF_CLASSES.get(num_classes)
        if not network.presets:
            raise UserError(f"--preset {preset}: MMDetection's {name} has no presets (its prior sizes are its "
                            "config's); leave --preset out, or pass the training config with --config FILE")
        if preset not in network.presets:
            told = f"--preset {options.preset}: MMDetection's {name} presets are coco and voc" if options.preset \
                else f"its head has {num_classes - 1} classes, which does not tell its prior sizes"
            raise UserError(f"{told}: pass the training config with --config FILE (read as data), or --preset "
                            "coco|voc")
        found["ratio_range"] = network.presets[str(preset)]
    if "min_sizes" not in found:
        found["min_sizes"], found["max_sizes"] = sizes(network, found["ratio_range"])
    return found


def head_convs(state: StateDict, prefix: str) -> List[str]:
    """The keys (weight, bias) of each level's last conv under ``prefix`` (``bbox_head.cls_convs.``): the
    conv that outputs anchors x classes (or x 4); a depthwise head's first ConvModule is not one."""
    towers: Dict[str, int] = {}
    for key in state:
        parts = key.split(".")
        if key.startswith(prefix) and len(parts) == 5:
            towers[parts[2]] = max(towers.get(parts[2], 0), int(parts[3]))
    return [f"{prefix}{level}.{last}.{leaf}" for level, last in towers.items() for leaf in ("weight", "bias")
            if f"{prefix}{level}.{last}.{leaf}" in state]


def _network(state: StateDict, name: str, num_classes: int, anchors: List[int], eps: float) -> torch.nn.Module:
    """The module of ``name`` (raw outputs) with the weights of ``state``, each box's background moved first."""
    state = dict(state)
    for key in head_convs(state, HEAD[0]):
        state[key] = background_first(state[key], num_classes)
    what = f"an {CODEBASE} {name} checkpoint ({num_classes} classes with the background)"
    if name == "ssd300":
        renamed = {torchvision_key(ssd_pytorch_key(k)) or k: v for k, v in state.items()}
        return RawHeadOutputs(load_exact(build_torchvision("ssd300_vgg16", num_classes), renamed, what))
    model = ssd512(num_classes, anchors) if name == "ssd512" else ssdlite_mobilenetv2(num_classes, anchors, eps)
    return load_exact(model, state, what)


def build_model(state: StateDict, recognised: Recognised, options: ImportOptions) -> ImportedModel:
    name = str(recognised.network)
    network = NETWORKS[name]
    if options.input_size not in (None, network.size):
        raise UserError(f"--input-size {options.input_size}: MMDetection's {name} takes {network.size}; leave it out")
    state = {sequential_head_key(k): v for k, v in state.items()}
    cls_key, reg_key = head_convs(state, HEAD[0])[0], head_convs(state, HEAD[1])[0]
    num_classes = int(state[cls_key].shape[0]) // max(int(state[reg_key].shape[0]) // 4, 1)
    found = settings(options, name, num_classes)
    strides, ratios, mins, maxs = found["strides"], found["ratios"], found["min_sizes"], found["max_sizes"]
    per_cell = [2 + 2 * len(r) for r in ratios]
    heads = [int(state[k].shape[0]) // 4 for k in head_convs(state, HEAD[1]) if k.endswith("weight")]
    if not len(strides) == len(ratios) == len(mins) == len(maxs) or per_cell != heads:
        raise UserError(f"the config's anchors ({len(strides)} strides, {per_cell} boxes per cell) do not fit the "
                        f"checkpoint's head ({heads} boxes per cell); is --config the checkpoint's own?")
    module = _network(state, name, num_classes, per_cell, float(found.get("bn_eps", 1e-3)))
    size = network.size
    levels = [[f, f] for f in FEATURE_MAPS] if name == "ssd300" else feature_maps(cast(MMDetSSD, module), size)
    anchors = AnchorConfig(feature_maps=levels, aspect_ratios=[], scales=[], steps=[int(s) for s in strides],
                           clip=False, box_sizes=[box_sizes(lo, hi, r, size) for lo, hi, r in zip(mins, maxs, ratios)])
    meta = ModelMetadata(
        arch=f"{CODEBASE}/{name}", input_height=size, input_width=size, channel_order="RGB" if found["rgb"] else "BGR",
        mean=[float(v) for v in found["mean"]], std=[float(v) for v in found["std"]],
        class_names=placeholder_names(num_classes), output_format="raw", box_coder_weights=[10.0, 10.0, 5.0, 5.0],
        anchors=anchors, score_threshold=float(found["score_thr"]), iou_threshold=float(found["iou_threshold"]),
        topk_candidates=int(found["nms_pre"]) * len(strides), max_detections=int(found["max_per_img"]),
        resize=ResizeSpec(library="opencv", interpolation="linear", pixels="uint8"), clip_boxes="before_nms",
        extra={"mmdetection": {"nms_pre_per_level": int(found["nms_pre"]), "min_sizes": list(mins),
                               "max_sizes": list(maxs), **({"basesize_ratio_range": list(found["ratio_range"])}
                                                           if "ratio_range" in found else {})}})
    return ImportedModel(module, meta)


IMPORTER = Importer(CODEBASE, recognise, build_model)
