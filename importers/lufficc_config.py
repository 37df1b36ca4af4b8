"""lufficc/SSD's training configuration: its defaults (ssd/config/defaults.py, the part inference reads),
its shipped configs' overrides (configs/*.yaml), and a user's YAML config read as data and merged over
the defaults as yacs merges it.

yacs reads a YAML file with ``yaml.safe_load`` and turns every string value that is a Python literal into
that literal (``OUT_CHANNELS: (96, 1280, ...)`` is a tuple, ``LR: 1e-3`` a float): the same is done here
with :func:`ast.literal_eval`, which evaluates literals only. Keys this importer does not read are kept
but not checked (yacs would refuse a key its defaults lack; forks add their own).
"""

from __future__ import annotations

import ast
import copy
from pathlib import Path
from typing import Any, Dict, List

from runtimes.data_file import parse_yaml
from runtimes.errors import UserError

MAX_CONFIG_BYTES = 1 << 20  # lufficc's configs are under 1 kB
MAX_DEPTH = 8

# ssd/config/defaults.py: what inference reads (the VGG SSD300 VOC configuration).
DEFAULTS: Dict[str, Any] = {
    "MODEL": {"NUM_CLASSES": 21, "CENTER_VARIANCE": 0.1, "SIZE_VARIANCE": 0.2,
              "BACKBONE": {"NAME": "vgg"},  # (OUT_CHANNELS: the network's, importers/lufficc_networks.py)
              "PRIORS": {"FEATURE_MAPS": [38, 19, 10, 5, 3, 1], "STRIDES": [8, 16, 32, 64, 100, 300],
                         "MIN_SIZES": [30, 60, 111, 162, 213, 264], "MAX_SIZES": [60, 111, 162, 213, 264, 315],
                         "ASPECT_RATIOS": [[2], [2, 3], [2, 3], [2, 3], [2], [2]],
                         "BOXES_PER_LOCATION": [4, 6, 6, 6, 4, 4], "CLIP": True},
              "BOX_HEAD": {"PREDICTOR": "SSDBoxPredictor"}},
    "INPUT": {"IMAGE_SIZE": 300, "PIXEL_MEAN": [123, 117, 104]},
    "TEST": {"NMS_THRESHOLD": 0.45, "CONFIDENCE_THRESHOLD": 0.01, "MAX_PER_IMAGE": 100},
}

_MOBILENET_320 = {"MODEL": {"BOX_HEAD": {"PREDICTOR": "SSDLiteBoxPredictor"}, "PRIORS": {
    "FEATURE_MAPS": [20, 10, 5, 3, 2, 1], "STRIDES": [16, 32, 64, 107, 160, 320],
    "MIN_SIZES": [60, 105, 150, 195, 240, 285], "MAX_SIZES": [105, 150, 195, 240, 285, 330],
    "ASPECT_RATIOS": [[2, 3]] * 6, "BOXES_PER_LOCATION": [6] * 6}}, "INPUT": {"IMAGE_SIZE": 320}}


def _vgg512(mins: List[float], maxs: List[float]) -> Dict[str, Any]:
    return {"MODEL": {"PRIORS": {
        "FEATURE_MAPS": [64, 32, 16, 8, 4, 2, 1], "STRIDES": [8, 16, 32, 64, 128, 256, 512], "MIN_SIZES": mins,
        "MAX_SIZES": maxs, "ASPECT_RATIOS": [[2], [2, 3], [2, 3], [2, 3], [2, 3], [2], [2]],
        "BOXES_PER_LOCATION": [4, 6, 6, 6, 6, 4, 4]}}, "INPUT": {"IMAGE_SIZE": 512}}


# The configs lufficc ships, by (backbone, classes with the background): what a checkpoint without --config
# was most likely trained with. Their MODEL.NUM_CLASSES and BACKBONE.NAME are implied by the key.
SHIPPED: Dict[Any, Any] = {
    ("vgg300", 21): ("configs/vgg_ssd300_voc0712.yaml", {}),
    ("vgg300", 81): ("configs/vgg_ssd300_coco_trainval35k.yaml", {"MODEL": {"PRIORS": {
        "MIN_SIZES": [21, 45, 99, 153, 207, 261], "MAX_SIZES": [45, 99, 153, 207, 261, 315]}}}),
    ("vgg512", 21): ("configs/vgg_ssd512_voc0712.yaml", _vgg512(
        [35.84, 76.8, 153.6, 230.4, 307.2, 384.0, 460.8], [76.8, 153.6, 230.4, 307.2, 384.0, 460.8, 537.65])),
    ("vgg512", 81): ("configs/vgg_ssd512_coco_trainval35k.yaml", _vgg512(
        [20.48, 51.2, 133.12, 215.04, 296.96, 378.88, 460.8], [51.2, 133.12, 215.04, 296.96, 378.88, 460.8, 542.72])),
    ("mobilenet_v2", 21): ("configs/mobilenet_v2_ssd320_voc0712.yaml", _MOBILENET_320),
    ("mobilenet_v3", 21): ("configs/mobilenet_v3_ssd320_voc0712.yaml", _MOBILENET_320),
}


def merge(base: Dict[str, Any], override: Dict[str, Any], where: str = "") -> Dict[str, Any]:
    """``override`` over ``base`` as yacs's ``merge_from_file``: sections key by key, string values that are
    Python literals evaluated as literals, tuples and lists interchangeable."""
    out = copy.deepcopy(base)
    for key, value in override.items():
        path = f"{where}{key}"
        if isinstance(out.get(key), dict):
            if not isinstance(value, dict):
                raise UserError(f"{path} is a section of lufficc/SSD's config, not {value!r}; fix the config")
            out[key] = merge(out[key], value, f"{path}.")
            continue
        if isinstance(value, str):
            try:
                value = ast.literal_eval(value)
            except (ValueError, SyntaxError, MemoryError, RecursionError):
                pass  # a plain string, as yacs keeps it
        out[key] = list(value) if isinstance(value, tuple) else value
    return out


def read_config(path: Path) -> Dict[str, Any]:
    """The YAML config at ``path`` merged over :data:`DEFAULTS`; UserError for a file that cannot be read."""
    label = f"{path} (--config)"
    try:
        size = Path(path).stat().st_size
        if size > MAX_CONFIG_BYTES:
            raise UserError(f"{label}: {size} bytes is no lufficc/SSD config (they are under 1 kB); check the path")
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise UserError(f"{label}: cannot read it ({str(exc).splitlines()[0][:120]}); check the path") from None
    data = parse_yaml(text, label, MAX_DEPTH)
    if not isinstance(data, dict):
        raise UserError(f"{label}: a lufficc/SSD config is a YAML mapping (MODEL:, INPUT:, ...), not "
                        f"{type(data).__name__}; give the training config the checkpoint was made with")
    return merge(DEFAULTS, data)


def find(config: Dict[str, Any], dotted: str) -> Any:
    """``config["MODEL"]["PRIORS"]...`` for ``"MODEL.PRIORS..."``."""
    node: Any = config
    for key in dotted.split("."):
        node = node.get(key) if isinstance(node, dict) else None
    return node
