"""OpenVINO INT8 of an imported model of each codebase (pytorch-ssd mb1-ssd, ssd.pytorch SSD300, MMDetection
SSDLite-MobileNetV2): built by the one build API from the checkpoint, calibrated on 4 images through the
model's own pre-processing (its metadata's channel order, mean/std and uint8 resize), and run; its
detections on 2 other images must be mostly the FP32 ones, far more than chance."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from calibration.images import read_image
from export.build import build
from export.build_request import BuildRequest, CalibrationSpec, SourceSpec, ValidationSpec
from runtimes.loader import load_detector
from tests.matching import box_iou
from tests.reference_models import decisive_pytorch_ssd, save_state_dict, voc_mini_images

CALIBRATION, EVALUATION = slice(0, 4), slice(4, 6)  # images of voc-mini: disjoint sets


def _checkpoint(codebase: str, folder: Path) -> Path:
    """A decisive random-weight checkpoint as ``codebase`` saves it."""
    path = folder / f"{codebase}.pth"
    if codebase == "pytorch-ssd":
        return save_state_dict(decisive_pytorch_ssd("mb1-ssd"), path)
    images = [read_image(p)[0] for p in voc_mini_images()[CALIBRATION]]
    if codebase == "ssd.pytorch":
        from tests.ssd_pytorch_reference import decisive_ssd

        torch.save(decisive_ssd(21, images[:2], seed=2).state_dict(), path)
        return path
    from tests import mmdetection_reference_nets
    from tests.mmdetection_reference import network_input

    batch = torch.cat([network_input(image, 320, (58.395, 57.12, 57.375)) for image in images[:2]])
    torch.save({"meta": {}, "state_dict": mmdetection_reference_nets.make_state("ssdlite", 21, batch)}, path)
    return path


def _agreement(fp32, int8, min_score: float) -> float:
    """The share of ``fp32``'s detections scoring >= min_score that ``int8`` has with the same label at IoU >= 0.5."""
    ref = fp32.filter(min_score=min_score)
    if not len(ref) or not len(int8):
        return 0.0
    same = (box_iou(ref.boxes, int8.boxes) >= 0.5) & (ref.labels[:, None] == int8.labels[None, :])
    return float(same.any(axis=1).mean())


@pytest.mark.parametrize("codebase", ["pytorch-ssd", "ssd.pytorch", "mmdetection"])
def test_int8_ir_of_an_imported_model_builds_and_agrees_with_fp32(codebase, tmp_path):
    calibration = tmp_path / "calibration"
    calibration.mkdir()
    for image in voc_mini_images()[CALIBRATION]:
        (calibration / image.name).symlink_to(image)
    checkpoint = _checkpoint(codebase, tmp_path)
    result = build(BuildRequest(SourceSpec(checkpoint=checkpoint), "openvino", "int8",
                                CalibrationSpec(calibration, 4), ValidationSpec(judge=False), output=tmp_path,
                                progress=False), log=lambda line: None)
    fp32 = load_detector(tmp_path / f"{codebase}.onnx")
    int8 = load_detector(result.path)
    own = fp32.meta
    assert int8.meta.precision == "int8" and int8.meta.arch == own.arch
    assert (int8.meta.mean, int8.meta.std, int8.meta.channel_order, int8.meta.resize) == \
        (own.mean, own.std, own.channel_order, own.resize), "the IR keeps the codebase's own pre-processing"
    assert int8.meta.extra["build"]["calibration"]["images"] == 4
    images = [read_image(p)[0] for p in voc_mini_images()[EVALUATION]]
    pairs = [(fp32(image), int8(image)) for image in images]
    # The bar is relative: INT8 must find most of FP32's confident boxes, and more of them on the same image
    # than on the other one (random-weight boxes stay near their priors, so some agree whatever the image).
    min_score = float(np.median(np.concatenate([f.scores for f, _ in pairs])))
    same = [_agreement(f, i, min_score) for f, i in pairs]
    crossed = [_agreement(pairs[0][0], pairs[1][1], min_score), _agreement(pairs[1][0], pairs[0][1], min_score)]
    assert min(same) > 0.5 and min(same) > max(crossed), (codebase, same, crossed)
