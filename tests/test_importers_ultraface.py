"""UltraFace checkpoints: recognised from their keys, exported, and run by the toolkit's runners, checked
against its own inference (tests/ultraface_reference.py) in three parts: the pre-processed input, the raw
outputs, and the detections of its Predictor decoded from those very outputs (labels exact, boxes within
0.5 px, scores within 1e-4)."""

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
from importers.registry import import_state_dict
from importers.ultraface import UltraFaceSSD
from runtimes.anchors import count as anchor_count
from runtimes.cli import run_cli
from runtimes.loader import load_detector
from tests.matching import as_nchw_input, assert_close_outputs, assert_same_detections, detect_with_raw_outputs
from tests.reference_models import voc_mini_images
from tests.test_importers_pytorch_ssd import OUTPUT_TOL
from tests.ultraface_reference import decisive_ultraface, decode, transform

# sha256 of "key [shape]" lines, sorted, of create_mb_tiny_fd(2) and create_Mb_Tiny_RFB_fd(2)'s state dicts,
# computed by running Linzaer/Ultra-Light-Fast-Generic-Face-Detector-1MB (commit dffdddd) outside this
# repository; the same run gave its priors, PredictionTransform, outputs (difference 0.0) and
# Predictor.predict(im, 400, 0.1)'s detections (boxes within 3e-5 px) equal to tests/ultraface_reference.py's.
CODEBASE_LAYOUTS = {"version-slim": "abd18269b71a163f", "version-RFB": "3aea0e556f74b58c"}
# (network, classes): the face models (BACKGROUND, face) and masked_face/'s RFB (BACKGROUND, face, masked_face).
CASES = [("version-slim", 2), ("version-RFB", 3)]


@pytest.mark.parametrize("network", CODEBASE_LAYOUTS)
def test_network_has_the_codebases_keys_and_shapes(network):
    state = UltraFaceSSD(network == "version-RFB", 2).state_dict()
    text = "\n".join(f"{k} {list(v.shape)}" for k, v in sorted(state.items()))
    assert hashlib.sha256(text.encode()).hexdigest()[:16] == CODEBASE_LAYOUTS[network]


@pytest.fixture(scope="module")
def images():
    return [read_image(path)[0] for path in voc_mini_images()[:2]]


@pytest.fixture(scope="module")
def exported(tmp_path_factory, images):
    """Per case, (reference network, checkpoint, ONNX file): the state dict as train.py's net.save writes it,
    exported with its labels file (models/ or masked_face/'s voc-model-labels.txt)."""
    folder = tmp_path_factory.mktemp("ultraface")
    cache = {}

    def get(network: str, num_classes: int):
        if (network, num_classes) not in cache:
            net = decisive_ultraface(network == "version-RFB", num_classes, images)
            checkpoint = folder / f"{network}-{num_classes}.pth"
            torch.save(net.state_dict(), checkpoint)
            labels = folder / f"labels-{num_classes}.txt"
            labels.write_text("\n".join(["BACKGROUND", "face", "masked_face"][:num_classes]) + "\n")
            onnx_path = folder / f"{network}-{num_classes}.onnx"
            export_checkpoint(checkpoint, None, onnx_path, classes_file=labels, options=ImportOptions())
            cache[network, num_classes] = net, checkpoint, onnx_path
        return cache[network, num_classes]

    return get


@pytest.mark.parametrize("network,num_classes", CASES)
def test_runners_give_ultrafaces_own_detections(exported, images, network, num_classes):
    """ONNX Runtime and OpenVINO, through load_detector, on one call of the real Detector per image:
    1. its input is PredictionTransform's (RGB, cv2.resize of the uint8 image to 320x240, -127, /128);
    2. its raw outputs are PyTorch's within OUTPUT_TOL of their range;
    3. its detections are Predictor.predict's with the WIDER FACE evaluation's settings (softmax, > 0.1,
       800 candidates, hard NMS at 0.3 with 1e-5 on every union, 400 kept) on the SAME raw outputs."""
    net, _, onnx_path = exported(network, num_classes)
    detectors = [load_detector(onnx_path), load_detector(onnx_path, runtime="openvino")]
    assert detectors[0].meta.arch == f"UltraFace/{network}-320"
    assert detectors[0].meta.class_names[1] == "face"
    batch = torch.stack([transform(image, 320) for image in images])
    with torch.no_grad():
        locations, logits = net(batch)
    for image, x, want_loc, want_conf in zip(images, batch, locations, logits):
        for detector in detectors:
            detections, prepared, outputs = detect_with_raw_outputs(detector, image)
            origin = f"{detector.backend} {network}"
            np.testing.assert_allclose(as_nchw_input(detector, prepared), x[None].numpy(), atol=1e-5, rtol=0,
                                       err_msg=origin)
            for name, want in (("bbox_regression", want_loc), ("cls_logits", want_conf)):
                assert_close_outputs(outputs, {name: want.numpy()[None]}, atol=OUTPUT_TOL * float(want.abs().max()),
                                     rtol=0, origin=origin)
            reference = decode(outputs["bbox_regression"][0], outputs["cls_logits"][0], 320, image.shape)
            assert len(set(reference["labels"].tolist())) == num_classes - 1, "every class should be detected"
            assert_same_detections(detections, reference, score_tol=1e-4, box_tol=0.5)


def test_input_size_picks_define_img_sizes_priors(exported):
    """--input-size 640: define_img_size(640)'s 640x480 input and feature maps, as many priors as the
    network's outputs at that size."""
    net, _, _ = exported("version-RFB", 3)
    imported = import_state_dict(net.state_dict(), ImportOptions(input_size=640))
    meta = imported.meta
    assert (meta.arch, meta.input_width, meta.input_height) == ("UltraFace/version-RFB-640", 640, 480)
    assert meta.anchors is not None and meta.anchors.feature_maps == [[60, 80], [30, 40], [15, 20], [8, 10]]
    assert meta.anchors.box_sizes is not None and meta.anchors.box_sizes[0][0] == [10 / 640, 10 / 480]
    with torch.no_grad():
        locations, _ = imported.module(torch.zeros(1, 3, 480, 640))
    assert locations.shape[1] == anchor_count(meta.anchors)


@pytest.mark.parametrize("args,phrases", [
    (["--input-size", "300"], ["--input-size 300", "128, 160, 320, 480, 640, 1280"]),
    (["--preset", "voc"], ["--preset", "nothing else"]),
])
def test_bad_input_is_one_line_naming_the_problem(exported, tmp_path, capsys, args: List[str], phrases: List[str]):
    _, checkpoint, _ = exported("version-slim", 2)
    out = tmp_path / "out.onnx"
    code = run_cli(main, ["--checkpoint", str(checkpoint), *args, "--output", str(out)])
    lines = capsys.readouterr().err.strip().splitlines()
    assert (code, len(lines)) == (2, 1), lines
    assert all(phrase in lines[0] for phrase in phrases), lines[0]
    assert not Path(out).exists()
