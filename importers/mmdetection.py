"""MMDetection SSD300 checkpoints (``{"meta", "state_dict"}``; configs/ssd/ssd300_coco.py, ssd300_voc0712.py).

Recognised by ``backbone.features.*`` (SSDVGG), ``neck.l2_norm.weight`` and ``neck.extra_layers.*`` (SSDNeck),
``bbox_head.{cls,reg}_convs.*`` (SSDHead). SSDVGG's feature indices are ssd.pytorch's (conv4_3's ReLU at 22,
fc7's at 34; its ceil-mode pools change no size at 300), SSDNeck's extras are the same 1x1/3x3 pairs and its
L2Norm the same formula, so the weights are renamed onto torchvision's ``ssd300_vgg16``
(importers/ssd_pytorch.py), the classification convs re-ordered: MMDetection puts the background LAST of
each box's C + 1 channels, the toolkit first. Its inference, reproduced through the metadata:

* priors (SSDAnchorGenerator, ``scale_major=False``): from ``basesize_ratio_range`` (coco (0.15, 0.9), voc
  (0.2, 0.9)) the integer min/max sizes per level; per cell the min square, the sqrt(max / min) scaled
  square, then per ratio r (w sqrt r, h / sqrt r) and its transpose; centres at (i + 0.5) * stride; no clip;
* pre-processing: LoadImageFromFile (BGR uint8), ``Resize(scale=(300, 300), keep_ratio=False)`` = mmcv's
  ``imresize``, cv2 bilinear on the uint8 image; then RGB, mean (123.675, 116.28, 103.53), std 1;
* post-processing (test_cfg): softmax, background dropped, per level the best ``nms_pre`` (1000) of the
  (box, class) scores above ``score_thr`` (0.02), DeltaXYWHBBoxCoder (stds 0.1, 0.1, 0.2, 0.2) clipped to the
  image BEFORE NMS, class-wise NMS at IoU 0.45, the best ``max_per_img`` (200) over all classes.

The per-level ``nms_pre`` cut has no field in the metadata yet: it is recorded in ``extra`` and the host
considers every candidate above the threshold (per class at most nms_pre x levels), which gives the same
detections unless a box outside a level's best 1000 would survive NMS into the best 200.

What the checkpoint does not tell (the prior sizes, thresholds, normalisation) comes from ``--config`` (the
training config, read as data: importers/mmdet_config.py) or ``--preset coco | voc``; 81 outputs mean coco,
21 voc.
"""

from __future__ import annotations

import math
from typing import Any, Dict, List, Optional, Sequence, Tuple

import torch

from export.architectures import RawHeadOutputs
from export.architectures import build_model as build_torchvision
from importers.base import ImportedModel, Importer, ImportOptions, Recognised, StateDict, load_exact, placeholder_names
from importers.mmdet_config import first, read_config
from importers.ssd_pytorch import FEATURE_MAPS, RATIOS, box_sizes, torchvision_key
from runtimes.errors import UserError
from runtimes.metadata import AnchorConfig, ModelMetadata, ResizeSpec

CODEBASE = "mmdetection"
SIZE = 300
STRIDES = [8, 16, 32, 64, 100, 300]
PRESETS = {"coco": (0.15, 0.9), "voc": (0.2, 0.9)}  # basesize_ratio_range of ssd300_coco.py, ssd300_voc0712.py
PRESET_OF_CLASSES = {81: "coco", 21: "voc"}
# configs/_base_/models/ssd300.py
DEFAULTS: Dict[str, Any] = {"mean": [123.675, 116.28, 103.53], "std": [1.0, 1.0, 1.0], "score_thr": 0.02,
                            "iou_threshold": 0.45, "max_per_img": 200, "nms_pre": 1000, "rgb": True}
HEAD = ("bbox_head.cls_convs.", "bbox_head.reg_convs.")


def sizes(ratio_range: Sequence[float], input_size: int = SIZE) -> Tuple[List[int], List[int]]:
    """SSDAnchorGenerator's per-level min and max box sizes in pixels for SSD300."""
    low, high = int(ratio_range[0] * 100), int(ratio_range[1] * 100)
    step = int(math.floor(high - low) / (len(STRIDES) - 2))
    mins = [int(input_size * r / 100) for r in range(low, high + 1, step)]
    maxs = [int(input_size * (r + step) / 100) for r in range(low, high + 1, step)]
    first_level = {0.15: (7, 15), 0.2: (10, 20)}.get(float(ratio_range[0]))
    if first_level is None:
        raise UserError(f"basesize_ratio_range {tuple(ratio_range)}: SSDAnchorGenerator takes 0.15 (coco) or 0.2 "
                        "(voc) as its first value at 300; fix the config or pass --preset")
    return [int(input_size * first_level[0] / 100)] + mins, [int(input_size * first_level[1] / 100)] + maxs


def recognise(state: StateDict) -> Optional[Recognised]:
    prefixes = {key.split(".")[0] for key in state}
    if prefixes != {"backbone", "neck", "bbox_head"} or "neck.l2_norm.weight" not in state \
            or not any(k.startswith(HEAD[0]) for k in state):
        return None
    extras = {k.split(".")[2] for k in state if k.startswith("neck.extra_layers.")}
    if len(extras) != 4:
        return Recognised(CODEBASE, None, f"its neck has {len(extras)} extra layers, not SSD300's 4 (SSD512 and "
                                          "SSDLite are not built yet); export an SSD300 checkpoint")
    return Recognised(CODEBASE, "ssd300")


def ssd_pytorch_key(key: str) -> str:
    """The ssd.pytorch name of an MMDetection key (same layers), unchanged for a key it has no place for."""
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


def background_first(tensor: torch.Tensor, classes: int) -> torch.Tensor:
    """A classification conv's (A * (C + 1), ...) outputs with each box's background moved from last to first."""
    boxes = int(tensor.shape[0]) // classes
    order = torch.arange(boxes * classes).view(boxes, classes)
    return tensor[torch.cat([order[:, -1:], order[:, :-1]], dim=1).reshape(-1)]


def settings(options: ImportOptions, num_classes: int) -> Dict[str, Any]:
    """Prior range, thresholds and normalisation from --config, else --preset, else the class count."""
    if options.config is not None:
        config = read_config(options.config)
        head = ["model", "bbox_head"]
        ratio_range = first(config, head + ["anchor_generator", "basesize_ratio_range"])
        if ratio_range is None:
            raise UserError(f"{options.config}: no model.bbox_head.anchor_generator.basesize_ratio_range; is "
                            "this the SSD config the checkpoint was trained with?")
        found = {"ratio_range": ratio_range, "size": first(config, head + ["anchor_generator", "input_size"]),
                 "mean": first(config, ["model", "data_preprocessor", "mean"], ["img_norm_cfg", "mean"]),
                 "std": first(config, ["model", "data_preprocessor", "std"], ["img_norm_cfg", "std"]),
                 "rgb": first(config, ["model", "data_preprocessor", "bgr_to_rgb"], ["img_norm_cfg", "to_rgb"]),
                 "score_thr": first(config, ["model", "test_cfg", "score_thr"]),
                 "iou_threshold": first(config, ["model", "test_cfg", "nms", "iou_threshold"]),
                 "max_per_img": first(config, ["model", "test_cfg", "max_per_img"]),
                 "nms_pre": first(config, ["model", "test_cfg", "nms_pre"])}
        if found["size"] not in (None, SIZE):
            raise UserError(f"{options.config}: input_size {found['size']}; only SSD300 is imported yet")
        return {**DEFAULTS, **{k: v for k, v in found.items() if v is not None}}
    preset = options.preset or PRESET_OF_CLASSES.get(num_classes)
    if preset not in PRESETS:
        told = f"--preset {options.preset}: MMDetection's SSD300 presets are coco and voc" if options.preset else \
            f"its head has {num_classes - 1} classes, which does not tell its prior sizes"
        raise UserError(f"{told}: pass the training config with --config FILE (read as data), or --preset coco|voc")
    return {**DEFAULTS, "ratio_range": PRESETS[str(preset)]}


def build_model(state: StateDict, recognised: Recognised, options: ImportOptions) -> ImportedModel:
    if options.input_size not in (None, SIZE):
        raise UserError(f"--input-size {options.input_size}: only MMDetection's SSD300 is imported yet; leave it out")
    renamed = {torchvision_key(ssd_pytorch_key(k)) or k: v for k, v in state.items()}
    cls_key = "head.classification_head.module_list.0.weight"
    num_classes = int(renamed[cls_key].shape[0]) // (int(renamed[cls_key.replace("classification", "regression")]
                                                         .shape[0]) // 4)
    found = settings(options, num_classes)
    for key in [k for k in renamed if k.startswith("head.classification_head.")]:
        renamed[key] = background_first(renamed[key], num_classes)
    what = f"an {CODEBASE} SSD300 checkpoint ({num_classes} classes with the background)"
    model = load_exact(build_torchvision("ssd300_vgg16", num_classes), renamed, what)
    mins, maxs = sizes(found["ratio_range"])
    anchors = AnchorConfig(feature_maps=[[f, f] for f in FEATURE_MAPS], aspect_ratios=[], scales=[], steps=STRIDES,
                           clip=False, box_sizes=[box_sizes(lo, hi, r) for lo, hi, r in zip(mins, maxs, RATIOS)])
    levels = len(STRIDES)
    meta = ModelMetadata(
        arch=f"{CODEBASE}/ssd300", input_height=SIZE, input_width=SIZE, channel_order="RGB" if found["rgb"] else "BGR",
        mean=[float(v) for v in found["mean"]], std=[float(v) for v in found["std"]],
        class_names=placeholder_names(num_classes), output_format="raw", box_coder_weights=[10.0, 10.0, 5.0, 5.0],
        anchors=anchors, score_threshold=float(found["score_thr"]), iou_threshold=float(found["iou_threshold"]),
        topk_candidates=int(found["nms_pre"]) * levels, max_detections=int(found["max_per_img"]),
        resize=ResizeSpec(library="opencv", interpolation="linear", pixels="uint8"), clip_boxes="before_nms",
        extra={"mmdetection": {"nms_pre_per_level": int(found["nms_pre"]), "basesize_ratio_range":
                               list(found["ratio_range"])}})
    return ImportedModel(RawHeadOutputs(model), meta)


IMPORTER = Importer(CODEBASE, recognise, build_model)
