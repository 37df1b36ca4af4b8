"""pytorch-ssd checkpoints (qfgaohao/pytorch-ssd; dusty-nv's fork, which jetson-inference's tutorial trains
with): ``train_ssd.py --net vgg16-ssd | mb1-ssd | mb1-ssd-lite | mb2-ssd-lite | mb3-large-ssd-lite |
mb3-small-ssd-lite | sq-ssd-lite``.

Recognised by the keys ``base_net.*``, ``extras.*``, ``classification_headers.*``, ``regression_headers.*``
(and ``source_layer_add_ons.*``); the network by its backbone's keys. Its inference, reproduced through the
metadata:

* priors from SSDSpecs (feature map, shrinkage, min/max box size in pixels, aspect ratios): per cell the
  min square, the sqrt(min * max) square, then per ratio r (w sqrt r, h / sqrt r) and its transpose; the whole
  centre-size prior clamped to [0, 1]. dusty-nv's ``--resolution N`` (mb1-ssd only) recomputes the specs from
  the network's feature maps (``--input-size N``);
* pre-processing: the RGB uint8 image resized by ``cv2.resize`` (bilinear), then ``(x - mean) / std`` with
  mean 123, 117, 104 and std 1 (vgg16-ssd) or mean 127 and std 128 (the others);
* post-processing (``Predictor.predict``): softmax, per class the scores above 0.01, the best 200 of them
  (``candidate_size``), ``hard_nms`` at IoU 0.45 with 1e-5 added to every union of normalised boxes, no cap
  over the classes, no clipping of boxes.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Sequence

import torch

from importers.base import (
    ImportedModel,
    Importer,
    ImportOptions,
    Recognised,
    StateDict,
    load_exact,
    placeholder_names,
)
from importers.pytorch_ssd_networks import Layout, build, layouts
from runtimes.errors import UserError
from runtimes.metadata import AnchorConfig, ModelMetadata, ResizeSpec

CODEBASE = "pytorch-ssd"
PREFIXES = {"base_net", "extras", "classification_headers", "regression_headers", "source_layer_add_ons"}
DEFAULT_SIZE = 300
VGG_MEAN, VGG_STD = [123.0, 117.0, 104.0], [1.0, 1.0, 1.0]  # vgg_ssd_config (its predictor passes no std)
MOBILE_MEAN, MOBILE_STD = [127.0] * 3, [128.0] * 3  # mobilenetv1_ssd_config, squeezenet_ssd_config
SCORE_THRESHOLD, IOU_THRESHOLD, CANDIDATES, IOU_EPSILON = 0.01, 0.45, 200, 1e-5  # Predictor's defaults


@dataclass
class Spec:
    """pytorch-ssd's SSDSpec: a square feature map of ``cells``, its ``shrinkage`` (pixels per cell), the
    min and max box sizes in pixels and the aspect ratios."""

    cells: int
    shrinkage: int
    min_size: float
    max_size: float
    ratios: Sequence[int]


def _specs(cells: Sequence[int], sizes: Sequence[int], shrinkages: Sequence[int],
           ratios: Sequence[Sequence[int]]) -> List[Spec]:
    """Specs whose max box size is the next one's min (``sizes`` has one more entry than ``cells``)."""
    return [Spec(c, s, lo, hi, r) for c, s, lo, hi, r in zip(cells, shrinkages, sizes[:-1], sizes[1:], ratios)]


# The configs' specs at 300 pixels (vision/ssd/config/*.py).
VGG_SPECS = _specs([38, 19, 10, 5, 3, 1], [30, 60, 111, 162, 213, 264, 315], [8, 16, 32, 64, 100, 300],
                   [[2], [2, 3], [2, 3], [2, 3], [2], [2]])
MOBILE_SIZES, MOBILE_SHRINKAGES = [60, 105, 150, 195, 240, 285, 330], [16, 32, 64, 100, 150, 300]
MOBILENET_SPECS = _specs([19, 10, 5, 3, 2, 1], MOBILE_SIZES, MOBILE_SHRINKAGES, [[2, 3]] * 6)
SQUEEZENET_SPECS = _specs([17, 10, 5, 3, 2, 1], MOBILE_SIZES, MOBILE_SHRINKAGES, [[2, 3]] * 6)
RESIZABLE = "mb1-ssd"  # the one network dusty-nv's train_ssd.py --resolution resizes


def box_sizes(spec: Spec, image_size: int) -> List[List[float]]:
    """A cell's priors as (w, h) fractions of the image, in generate_ssd_priors' order and arithmetic."""
    small = spec.min_size / image_size
    big = math.sqrt(spec.max_size * spec.min_size) / image_size
    pairs = [[small, small], [big, big]]
    for ratio in spec.ratios:
        root = math.sqrt(ratio)
        pairs += [[small * root, small / root], [small / root, small * root]]
    return pairs


def resized_specs(feature_maps: Sequence[int], size: int, min_ratio: int = 20, max_ratio: int = 90) -> List[Spec]:
    """dusty-nv's ``set_image_size(size)`` for sizes other than 300: shrinkage ceil(size / cells), box sizes
    spread from ``min_ratio / 2`` to ``max_ratio + step`` percent of the image, ratios 2 and 3."""
    step = int(math.floor((max_ratio - min_ratio) / (len(feature_maps) - 2)))
    ratios = range(min_ratio, max_ratio + 1, step)
    mins = [size * (min_ratio / 2) / 100.0] + [size * r / 100.0 for r in ratios]
    maxs = [size * min_ratio / 100.0] + [size * (r + step) / 100.0 for r in ratios]
    return [Spec(f, math.ceil(size * 1.0 / f), lo, hi, [2, 3]) for f, lo, hi in zip(feature_maps, mins, maxs)]


def _network_of(state: StateDict) -> Optional[str]:
    """The train_ssd.py --net name that the backbone's keys say, None for another backbone."""
    def has(*keys: str) -> bool:
        return all(k in state for k in keys)

    if has("source_layer_add_ons.0.running_mean", "base_net.31.weight"):
        return "vgg16-ssd"
    if has("base_net.13.3.weight"):
        return "mb1-ssd-lite" if has("extras.0.2.0.weight") else "mb1-ssd"
    if has("base_net.14.conv.0.weight", "base_net.18.0.weight"):
        return "mb2-ssd-lite"
    if has("base_net.3.conv1.weight"):
        return "mb3-large-ssd-lite" if has("base_net.17.conv1.weight") else "mb3-small-ssd-lite"
    if has("base_net.3.squeeze.weight"):
        return "sq-ssd-lite"
    return None


def recognise(state: StateDict) -> Optional[Recognised]:
    prefixes = {key.split(".")[0] for key in state}
    if not prefixes <= PREFIXES or not {"base_net", "classification_headers", "regression_headers"} <= prefixes:
        return None
    network = _network_of(state)
    if network is None:
        known = ", ".join(layouts())
        return Recognised(CODEBASE, None, f"its backbone (base_net.*: {sum(k.startswith('base_net.') for k in state)} "
                                          f"tensors) is none of the networks it builds ({known}); FPN and AlexNet "
                                          "variants are not supported")
    return Recognised(CODEBASE, network)


def _layout(network: str, state: StateDict) -> Layout:
    width = 1.0
    if network == "mb2-ssd-lite":  # train_ssd.py --mb2_width_mult: the first head takes round(576 * width)
        width = int(state["regression_headers.0.0.weight"].shape[0]) / 576
    return layouts(width)[network]


def _priors(network: str, model: torch.nn.Module, size: int) -> AnchorConfig:
    if size != DEFAULT_SIZE:
        with torch.no_grad():
            maps = model.feature_maps(torch.zeros(1, 3, size, size))  # type: ignore[operator]
        specs = resized_specs([int(m.shape[-1]) for m in maps], size)
    else:
        specs = VGG_SPECS if network == "vgg16-ssd" else SQUEEZENET_SPECS if network == "sq-ssd-lite" \
            else MOBILENET_SPECS
    return AnchorConfig(feature_maps=[[s.cells, s.cells] for s in specs], aspect_ratios=[], scales=[],
                        steps=[s.shrinkage for s in specs], clip=True, clip_mode="box",
                        box_sizes=[box_sizes(s, size) for s in specs])


def _input_size(network: str, options: ImportOptions) -> int:
    size = options.input_size or DEFAULT_SIZE
    if size != DEFAULT_SIZE and network != RESIZABLE:
        raise UserError(f"--input-size {size}: pytorch-ssd's {network} is fixed at {DEFAULT_SIZE}x{DEFAULT_SIZE} "
                        f"(only {RESIZABLE} takes dusty-nv's --resolution); leave --input-size out")
    if not 64 <= size <= 2048:
        raise UserError(f"--input-size {size}: give the --resolution the model was trained with (64 to 2048)")
    return size


def build_model(state: StateDict, recognised: Recognised, options: ImportOptions) -> ImportedModel:
    network = str(recognised.network)
    size = _input_size(network, options)
    num_classes = int(state["classification_headers.5.weight"].shape[0]) // \
        (int(state["regression_headers.5.weight"].shape[0]) // 4)
    what = f"a {CODEBASE} {network} checkpoint ({num_classes} classes with the background)"
    model = load_exact(build(_layout(network, state), num_classes), state, what)
    vgg = network == "vgg16-ssd"
    meta = ModelMetadata(
        arch=f"{CODEBASE}/{network}", input_height=size, input_width=size, channel_order="RGB",
        mean=VGG_MEAN if vgg else MOBILE_MEAN, std=VGG_STD if vgg else MOBILE_STD,
        class_names=placeholder_names(num_classes), output_format="raw", box_coder_weights=[10.0, 10.0, 5.0, 5.0],
        anchors=_priors(network, model, size), score_threshold=SCORE_THRESHOLD, iou_threshold=IOU_THRESHOLD,
        topk_candidates=CANDIDATES, max_detections=CANDIDATES * (num_classes - 1),  # no cap over the classes
        resize=ResizeSpec(library="opencv", interpolation="linear", pixels="uint8"), clip_boxes="none",
        iou_epsilon=IOU_EPSILON)
    return ImportedModel(model, meta)


IMPORTER = Importer(CODEBASE, recognise, build_model)


def onnx_conventions(num_boxes: int, height: int, width: int, num_classes: int) -> Optional[Dict[str, Any]]:
    """For an ONNX file exported by pytorch-ssd (decoded outputs), recognised by its box count at 300x300:
    the metadata fields of its network's pre- and post-processing; None for a box count no pytorch-ssd
    network has there."""
    if (height, width) != (DEFAULT_SIZE, DEFAULT_SIZE):
        return None
    networks = {_count(VGG_SPECS): ("vgg16-ssd", VGG_MEAN, VGG_STD),
                _count(MOBILENET_SPECS): ("mb1-ssd, mb1-ssd-lite, mb2-ssd-lite or mb3-*-ssd-lite", MOBILE_MEAN,
                                          MOBILE_STD),
                _count(SQUEEZENET_SPECS): ("sq-ssd-lite", MOBILE_MEAN, MOBILE_STD)}
    if num_boxes not in networks:
        return None
    network, mean, std = networks[num_boxes]
    return {"arch": f"{CODEBASE}/{network}", "mean": mean, "std": std, "resize": ResizeSpec(pixels="uint8"),
            "clip_boxes": "none", "iou_epsilon": IOU_EPSILON, "score_threshold": SCORE_THRESHOLD,
            "iou_threshold": IOU_THRESHOLD, "topk_candidates": CANDIDATES,
            "max_detections": CANDIDATES * (num_classes - 1)}


def _count(specs: Sequence[Spec]) -> int:
    return sum(s.cells * s.cells * (2 + 2 * len(s.ratios)) for s in specs)
