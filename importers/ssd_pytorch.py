"""amdegroot/ssd.pytorch checkpoints (``train.py --dataset VOC | COCO``): SSD300 on VGG16.

Recognised by the keys ``vgg.N``, ``L2Norm.weight``, ``extras.N``, ``loc.N``, ``conf.N``. Its network is
torchvision's ``ssd300_vgg16`` layer for layer (the same VGG16 with a ceil-mode pool3, pool5 3x3/1, dilated
fc6, 1x1 fc7, four 1x1/3x3 extra pairs, 4/6/6/6/4/4 boxes per cell, heads read in (cell, box, class) order);
its L2Norm divides by ``norm + 1e-10`` where torchvision's divides by ``max(norm, 1e-12)``, which only
differs for an all-zero feature vector. So the weights are renamed, nothing else. Its inference, reproduced
through the metadata:

* priors (layers/functions/prior_box.py, data/config.py's ``voc`` or ``coco``): per cell the min square, the
  sqrt(min * max) square, then per ratio r (w sqrt r, h / sqrt r) and its transpose; the whole centre-size
  prior clamped to [0, 1]. The two presets differ only in the box sizes;
* pre-processing (``BaseTransform`` as eval.py and the demo use it): ``cv2.resize`` (bilinear) of the BGR
  uint8 image, minus (104, 117, 123) per BGR channel, no std, then the channels reversed to RGB (the dataset's
  ``pull_item``; test.py alone forgets that reversal);
* post-processing (``Detect``): softmax, per class the scores above 0.01, the best 200 of them, greedy NMS
  keeping IoU <= 0.45 (plain union, no epsilon), no cap over the classes (its cross-class top-k zeroes a
  copy, so it never applies), boxes never clipped.
"""

from __future__ import annotations

import math
from typing import Dict, List, Optional, Sequence

from export.architectures import RawHeadOutputs
from export.architectures import build_model as build_torchvision
from importers.base import ImportedModel, Importer, ImportOptions, Recognised, StateDict, load_exact, placeholder_names
from runtimes.errors import UserError
from runtimes.metadata import AnchorConfig, ModelMetadata, ResizeSpec

CODEBASE = "ssd.pytorch"
NETWORK = "ssd300"
PREFIXES = {"vgg", "L2Norm", "extras", "loc", "conf"}
SIZE = 300  # build_ssd refuses any other size
FEATURE_MAPS, STEPS = [38, 19, 10, 5, 3, 1], [8, 16, 32, 64, 100, 300]
RATIOS = [[2], [2, 3], [2, 3], [2, 3], [2], [2]]
# data/config.py's min_sizes and max_sizes per preset; coco's num_classes there is 201 (a slip the code
# trains with), 81 once corrected.
PRESETS: Dict[str, List[List[int]]] = {
    "voc": [[30, 60, 111, 162, 213, 264], [60, 111, 162, 213, 264, 315]],
    "coco": [[21, 45, 99, 153, 207, 261], [45, 99, 153, 207, 261, 315]],
}
PRESET_OF_CLASSES = {21: "voc", 81: "coco", 201: "coco"}
MEAN_RGB = [123.0, 117.0, 104.0]  # MEANS (104, 117, 123) subtracted in BGR order, then reversed to RGB
CONF_THRESH, NMS_THRESH, TOP_K = 0.01, 0.45, 200  # build_ssd('test'): Detect(num_classes, 0, 200, 0.01, 0.45)

# ssd.pytorch's vgg index -> torchvision's ssd300_vgg16 module (conv1_1 .. conv4_3 keep their index).
_VGG_TAIL = {24: "backbone.extra.0.1", 26: "backbone.extra.0.3", 28: "backbone.extra.0.5",
             31: "backbone.extra.0.7.1", 33: "backbone.extra.0.7.3"}


def torchvision_key(key: str) -> Optional[str]:
    """The torchvision ssd300_vgg16 state dict key of an ssd.pytorch key, None for a key it has no place for."""
    parts = key.split(".")
    if key == "L2Norm.weight":
        return "backbone.scale_weight"
    if len(parts) != 3 or not parts[1].isdigit():
        return None
    group, index, leaf = parts[0], int(parts[1]), parts[2]
    if group == "vgg":
        module = f"backbone.features.{index}" if index <= 21 else _VGG_TAIL.get(index)
    elif group == "extras":  # pairs (1x1, 3x3): extra.k holds conv, ReLU, conv, ReLU
        module = f"backbone.extra.{index // 2 + 1}.{2 * (index % 2)}" if index < 8 else None
    elif group in ("loc", "conf"):
        module = f"head.{'regression' if group == 'loc' else 'classification'}_head.module_list.{index}"
    else:
        module = None
    return None if module is None else f"{module}.{leaf}"


def recognise(state: StateDict) -> Optional[Recognised]:
    prefixes = {key.split(".")[0] for key in state}
    if not prefixes <= PREFIXES or not {"vgg", "L2Norm", "loc", "conf"} <= prefixes:
        return None
    if "loc.6.weight" in state or "vgg.33.weight" not in state or "loc.5.weight" not in state:
        levels = sum(k.startswith("loc.") and k.endswith(".weight") for k in state)
        return Recognised(CODEBASE, None, f"its {levels} head levels are not SSD300's 6 (SSD512 and other "
                                          "forks' networks are not built); export an SSD300 checkpoint")
    return Recognised(CODEBASE, NETWORK)


def _preset(num_classes: int, options: ImportOptions) -> str:
    if options.preset is not None:
        if options.preset not in PRESETS:
            raise UserError(f"--preset {options.preset}: ssd.pytorch's presets are {' and '.join(PRESETS)} "
                            "(data/config.py)")
        return options.preset
    if num_classes not in PRESET_OF_CLASSES:
        raise UserError(f"its head has {num_classes} classes, which does not tell data/config.py's prior sizes "
                        "it trained with: pass --preset voc or --preset coco")
    return PRESET_OF_CLASSES[num_classes]


def box_sizes(min_size: float, max_size: float, ratios: Sequence[int]) -> List[List[float]]:
    """A cell's priors as (w, h) fractions of the input, in PriorBox.forward's order and arithmetic."""
    s_k = min_size / SIZE
    s_prime = math.sqrt(s_k * (max_size / SIZE))
    pairs = [[s_k, s_k], [s_prime, s_prime]]
    for ar in ratios:
        pairs += [[s_k * math.sqrt(ar), s_k / math.sqrt(ar)], [s_k / math.sqrt(ar), s_k * math.sqrt(ar)]]
    return pairs


def priors(preset: str) -> AnchorConfig:
    """The preset's priors: cell centres (j + 0.5) * step / 300, sizes per level, whole box clamped."""
    mins, maxs = PRESETS[preset]
    return AnchorConfig(feature_maps=[[f, f] for f in FEATURE_MAPS], aspect_ratios=[], scales=[], steps=STEPS,
                        clip=True, clip_mode="box",
                        box_sizes=[box_sizes(lo, hi, r) for lo, hi, r in zip(mins, maxs, RATIOS)])


def build_model(state: StateDict, recognised: Recognised, options: ImportOptions) -> ImportedModel:
    if options.input_size not in (None, SIZE) or options.config is not None:
        flag = "--config" if options.config is not None else f"--input-size {options.input_size}"
        raise UserError(f"{flag}: ssd.pytorch builds SSD300 only and its settings are named by --preset; "
                        f"leave {flag.split()[0]} out")
    num_classes = int(state["conf.0.weight"].shape[0]) // (int(state["loc.0.weight"].shape[0]) // 4)
    preset = _preset(num_classes, options)
    renamed = {torchvision_key(k) or k: v for k, v in state.items()}
    what = f"an {CODEBASE} SSD300 checkpoint ({num_classes} classes with the background)"
    model = load_exact(build_torchvision("ssd300_vgg16", num_classes), renamed, what)
    meta = ModelMetadata(
        arch=f"{CODEBASE}/{NETWORK}-{preset}", input_height=SIZE, input_width=SIZE, channel_order="RGB",
        mean=MEAN_RGB, std=[1.0, 1.0, 1.0], class_names=placeholder_names(num_classes), output_format="raw",
        box_coder_weights=[10.0, 10.0, 5.0, 5.0], anchors=priors(preset), score_threshold=CONF_THRESH,
        iou_threshold=NMS_THRESH, topk_candidates=TOP_K, max_detections=TOP_K * (num_classes - 1),
        resize=ResizeSpec(library="opencv", interpolation="linear", pixels="uint8"), clip_boxes="none",
        iou_epsilon=0.0)
    return ImportedModel(RawHeadOutputs(model), meta)


IMPORTER = Importer(CODEBASE, recognise, build_model)
