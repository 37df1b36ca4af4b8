"""MMDetection SSD300 checkpoints: recognised from their keys, the background moved from last to first,
exported, and run by the toolkit's runners, checked against MMDetection's own inference
(tests/mmdetection_reference.py) in three parts (see test_runners_give_mmdetections_own_detections): the
pre-processed input, the network's raw outputs, and the detections decoded from those very outputs (labels
exact, boxes within 0.5 px, scores within 1e-4); its Python config read as data."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from calibration.images import read_image
from export.export_onnx import export_checkpoint
from importers.base import ImportOptions
from runtimes.loader import load_detector
from tests.matching import as_nchw_input, assert_close_outputs, assert_same_detections, detect_with_raw_outputs
from tests.mmdetection_reference import decode_outputs, mmdet_state_dict, network_input
from tests.reference_models import voc_mini_images
from tests.ssd_pytorch_reference import decisive_ssd
from tests.test_importers_pytorch_ssd import OUTPUT_TOL
from tests.test_importers_ssd_pytorch import assert_refused

INPUT_TOL = 1e-4

CONFIG = """_base_ = ['../_base_/models/ssd300.py']
input_size = 300
model = dict(bbox_head=dict(num_classes=20, anchor_generator=dict(basesize_ratio_range=(0.2, 0.9))))
img_norm_cfg = dict(mean=[123.675, 116.28, 103.53], std=[1, 1, 1], to_rgb=True)
"""
BASE = """input_size = 300
model = dict(
    type='SingleStageDetector',
    data_preprocessor=dict(type='DetDataPreprocessor', mean=[123.675, 116.28, 103.53], std=[1, 1, 1],
                           bgr_to_rgb=True, pad_size_divisor=1),
    bbox_head=dict(type='SSDHead', num_classes=80,
                   anchor_generator=dict(type='SSDAnchorGenerator', scale_major=False, input_size=input_size,
                                         basesize_ratio_range=(0.15, 0.9), strides=[8, 16, 32, 64, 100, 300])),
    test_cfg=dict(nms_pre=1000, nms=dict(type='nms', iou_threshold=0.45), min_bbox_size=0, score_thr=0.02,
                  max_per_img=200))
"""


@pytest.fixture(scope="module")
def images():
    return [read_image(path)[0] for path in voc_mini_images()[:2]]


@pytest.fixture(scope="module")
def exported(tmp_path_factory, images):
    """A VOC SSD300 (20 classes + background last) saved as MMDetection saves it, its config (inheriting
    _base_/models/ssd300.py, whose coco range the voc config overrides), and the ONNX file exported with it."""
    folder = tmp_path_factory.mktemp("mmdet")
    net = decisive_ssd(21, images, seed=1)
    checkpoint = folder / "ssd300_voc0712.pth"
    torch.save({"meta": {"mmdet_version": "3.3.0", "CLASSES": None}, "state_dict": mmdet_state_dict(net)}, checkpoint)
    (folder / "_base_" / "models").mkdir(parents=True)
    (folder / "_base_" / "models" / "ssd300.py").write_text(BASE)
    (folder / "ssd").mkdir()
    config = folder / "ssd" / "ssd300_voc0712.py"
    config.write_text(CONFIG)
    onnx_path = folder / "ssd300.onnx"
    export_checkpoint(checkpoint, None, onnx_path, options=ImportOptions(config=config))
    return net, checkpoint, config, onnx_path


def test_runners_give_mmdetections_own_detections(exported, images):
    """ONNX Runtime and OpenVINO, through load_detector, against MMDetection, on one call of the real
    Detector per image whose network input and raw outputs are recorded:

    1. pre-processing: its input is ssd300.py's pipeline's tensor (Resize, bgr_to_rgb, mean, std 1) within
       INPUT_TOL grey levels;
    2. the network: its raw outputs are PyTorch's on that input within OUTPUT_TOL of their range, its
       cls_logits being MMDetection's with the last (background) column moved first, so the class order
       is checked here;
    3. post-processing: its detections are SSDHead's predict_by_feat (SSDAnchorGenerator,
       DeltaXYWHBBoxCoder clipped, score_thr, nms_pre, batched NMS, max_per_img) applied to the SAME raw
       outputs, the background column put back last: labels exact, boxes within 0.5 px, scores within
       1e-4, so no runtime float noise can flip a near-tie in NMS between the two sides.
    """
    net, _, _, onnx_path = exported
    detectors = [load_detector(onnx_path), load_detector(onnx_path, runtime="openvino")]
    meta = detectors[0].meta
    assert meta.arch == "mmdetection/ssd300" and meta.extra["mmdetection"]["basesize_ratio_range"] == [0.2, 0.9]
    for image in images:
        x = network_input(image)
        with torch.no_grad():
            loc, conf = net(x)
        background_first = torch.roll(conf, 1, dims=-1)
        for detector in detectors:
            detections, prepared, outputs = detect_with_raw_outputs(detector, image)
            origin = f"{detector.backend} mmdetection"
            np.testing.assert_allclose(as_nchw_input(detector, prepared), x.numpy(), atol=INPUT_TOL, rtol=0,
                                       err_msg=origin)
            for name, want in (("bbox_regression", loc), ("cls_logits", background_first)):
                assert_close_outputs(outputs, {name: want.numpy()}, atol=OUTPUT_TOL * float(want.abs().max()),
                                     rtol=0, origin=origin)
            logits = np.roll(outputs["cls_logits"][0], -1, axis=-1)  # MMDetection's order: background last
            reference = decode_outputs(outputs["bbox_regression"][0], logits, "voc", image.shape)
            assert len(set(reference["labels"].tolist())) > 3, "the reference should detect varied classes"
            assert_same_detections(detections, reference, score_tol=1e-4, box_tol=0.5)


def test_bad_input_is_one_line_naming_the_problem(exported, tmp_path):
    net, checkpoint, _, _ = exported
    state = mmdet_state_dict(net)
    five = {k: torch.zeros(int(state[k.replace("cls", "reg")].shape[0]) // 4 * 6, *v.shape[1:])
            if k.startswith("bbox_head.cls_convs.") else v for k, v in state.items()}
    torch.save({"meta": {}, "state_dict": five}, tmp_path / "five.pth")
    code = tmp_path / "code.py"
    code.write_text("import os\nmodel = dict(bbox_head=dict(num_classes=os.system('touch pwned')))\n")
    call = tmp_path / "call.py"
    call.write_text("model = dict(test_cfg=dict(score_thr=__import__('os').getpid()))\n")
    out = tmp_path / "out.onnx"
    cases = [
        (["--checkpoint", tmp_path / "five.pth"], ["5 classes", "--config FILE", "--preset coco|voc"]),
        (["--checkpoint", checkpoint, "--config", code], ["code.py:1", "holds code", "never executed"]),
        (["--checkpoint", checkpoint, "--config", call], ["call.py:1", "holds code"]),
        (["--checkpoint", checkpoint, "--preset", "kitti"], ["--preset kitti", "coco and voc"]),
    ]
    for args, phrases in cases:
        assert_refused(out, phrases, *args)
    assert not (tmp_path / "pwned").exists()
