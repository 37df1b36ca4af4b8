"""NVIDIA DeepLearningExamples SSD300 checkpoints: recognised from their keys, exported, and run by the
toolkit's runners, checked against its own inference (tests/nvidia_ssd_reference.py) in three parts: the
pre-processed input, the network's raw outputs, and the detections of its Encoder.decode_batch decoded from
those very outputs (labels exact, boxes within 0.5 px, scores within 1e-4)."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import List

import numpy as np
import pytest
import torch
from torch.optim.lr_scheduler import MultiStepLR

from calibration.images import read_image
from export.export_onnx import export_checkpoint, main
from importers.base import ImportOptions
from importers.nvidia_ssd import NvidiaSSD300
from importers.registry import recognise
from runtimes.cli import run_cli
from runtimes.loader import load_detector
from tests.matching import as_nchw_input, assert_close_outputs, assert_same_detections, detect_with_raw_outputs
from tests.nvidia_ssd_reference import SSD300, codebase_order, decisive_nvidia_ssd, decode, transform
from tests.reference_models import voc_mini_images
from tests.test_importers_pytorch_ssd import OUTPUT_TOL

# sha256 of "key [shape]" lines, sorted, of model.py's SSD300(ResNet('resnet50')) state dict, computed by
# running NVIDIA/DeepLearningExamples' PyTorch/Detection/SSD (commit 729963d) outside this repository; the
# same run gave its SSDTransformer(val=True) tensor, outputs, dboxes300_coco and decode_batch(0.50, 200)
# detections equal to tests/nvidia_ssd_reference.py's (difference 0.0).
CODEBASE_LAYOUT = "39e13184b4414d37"
NUM_CLASSES = 81  # its label_num: COCO's 80 and the background


def test_reference_network_has_the_codebases_keys_and_shapes():
    for state in (SSD300(NUM_CLASSES).state_dict(), NvidiaSSD300("resnet50", NUM_CLASSES).state_dict()):
        text = "\n".join(f"{k} {list(v.shape)}" for k, v in sorted(state.items()))
        assert hashlib.sha256(text.encode()).hexdigest()[:16] == CODEBASE_LAYOUT


@pytest.fixture(scope="module")
def images():
    return [read_image(path)[0] for path in voc_mini_images()[:2]]


@pytest.fixture(scope="module")
def exported(tmp_path_factory, images):
    """(reference network, ONNX file): seeded weights saved as main.py saves them ({"model": state, the
    optimizer's and MultiStepLR's state, "label_map", ...}), exported with an 80-name labels file."""
    folder = tmp_path_factory.mktemp("nvidia_ssd")
    net = decisive_nvidia_ssd(NUM_CLASSES, images)
    optimizer = torch.optim.SGD([net.loc[0].weight], lr=2.6e-3, momentum=0.9)
    checkpoint = folder / "epoch_64.pt"
    torch.save({"epoch": 65, "iteration": 1000, "optimizer": optimizer.state_dict(),
                "scheduler": MultiStepLR(optimizer, milestones=[43, 54]).state_dict(),
                "label_map": {i: f"thing{i}" for i in range(NUM_CLASSES)}, "model": net.state_dict()}, checkpoint)
    names = folder / "coco.txt"
    names.write_text("".join(f"thing{i}\n" for i in range(1, NUM_CLASSES)))
    onnx_path = folder / "ssd300.onnx"
    export_checkpoint(checkpoint, None, onnx_path, classes_file=names, options=ImportOptions())
    return net, onnx_path


def test_runners_give_nvidias_own_detections(exported, images):
    """ONNX Runtime and OpenVINO, through load_detector, against NVIDIA's SSD300 on one call of the real
    Detector whose network input and raw outputs are recorded:

    1. pre-processing: its input is SSDTransformer's validation tensor (Pillow's bilinear resize of the RGB
       image, ToTensor, ImageNet mean/std) within 1e-4;
    2. the network: its raw outputs are PyTorch's in the codebase's layout (B, 4, 8732) / (B, C, 8732),
       reordered to the toolkit's (level, cell, box), within OUTPUT_TOL of their range;
    3. post-processing: its detections are Encoder.decode_batch(0.50, 200)'s applied to the SAME raw outputs
       put back in the codebase's order: labels exact, boxes within 0.5 px, scores within 1e-4. Wrong priors,
       a wrong head order, scale_xy/scale_wh, thresholds, NMS or the final cap still fail.
    """
    net, onnx_path = exported
    order = codebase_order()
    detectors = [load_detector(onnx_path), load_detector(onnx_path, runtime="openvino")]
    assert detectors[0].meta.arch == "nvidia-ssd/ssd300-resnet50"
    assert detectors[0].meta.class_names[1] == "thing1"
    image = images[0]  # one image: a ResNet-50 pass costs seconds; the two measured the BatchNorm statistics
    x = transform(image)
    with torch.no_grad():
        ploc, plabel = (out[0] for out in net(x[None]))
    for detector in detectors:
        detections, prepared, outputs = detect_with_raw_outputs(detector, image)
        origin = detector.backend
        np.testing.assert_allclose(as_nchw_input(detector, prepared), x[None].numpy(), atol=1e-4, rtol=0,
                                   err_msg=origin)
        for name, want in (("bbox_regression", ploc.t()[order]), ("cls_logits", plabel.t()[order])):
            assert_close_outputs(outputs, {name: want.numpy()[None]}, atol=OUTPUT_TOL * float(want.abs().max()),
                                 rtol=0, origin=origin)
        loc, conf = (np.empty_like(outputs[name][0]) for name in ("bbox_regression", "cls_logits"))
        loc[order], conf[order] = outputs["bbox_regression"][0], outputs["cls_logits"][0]
        reference = decode(torch.from_numpy(loc.T), torch.from_numpy(conf.T), image.shape)
        assert len(set(reference["labels"].tolist())) > 3, "the reference should detect varied classes"
        assert_same_detections(detections, reference, score_tol=1e-4, box_tol=0.5)


def test_metadata_records_the_codebases_inference(exported):
    meta = load_detector(exported[1]).meta
    assert (meta.resize.library, meta.resize.interpolation, meta.resize.pixels) == ("pillow", "linear", "uint8")
    np.testing.assert_allclose(meta.mean, [123.675, 116.28, 103.53])
    np.testing.assert_allclose(meta.std, [58.395, 57.12, 57.375])
    assert meta.anchors is not None and meta.anchors.clip_mode == "box" and meta.clip_boxes == "none"
    thresholds = (meta.score_threshold, meta.iou_threshold, meta.topk_candidates, meta.max_detections)
    assert thresholds == (0.05, 0.5, 200, 200)


def test_other_backbones_are_recognised():
    state = NvidiaSSD300("resnet18", NUM_CLASSES).state_dict()
    assert recognise(state)[1].network == "ssd300-resnet18"


def _fake(layer3_blocks: int = 6, levels: int = 6) -> dict:
    """The key layout of a main.py checkpoint, tensors left empty: enough to be recognised and refused."""
    keys = [f"feature_extractor.feature_extractor.6.{i}.conv3.weight" for i in range(layer3_blocks)]
    keys += ["feature_extractor.feature_extractor.0.weight", "additional_blocks.0.0.weight"]
    state = {k: torch.zeros(1) for k in keys}
    state.update({f"loc.{i}.weight": torch.zeros(16, 1, 1, 1) for i in range(levels)})
    state.update({f"conf.{i}.weight": torch.zeros(4 * NUM_CLASSES, 1, 1, 1) for i in range(levels)})
    return state


@pytest.mark.parametrize("state,args,phrases", [
    (_fake(), ["--input-size", "512"], ["--input-size 512", "leave --input-size out"]),
    (_fake(), ["--preset", "coco"], ["--preset coco", "dboxes300_coco"]),
    (_fake(layer3_blocks=4), [], ["recognised a nvidia-ssd checkpoint", "none of ResNet-18/34/50/101/152"]),
    (_fake(levels=7), [], ["recognised a nvidia-ssd checkpoint", "not SSD300's 6"]),
])
def test_bad_input_is_one_line_naming_the_problem(tmp_path, capsys, state, args: List[str], phrases: List[str]):
    checkpoint, out = tmp_path / "epoch_1.pt", tmp_path / "out.onnx"
    torch.save({"model": state, "epoch": 1}, checkpoint)
    code = run_cli(main, ["--checkpoint", str(checkpoint), *args, "--output", str(out)])
    lines = capsys.readouterr().err.strip().splitlines()
    assert (code, len(lines)) == (2, 1), lines
    assert all(phrase in lines[0] for phrase in phrases), lines[0]
    assert not Path(out).exists()
