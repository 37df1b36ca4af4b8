"""ssd.pytorch checkpoints: recognised from their keys, exported, and run by the toolkit's runners, checked
against ssd.pytorch's own inference (tests/ssd_pytorch_reference.py) in three parts (see
test_runners_give_ssd_pytorchs_own_detections): the pre-processed input, the network's raw outputs, and the
detections of its Detect decoded from those very outputs (labels exact, boxes within 0.5 px, scores within
1e-4)."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import List

import numpy as np
import pytest
import torch

from calibration.images import read_image
from export.export_onnx import export_checkpoint
from importers.base import ImportOptions
from runtimes.loader import load_detector
from tests.matching import as_nchw_input, assert_close_outputs, assert_same_detections, detect_with_raw_outputs
from tests.reference_models import voc_mini_images
from tests.ssd_pytorch_reference import SSD, decisive_ssd, decode, transform
from tests.test_importers_pytorch_ssd import OUTPUT_TOL, run

# sha256 of "key [shape]" lines, sorted, of ssd.pytorch's build_ssd('test', 300, 21) state dict, computed
# by running amdegroot/ssd.pytorch (commit 5b0b77f) outside this repository; the same run gave its PriorBox
# (voc, coco), train-phase outputs and Detect equal to tests/ssd_pytorch_reference.py's (difference 0.0).
CODEBASE_LAYOUT = "d6daf57881e966f8"


def test_reference_network_has_the_codebases_keys_and_shapes():
    text = "\n".join(f"{k} {list(v.shape)}" for k, v in sorted(SSD(21).state_dict().items()))
    assert hashlib.sha256(text.encode()).hexdigest()[:16] == CODEBASE_LAYOUT


@pytest.fixture(scope="module")
def images():
    return [read_image(path)[0] for path in voc_mini_images()[:2]]


@pytest.fixture(scope="module")
def exported(tmp_path_factory, images):
    """(reference network, checkpoint, ONNX file) per preset: voc with 21 classes, coco with 81 wrapped as
    train.py's torch.save(ssd_net.state_dict()) under DataParallel (``module.`` prefixes)."""
    folder = tmp_path_factory.mktemp("ssd_pytorch")
    cache = {}

    def get(preset: str):
        if preset not in cache:
            net = decisive_ssd(21 if preset == "voc" else 81, images)
            checkpoint = folder / f"ssd300_{preset}.pth"
            torch.save({f"module.{k}": v for k, v in net.state_dict().items()}, checkpoint)
            onnx_path = folder / f"ssd300_{preset}.onnx"
            names = folder / f"{preset}.txt"
            names.write_text("".join(f"thing{i}\n" for i in range(1, net.num_classes)))
            export_checkpoint(checkpoint, None, onnx_path, classes_file=names, options=ImportOptions())
            cache[preset] = net, checkpoint, onnx_path
        return cache[preset]

    return get


@pytest.mark.parametrize("preset", ["voc", "coco"])
def test_runners_give_ssd_pytorchs_own_detections(exported, images, preset):
    """ONNX Runtime and OpenVINO, through load_detector, against ssd.pytorch, on one call of the real
    Detector per image whose network input and raw outputs are recorded:

    1. pre-processing: its input is BaseTransform's tensor reordered to RGB (within 1e-4: the same resize
       of the 8-bit image, the mean subtracted in another order of operations);
    2. the network: its raw outputs (bbox_regression, cls_logits with the background first) are PyTorch's
       SSD's on that input within OUTPUT_TOL of their range (float32 across kernels, threads and CPUs);
    3. post-processing: its detections are Detect's (PriorBox, decode, softmax, per-class NMS, top_k)
       applied to the SAME raw outputs: labels exact, boxes within 0.5 px, scores within 1e-4, so no
       runtime float noise can flip a near-tie in NMS between the two sides, while wrong priors, decoding,
       NMS or labels still fail.
    """
    net, _, onnx_path = exported(preset)
    detectors = [load_detector(onnx_path), load_detector(onnx_path, runtime="openvino")]
    assert detectors[0].meta.arch == f"ssd.pytorch/ssd300-{preset}"
    for image in images:
        x = transform(image)[None]
        with torch.no_grad():
            loc, conf = net(x)
        for detector in detectors:
            detections, prepared, outputs = detect_with_raw_outputs(detector, image)
            origin = f"{detector.backend} {preset}"
            np.testing.assert_allclose(as_nchw_input(detector, prepared), x.numpy(), atol=1e-4, rtol=0,
                                       err_msg=origin)
            for name, want in (("bbox_regression", loc), ("cls_logits", conf)):
                assert_close_outputs(outputs, {name: want.numpy()}, atol=OUTPUT_TOL * float(want.abs().max()),
                                     rtol=0, origin=origin)
            reference = decode(outputs["bbox_regression"][0], outputs["cls_logits"][0], preset, image.shape)
            assert len(set(reference["labels"].tolist())) > 3, "the reference should detect varied classes"
            assert_same_detections(detections, reference, score_tol=1e-4, box_tol=0.5)


def assert_refused(out: Path, phrases: List[str], *args) -> None:
    """export_onnx.py with ``args`` exits 2 with one line holding every phrase, and writes nothing."""
    result = run(*args, "--output", out)
    lines = result.stderr.strip().splitlines()
    assert (result.returncode, len(lines)) == (2, 1) and "Traceback" not in result.stderr, result.stderr
    assert all(phrase in lines[0] for phrase in phrases), lines[0]
    assert not out.exists()


def test_preset_names_the_priors_and_metadata_records_the_codebase(exported, images, tmp_path):
    net, checkpoint, _ = exported("voc")
    out = tmp_path / "m.onnx"
    result = run("--checkpoint", checkpoint, "--preset", "coco", "--output", out)
    assert result.returncode == 0, result.stderr
    meta = load_detector(out).meta
    assert meta.arch == "ssd.pytorch/ssd300-coco" and meta.anchors is not None
    assert meta.anchors.box_sizes is not None and meta.anchors.box_sizes[0][0] == [21 / 300] * 2
    assert (meta.mean, meta.std, meta.channel_order) == ([123.0, 117.0, 104.0], [1.0] * 3, "RGB")
    assert (meta.resize.pixels, meta.clip_boxes, meta.anchors.clip_mode) == ("uint8", "none", "box")


def test_bad_input_is_one_line_naming_the_problem(exported, tmp_path):
    net, checkpoint, _ = exported("voc")
    state = net.state_dict()
    five = {k: torch.zeros(int(state[k.replace("conf", "loc")].shape[0]) // 4 * 5, *v.shape[1:])
            if k.startswith("conf.") else v for k, v in state.items()}  # 5 classes: no preset tells its priors
    torch.save(five, tmp_path / "five.pth")
    torch.save({**state, "loc.6.weight": torch.zeros(16, 256, 3, 3)}, tmp_path / "ssd512.pth")
    out = tmp_path / "out.onnx"
    cases = [
        (["--checkpoint", tmp_path / "five.pth"], ["5 classes", "--preset voc or --preset coco"]),
        (["--checkpoint", checkpoint, "--preset", "kitti"], ["--preset kitti", "voc and coco"]),
        (["--checkpoint", checkpoint, "--input-size", "512"], ["--input-size 512", "SSD300 only"]),
        (["--checkpoint", tmp_path / "ssd512.pth"], ["recognised a ssd.pytorch checkpoint", "not SSD300's 6"]),
    ]
    for args, phrases in cases:
        assert_refused(out, phrases, *args)
