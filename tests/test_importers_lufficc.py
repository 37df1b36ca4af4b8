"""lufficc/SSD checkpoints: recognised from their keys, exported, and run by the toolkit's runners, checked
against lufficc's own inference (tests/lufficc_reference.py) in three parts (see
test_runners_give_lufficcs_own_detections): the pre-processed input, the network's raw outputs, and the
detections of its PostProcessor decoded from those very outputs (labels exact, boxes within 0.5 px, scores
within 1e-4)."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import List

import numpy as np
import pytest
import torch

from calibration.images import read_image
from export.export_onnx import export_checkpoint, main
from importers.base import ImportOptions
from importers.lufficc_config import DEFAULTS as CONFIG_DEFAULTS
from importers.lufficc_config import SHIPPED, merge, read_config
from importers.lufficc_networks import LufficcSSD
from runtimes.cli import run_cli
from runtimes.loader import load_detector
from tests.lufficc_reference import decisive_lufficc, decode, transform
from tests.matching import as_nchw_input, assert_close_outputs, assert_same_detections, detect_with_raw_outputs
from tests.reference_models import voc_mini_images
from tests.test_importers_pytorch_ssd import OUTPUT_TOL

# sha256 of "key [shape]" lines, sorted, of SSDDetector(cfg).state_dict() for lufficc's configs with 21
# classes (configs/vgg_ssd300_voc0712.yaml, vgg_ssd512_voc0712.yaml, mobilenet_v2_ssd320_voc0712.yaml,
# mobilenet_v3_ssd320_voc0712.yaml), computed by running lufficc/SSD (commit 68dc0a2) outside this
# repository; the same run gave identical predictor outputs for identical weights (difference 0.0), its
# PriorBox and PostProcessor equal to tests/lufficc_reference.py's on every config it ships (difference 0.0).
CODEBASE_LAYOUTS = {"vgg300": "fa7073fa2ed54c0a", "vgg512": "aa6eed09a6db28d9",
                    "mobilenet_v2": "e65176a253020091", "mobilenet_v3": "bce3553b521f7883"}
BOXES = {"vgg300": [4, 6, 6, 6, 4, 4], "vgg512": [4, 6, 6, 6, 6, 4, 4], "mobilenet_v2": [6] * 6,
         "mobilenet_v3": [6] * 6}

# A training config as lufficc's users write them (its vgg_ssd512_voc0712.yaml; yacs-style tuple strings).
VGG512_YAML = """MODEL:
  NUM_CLASSES: 21
  BACKBONE:
    OUT_CHANNELS: (512, 1024, 512, 256, 256, 256, 256)
  PRIORS:
    FEATURE_MAPS: [64, 32, 16, 8, 4, 2, 1]
    STRIDES: [8, 16, 32, 64, 128, 256, 512]
    MIN_SIZES: [35.84, 76.8, 153.6, 230.4, 307.2, 384.0, 460.8]
    MAX_SIZES: [76.8, 153.6, 230.4, 307.2, 384.0, 460.8, 537.65]
    ASPECT_RATIOS: [[2], [2, 3], [2, 3], [2, 3], [2, 3], [2], [2]]
    BOXES_PER_LOCATION: [4, 6, 6, 6, 6, 4, 4]
INPUT:
  IMAGE_SIZE: 512
DATASETS:
  TRAIN: ("voc_2007_trainval", "voc_2012_trainval")
SOLVER:
  LR: 1e-3
"""
# A MobileNetV3 trained on a 5-class data set with its own thresholds and unclipped priors: only --config tells.
MOBILENET_V3_YAML = """MODEL:
  NUM_CLASSES: 6
  BOX_HEAD:
    PREDICTOR: 'SSDLiteBoxPredictor'
  BACKBONE:
    NAME: 'mobilenet_v3'
    OUT_CHANNELS: (112, 960, 512, 256, 256, 64)
  PRIORS:
    FEATURE_MAPS: [20, 10, 5, 3, 2, 1]
    STRIDES: [16, 32, 64, 107, 160, 320]
    MIN_SIZES: [60, 105, 150, 195, 240, 285]
    MAX_SIZES: [105, 150, 195, 240, 285, 330]
    ASPECT_RATIOS: [[2, 3], [2, 3], [2, 3], [2, 3], [2, 3], [2, 3]]
    BOXES_PER_LOCATION: [6, 6, 6, 6, 6, 6]
    CLIP: False
INPUT:
  IMAGE_SIZE: 320
  PIXEL_MEAN: [120, 115, 100]
TEST:
  CONFIDENCE_THRESHOLD: 0.05
  NMS_THRESHOLD: 0.5
  MAX_PER_IMAGE: 60
"""
# network -> (classes with the background, config text or None for the config lufficc ships)
CASES = {"vgg300": (21, None), "vgg512": (21, VGG512_YAML), "mobilenet_v2": (21, None),
         "mobilenet_v3": (6, MOBILENET_V3_YAML)}
IMAGES = {"vgg300": 2, "vgg512": 1, "mobilenet_v2": 2, "mobilenet_v3": 2}  # SSD512 costs 3 SSD300s a forward


@pytest.mark.parametrize("backbone", sorted(CODEBASE_LAYOUTS))
def test_networks_have_the_codebases_keys_and_shapes(backbone):
    state = LufficcSSD(backbone, BOXES[backbone], 21).state_dict()
    text = "\n".join(f"{k} {list(v.shape)}" for k, v in sorted(state.items()))
    assert hashlib.sha256(text.encode()).hexdigest()[:16] == CODEBASE_LAYOUTS[backbone]


@pytest.fixture(scope="module")
def images():
    return [read_image(path)[0] for path in voc_mini_images()[:2]]


@pytest.fixture(scope="module")
def exported(tmp_path_factory, images):
    """(reference network, merged config, checkpoint, ONNX file) per network, saved as train.py's
    CheckPointer saves (``{"model": state, "iteration": ...}``) and exported once."""
    folder = tmp_path_factory.mktemp("lufficc")
    cache = {}

    def get(backbone: str):
        if backbone not in cache:
            classes, text = CASES[backbone]
            config_path = None
            if text is None:
                config = merge(CONFIG_DEFAULTS, SHIPPED[(backbone, classes)][1])
            else:
                config_path = folder / f"{backbone}.yaml"
                config_path.write_text(text)
                config = read_config(config_path)
            rgb = [image[:, :, ::-1] for image in images]  # both: the 1x1 level's logits need a spread
            net = decisive_lufficc(backbone, BOXES[backbone], classes, config, rgb)
            checkpoint = folder / f"{backbone}.pth"
            torch.save({"model": net.state_dict(), "iteration": 1000}, checkpoint)
            onnx_path = folder / f"{backbone}.onnx"
            names = folder / f"{backbone}.txt"
            names.write_text("".join(f"thing{i}\n" for i in range(1, classes)))
            export_checkpoint(checkpoint, None, onnx_path, classes_file=names,
                              options=ImportOptions(config=config_path))
            cache[backbone] = net, config, checkpoint, onnx_path
        return cache[backbone]

    return get


@pytest.mark.parametrize("backbone", list(CASES))
def test_runners_give_lufficcs_own_detections(exported, images, backbone):
    """ONNX Runtime and OpenVINO, through load_detector, against lufficc/SSD, on one call of the real
    Detector per image whose network input and raw outputs are recorded:

    1. pre-processing: its input is build_transforms(is_train=False)'s tensor of the RGB image (within
       1e-4: the same cv2 resize of the 8-bit image, the mean subtracted in another order of operations);
    2. the network: its raw outputs are PyTorch's on that input within OUTPUT_TOL of their range;
    3. post-processing: its detections are PostProcessor's (PriorBox, decoding, softmax, threshold, class
       offset NMS, MAX_PER_IMAGE, rescaling) applied to the SAME raw outputs: labels exact, boxes within
       0.5 px, scores within 1e-4.
    """
    net, config, _, onnx_path = exported(backbone)
    detectors = [load_detector(onnx_path), load_detector(onnx_path, runtime="openvino")]
    assert detectors[0].meta.arch == "lufficc/" + {"vgg300": "vgg_ssd300", "vgg512": "vgg_ssd512"}.get(
        backbone, f"{backbone}_ssd320")
    for image in images[:IMAGES[backbone]]:
        x = transform(image[:, :, ::-1].copy(), config)[None]
        with torch.no_grad():
            loc, conf = net(x)
        for detector in detectors:
            detections, prepared, outputs = detect_with_raw_outputs(detector, image)
            origin = f"{detector.backend} {backbone}"
            np.testing.assert_allclose(as_nchw_input(detector, prepared), x.numpy(), atol=1e-4, rtol=0,
                                       err_msg=origin)
            for name, want in (("bbox_regression", loc), ("cls_logits", conf)):
                assert_close_outputs(outputs, {name: want.numpy()}, atol=OUTPUT_TOL * float(want.abs().max()),
                                     rtol=0, origin=origin)
            reference = decode(outputs["bbox_regression"][0], outputs["cls_logits"][0], config, image.shape)
            assert len(set(reference["labels"].tolist())) > 3, "the reference should detect varied classes"
            assert_same_detections(detections, reference, score_tol=1e-4, box_tol=0.5)


def test_metadata_records_the_config(exported):
    meta = load_detector(exported("mobilenet_v3")[3]).meta
    assert (meta.mean, meta.std, meta.channel_order) == ([120.0, 115.0, 100.0], [1.0] * 3, "RGB")
    assert (meta.score_threshold, meta.iou_threshold, meta.max_detections) == (0.05, 0.5, 60)
    assert meta.anchors is not None and (meta.anchors.clip, meta.anchors.clip_mode) == (False, "box")
    assert (meta.resize.pixels, meta.clip_boxes, meta.class_names[1:]) == ("uint8", "none",
                                                                            [f"thing{i}" for i in range(1, 6)])


def assert_refused(capsys, out: Path, phrases: List[str], *args) -> None:
    """export_onnx.py with ``args`` exits 2 with one line holding every phrase, and writes nothing."""
    code = run_cli(main, [str(a) for a in (*args, "--output", out)])
    lines = capsys.readouterr().err.strip().splitlines()
    assert (code, len(lines)) == (2, 1), lines
    assert all(phrase in lines[0] for phrase in phrases), lines[0]
    assert not out.exists()


def test_bad_input_is_one_line_naming_the_problem(exported, capsys, tmp_path):
    net, _, checkpoint, _ = exported("mobilenet_v2")
    state = net.state_dict()
    head = "box_head.predictor.cls_headers."
    five = {k: torch.zeros(6 * 5, *v.shape[1:]) if k.startswith(head) and v.dim() and v.shape[0] == 6 * 21 else v
            for k, v in state.items()}  # 5 classes with the background: no shipped config tells its priors
    torch.save({"model": five}, tmp_path / "five.pth")
    (tmp_path / "truncated.pth").write_bytes(checkpoint.read_bytes()[:4096])
    (tmp_path / "wrong.yaml").write_text("MODEL:\n  NUM_CLASSES: 21\n  BACKBONE:\n    NAME: 'mobilenet_v2'\n")
    (tmp_path / "list.yaml").write_text("- MODEL\n")
    out = tmp_path / "out.onnx"
    cases = [
        (["--checkpoint", tmp_path / "five.pth"], ["5 classes", "--config FILE"]),
        (["--checkpoint", tmp_path / "truncated.pth"], ["truncated.pth"]),
        (["--checkpoint", checkpoint, "--config", tmp_path / "wrong.yaml"],
         ["wrong.yaml", "MODEL.PRIORS.ASPECT_RATIOS", "[6, 6, 6, 6, 6, 6]"]),
        (["--checkpoint", checkpoint, "--config", tmp_path / "list.yaml"], ["list.yaml", "YAML mapping"]),
        (["--checkpoint", checkpoint, "--preset", "voc"], ["--preset", "--config FILE"]),
    ]
    for args, phrases in cases:
        assert_refused(capsys, out, phrases, *args)
