"""lufficc/SSD checkpoints (``train.py``'s ``{"model": state, "optimizer", "scheduler", "iteration"}``):
VGG16 SSD300 and SSD512, MobileNetV2 and MobileNetV3 SSDLite320.

Recognised by the keys ``backbone.*`` and ``box_head.predictor.{cls,reg}_headers.*``; the backbone by its
own: ``backbone.vgg.*`` (SSD512 by its two further extras, ``backbone.extras.8`` and ``.9``), or
``backbone.features.*`` with 19 blocks (MobileNetV2) or 17 with squeeze-excite ``fc`` layers (MobileNetV3).
The network is built in its own key layout (importers/lufficc_networks.py). Its inference, reproduced
through the metadata:

* priors (ssd/modeling/anchors/prior_box.py): per level ``k`` and cell, centre ((j, i) + 0.5) * STRIDES[k] /
  IMAGE_SIZE, the MIN_SIZES[k] square, the sqrt(MIN_SIZES[k] * MAX_SIZES[k]) square, then per ratio r
  (w sqrt r, h / sqrt r) and its transpose; with PRIORS.CLIP the whole centre-size prior clamped to [0, 1];
* pre-processing (``build_transforms(cfg, is_train=False)``, images read by PIL as RGB): ``cv2.resize`` to
  IMAGE_SIZE x IMAGE_SIZE, bilinear, **on the uint8 RGB image**, minus PIXEL_MEAN (RGB), no std;
* post-processing (``PostProcessor``): softmax, background dropped, every (box, class) score above
  CONFIDENCE_THRESHOLD (no per-class cap: MAX_PER_CLASS is never read), boxes decoded with CENTER_VARIANCE
  and SIZE_VARIANCE, NMS at NMS_THRESHOLD per class (torchvision's, through class offsets), the best
  MAX_PER_IMAGE over all classes, boxes never clipped, then scaled to the image.

The values come from ``--config FILE`` (the training YAML, importers/lufficc_config.py), else from the config
lufficc ships for the recognised backbone and class count (VOC's 21 or COCO's 81); any other count needs
``--config``.
"""

from __future__ import annotations

import math
from typing import Any, Dict, List, Optional, Sequence, Tuple

from importers.base import ImportedModel, Importer, ImportOptions, Recognised, StateDict, load_exact, placeholder_names
from importers.lufficc_config import DEFAULTS as CONFIG_DEFAULTS
from importers.lufficc_config import SHIPPED, find, merge, read_config
from importers.lufficc_networks import LufficcSSD
from runtimes.anchors import count
from runtimes.errors import UserError
from runtimes.metadata import AnchorConfig, ModelMetadata, ResizeSpec

CODEBASE = "lufficc/SSD"
HEAD = "box_head.predictor."
# The recognised backbone -> its MODEL.BACKBONE.NAME and the network's name (lufficc's config names).
BACKBONES = {"vgg300": ("vgg", "vgg_ssd300"), "vgg512": ("vgg", "vgg_ssd512"),
             "mobilenet_v2": ("mobilenet_v2", "mobilenet_v2_ssd{size}"),
             "mobilenet_v3": ("mobilenet_v3", "mobilenet_v3_ssd{size}")}


def backbone_of(state: StateDict) -> Optional[str]:
    """The backbone of a lufficc state dict, None for one not built here (EfficientNet, a fork's)."""
    if "backbone.vgg.0.weight" in state and "backbone.l2_norm.weight" in state:
        return "vgg512" if "backbone.extras.9.weight" in state else "vgg300"
    blocks = {int(k.split(".")[2]) for k in state if k.startswith("backbone.features.") and k.split(".")[2].isdigit()}
    squeeze = any(".fc.0.weight" in k for k in state if k.startswith("backbone.features."))
    if len(blocks) == 19 and not squeeze:
        return "mobilenet_v2"
    if len(blocks) == 17 and squeeze:
        return "mobilenet_v3"
    return None


def recognise(state: StateDict) -> Optional[Recognised]:
    prefixes = {key.split(".")[0] for key in state}
    if prefixes != {"backbone", "box_head"} or not any(k.startswith(HEAD + "cls_headers.") for k in state):
        return None
    backbone = backbone_of(state)
    if backbone is None:
        found = sorted({".".join(k.split(".")[:2]) for k in state if k.startswith("backbone.")})
        return Recognised(CODEBASE, None, f"its backbone ({', '.join(found[:4])}) is none of those imported: VGG16 "
                                          "(SSD300, SSD512), MobileNetV2, MobileNetV3 (EfficientNet is not built)")
    return Recognised(CODEBASE, backbone)


def head_boxes(state: StateDict) -> Tuple[List[int], int]:
    """Boxes per cell of each head level (from the regression convs' outputs) and the classes with the
    background (from the first classification conv's)."""
    def out_channels(kind: str, level: int) -> int:
        for leaf in (f"{level}.weight", f"{level}.conv.3.weight"):  # a conv, or SSDLite's separable conv
            if f"{HEAD}{kind}.{leaf}" in state:
                return int(state[f"{HEAD}{kind}.{leaf}"].shape[0])
        raise UserError(f"recognised a {CODEBASE} checkpoint, but {HEAD}{kind}.{level} has no weight; "
                        "is the checkpoint complete?")

    levels = max(1, len({k.split(".")[3] for k in state if k.startswith(HEAD + "reg_headers.")}))
    boxes = [out_channels("reg_headers", i) // 4 for i in range(levels)]
    return boxes, out_channels("cls_headers", 0) // max(boxes[0], 1)


def settings(backbone: str, num_classes: int, options: ImportOptions) -> Tuple[Dict[str, Any], str]:
    """The training config (merged over lufficc's defaults) and where it came from."""
    if options.config is not None:
        return read_config(options.config), str(options.config)
    shipped = SHIPPED.get((backbone, num_classes))
    if shipped is None:
        told = {21: "VOC's", 81: "COCO's"}
        known = " or ".join(f"{n} ({told[n]})" for b, n in SHIPPED if b == backbone)
        raise UserError(f"its head has {num_classes} classes with the background, and lufficc ships a {backbone} "
                        f"config for {known} only: pass the training config with --config FILE (its YAML, read "
                        "as data) for the prior sizes it trained with")
    name, override = shipped
    config = merge(CONFIG_DEFAULTS, override)
    config["MODEL"]["NUM_CLASSES"] = num_classes
    config["MODEL"]["BACKBONE"]["NAME"] = BACKBONES[backbone][0]
    return config, f"lufficc's {name}"


def _numbers(config: Dict[str, Any], key: str, origin: str, length: Optional[int] = None) -> List[float]:
    value = find(config, key)
    if not isinstance(value, list) or not value or (length is not None and len(value) != length) or not all(
            isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) and v > 0 for v in value):
        want = f"{length} positive numbers" if length is not None else "a list of positive numbers"
        raise UserError(f"{origin}: {key} is {value!r}, expected {want}; fix the config given to --config")
    return [float(v) for v in value]


def _number(config: Dict[str, Any], key: str, origin: str, low: float, high: float) -> float:
    value = find(config, key)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not low <= value <= high:
        raise UserError(f"{origin}: {key} is {value!r}, expected a number in {low}..{high}; fix the config "
                        "given to --config")
    return float(value)


def check_config(config: Dict[str, Any], origin: str, backbone: str, boxes: Sequence[int], num_classes: int) -> None:
    """UserError, naming the key, where the config disagrees with the checkpoint's network."""
    name = find(config, "MODEL.BACKBONE.NAME")
    if name != BACKBONES[backbone][0]:
        raise UserError(f"{origin}: MODEL.BACKBONE.NAME is {name!r}, but the checkpoint's backbone is "
                        f"{BACKBONES[backbone][0]!r}; give the config the checkpoint was trained with")
    if find(config, "MODEL.NUM_CLASSES") != num_classes:
        raise UserError(f"{origin}: MODEL.NUM_CLASSES is {find(config, 'MODEL.NUM_CLASSES')!r}, but the "
                        f"checkpoint's head has {num_classes} classes; give the config it was trained with")
    size = find(config, "INPUT.IMAGE_SIZE")
    vgg_size = {"vgg300": 300, "vgg512": 512}.get(backbone)
    if isinstance(size, bool) or not isinstance(size, int) or not 32 <= size <= 2048 or size != (vgg_size or size):
        want = f"{vgg_size} (its VGG extras are SSD{vgg_size}'s)" if vgg_size else "a whole number of pixels"
        raise UserError(f"{origin}: INPUT.IMAGE_SIZE is {size!r}, expected {want}; fix the config")
    ratios = find(config, "MODEL.PRIORS.ASPECT_RATIOS")
    expected = [2 + 2 * len(r) if isinstance(r, list) and all(
        isinstance(x, (int, float)) and not isinstance(x, bool) and x > 0 for x in r) else None
        for r in ratios] if isinstance(ratios, list) else None
    per_cell = find(config, "MODEL.PRIORS.BOXES_PER_LOCATION")
    if expected != list(boxes) or per_cell != list(boxes):
        raise UserError(f"{origin}: MODEL.PRIORS.ASPECT_RATIOS {ratios!r} and BOXES_PER_LOCATION {per_cell!r} do not "
                        f"give the checkpoint's {list(boxes)} boxes per cell; give the config it was trained with")
    for key in ("FEATURE_MAPS", "STRIDES", "MIN_SIZES", "MAX_SIZES"):
        _numbers(config, f"MODEL.PRIORS.{key}", origin, len(boxes))
    mean = find(config, "INPUT.PIXEL_MEAN")
    if not isinstance(mean, list) or len(mean) != 3 or not all(
            isinstance(v, (int, float)) and not isinstance(v, bool) and 0 <= v <= 255 for v in mean):
        raise UserError(f"{origin}: INPUT.PIXEL_MEAN is {mean!r}, expected 3 numbers in 0..255 (RGB); fix the config")
    for key, low, high in (("MODEL.CENTER_VARIANCE", 1e-6, 100.0), ("MODEL.SIZE_VARIANCE", 1e-6, 100.0),
                           ("TEST.CONFIDENCE_THRESHOLD", 0.0, 1.0), ("TEST.NMS_THRESHOLD", 0.0, 1.0),
                           ("TEST.MAX_PER_IMAGE", 1, 100000)):
        _number(config, key, origin, low, high)


def box_sizes(min_size: float, max_size: float, ratios: Sequence[float], image_size: int) -> List[List[float]]:
    """A cell's priors as (w, h) fractions of the input, in PriorBox's order and arithmetic."""
    small = min_size / image_size
    big = math.sqrt(min_size * max_size) / image_size
    pairs = [[small, small], [big, big]]
    for ratio in ratios:
        root = math.sqrt(ratio)
        pairs += [[small * root, small / root], [small / root, small * root]]
    return pairs


def priors(config: Dict[str, Any]) -> AnchorConfig:
    """PriorBox's priors: centres (i + 0.5) * stride / size, sizes per level, the whole box clamped if CLIP."""
    pri, size = config["MODEL"]["PRIORS"], int(config["INPUT"]["IMAGE_SIZE"])
    steps = [int(s) if float(s).is_integer() else s for s in pri["STRIDES"]]
    return AnchorConfig(feature_maps=[[int(f), int(f)] for f in pri["FEATURE_MAPS"]], aspect_ratios=[], scales=[],
                        steps=steps, clip=bool(pri["CLIP"]), clip_mode="box",
                        box_sizes=[box_sizes(lo, hi, r, size) for lo, hi, r in
                                   zip(pri["MIN_SIZES"], pri["MAX_SIZES"], pri["ASPECT_RATIOS"])])


def _check_feature_maps(model: LufficcSSD, config: Dict[str, Any], origin: str) -> None:
    size, said = config["INPUT"]["IMAGE_SIZE"], config["MODEL"]["PRIORS"]["FEATURE_MAPS"]
    sides = model.feature_sizes(size)
    if [int(f) for f in said] != sides:
        raise UserError(f"{origin}: MODEL.PRIORS.FEATURE_MAPS is {said}, but the network's feature maps at "
                        f"INPUT.IMAGE_SIZE {size} are {sides}; give the config the checkpoint was trained with")


def build_model(state: StateDict, recognised: Recognised, options: ImportOptions) -> ImportedModel:
    if options.input_size is not None or options.preset is not None:
        flag = "--input-size" if options.input_size is not None else "--preset"
        raise UserError(f"{flag}: lufficc/SSD's settings come from its YAML training config; leave {flag} out and "
                        "pass --config FILE where the checkpoint does not tell them")
    backbone = str(recognised.network)
    boxes, num_classes = head_boxes(state)
    config, origin = settings(backbone, num_classes, options)
    check_config(config, origin, backbone, boxes, num_classes)
    size = int(config["INPUT"]["IMAGE_SIZE"])
    network = BACKBONES[backbone][1].format(size=size)
    what = f"a {CODEBASE} {network} checkpoint ({num_classes} classes with the background)"
    lite = f"{HEAD}cls_headers.0.conv.3.weight" in state  # SSDLiteBoxPredictor, whatever the backbone
    network_module = LufficcSSD(backbone, boxes, num_classes, lite)
    _check_feature_maps(network_module, config, origin)
    model = load_exact(network_module, state, what)
    anchors = priors(config)
    centre, size_variance = float(find(config, "MODEL.CENTER_VARIANCE")), float(find(config, "MODEL.SIZE_VARIANCE"))
    test = config["TEST"]
    meta = ModelMetadata(
        arch=f"lufficc/{network}", input_height=size, input_width=size, channel_order="RGB",
        mean=[float(v) for v in config["INPUT"]["PIXEL_MEAN"]], std=[1.0, 1.0, 1.0],
        class_names=placeholder_names(num_classes), output_format="raw",
        box_coder_weights=[1 / centre, 1 / centre, 1 / size_variance, 1 / size_variance], anchors=anchors,
        score_threshold=float(test["CONFIDENCE_THRESHOLD"]), iou_threshold=float(test["NMS_THRESHOLD"]),
        topk_candidates=count(anchors),  # no per-class cap: every score above the threshold is a candidate
        max_detections=int(test["MAX_PER_IMAGE"]),
        resize=ResizeSpec(library="opencv", interpolation="linear", pixels="uint8"), clip_boxes="none",
        iou_epsilon=0.0, extra={"lufficc": {"config": origin}})
    return ImportedModel(model, meta)


IMPORTER = Importer(CODEBASE, recognise, build_model)
