"""MMDetection SSD300, SSD512 and SSDLite-MobileNetV2 checkpoints: recognised from their keys, the background
moved from last to first, exported, and run by the toolkit's runners, checked against MMDetection's own
inference (tests/mmdetection_reference.py, tests/mmdetection_reference_nets.py) in three parts (see
test_runners_give_mmdetections_own_detections): the pre-processed input, the network's raw outputs, and the
detections decoded from those very outputs (labels exact, boxes within 0.5 px, scores within 1e-4); its
Python configs read as data."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from calibration.images import read_image
from export.export_onnx import export_checkpoint
from importers.base import ImportOptions
from importers.mmdet_config import read_config
from importers.registry import import_state_dict
from runtimes.errors import UserError
from runtimes.loader import load_detector
from tests import mmdetection_reference_nets as reference_nets
from tests.matching import as_nchw_input, assert_close_outputs, assert_same_detections, detect_with_raw_outputs
from tests.mmdetection_reference import SSD512_VOC, SSDLITE, decode_outputs, mmdet_state_dict, network_input
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
# ssdlite_mobilenetv2-scratch_8xb24-600e_coco.py's inference settings as MMDetection 3.x writes them, with
# MMEngine's {{_base_.name}} references, for a VOC training (20 classes)
LITE_CONFIG = """_base_ = ['../_base_/datasets/coco_detection.py']
data_preprocessor = dict(type='DetDataPreprocessor', mean=[123.675, 116.28, 103.53], std=[58.395, 57.12, 57.375],
                         bgr_to_rgb=True, pad_size_divisor=1)
model = dict(
    type='SingleStageDetector', data_preprocessor=data_preprocessor,
    backbone=dict(type='MobileNetV2', out_indices=(4, 7), norm_cfg=dict(type='BN', eps=0.001, momentum=0.03)),
    bbox_head=dict(type='SSDHead', num_classes=20, use_depthwise=True,
                   anchor_generator=dict(type='SSDAnchorGenerator', scale_major=False,
                                         strides=[16, 32, 64, 107, 160, 320],
                                         ratios=[[2, 3], [2, 3], [2, 3], [2, 3], [2, 3], [2, 3]],
                                         min_sizes=[48, 100, 150, 202, 253, 304],
                                         max_sizes=[100, 150, 202, 253, 304, 320])),
    test_cfg=dict(nms_pre=1000, nms=dict(type='nms', iou_threshold=0.45), min_bbox_size=0, score_thr=0.02,
                  max_per_img=200))
input_size = 320
train_dataloader = dict(batch_size=24, dataset=dict(_delete_=True, type='RepeatDataset', times=5,
                        dataset=dict(type={{_base_.dataset_type}}, data_root={{_base_.data_root}})))
"""
DATASET = "dataset_type = 'CocoDataset'\ndata_root = 'data/coco/'\n"
NETWORKS = {"ssd512": (SSD512_VOC, (1.0, 1.0, 1.0), 1), "ssdlite": (SSDLITE, (58.395, 57.12, 57.375), 2)}


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


@pytest.fixture(scope="module", params=sorted(NETWORKS))
def other_network(request, tmp_path_factory, images):
    """SSD512 (VOC, told by its 21 outputs) or SSDLite (its config read): decisive weights under MMDetection's
    keys, the ONNX file exported from the checkpoint, and MMDetection's raw outputs on each image."""
    name = request.param
    priors, std, count = NETWORKS[name]
    folder = tmp_path_factory.mktemp(name)
    inputs = [network_input(image, priors.size, std) for image in images[:count]]
    state = reference_nets.make_state(name, 21, torch.cat(inputs))
    checkpoint = folder / f"{name}.pth"
    torch.save({"meta": {"mmdet_version": "3.3.0"}, "state_dict": state}, checkpoint)
    options = ImportOptions()
    if name == "ssdlite":
        (folder / "_base_" / "datasets").mkdir(parents=True)
        (folder / "_base_" / "datasets" / "coco_detection.py").write_text(DATASET)
        (folder / "ssd").mkdir()
        options = ImportOptions(config=folder / "ssd" / "ssdlite_voc.py")
        options.config.write_text(LITE_CONFIG)  # type: ignore[union-attr]
    onnx_path = folder / f"{name}.onnx"
    export_checkpoint(checkpoint, None, onnx_path, options=options)
    raw = [reference_nets.run(name, state, x, 21) for x in inputs]
    return name, onnx_path, list(zip(images, inputs, raw)), state


def assert_mmdetection_parity(detector, image, x: torch.Tensor, loc: torch.Tensor, conf: torch.Tensor, priors) -> None:
    """The three parts of test_runners_give_mmdetections_own_detections for one detector and image; ``conf``
    MMDetection's logits (background last)."""
    detections, prepared, outputs = detect_with_raw_outputs(detector, image)
    origin = f"{detector.backend} {detector.meta.arch}"
    np.testing.assert_allclose(as_nchw_input(detector, prepared), x.numpy(), atol=INPUT_TOL, rtol=0, err_msg=origin)
    for name, want in (("bbox_regression", loc), ("cls_logits", torch.roll(conf, 1, dims=-1))):
        assert_close_outputs(outputs, {name: want.numpy()}, atol=OUTPUT_TOL * float(want.abs().max()), rtol=0,
                             origin=origin)
    logits = np.roll(outputs["cls_logits"][0], -1, axis=-1)  # MMDetection's order: background last
    reference = decode_outputs(outputs["bbox_regression"][0], logits, priors, image.shape)
    assert len(set(reference["labels"].tolist())) > 3, "the reference should detect varied classes"
    assert_same_detections(detections, reference, score_tol=1e-4, box_tol=0.5)


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
        for detector in detectors:
            assert_mmdetection_parity(detector, image, x, loc, conf, "voc")


def test_ssd512_and_ssdlite_give_mmdetections_own_detections(other_network):
    """The same three parts for SSD512 (its fifth extra level, 4x4 last kernel, priors from (0.15, 0.9) at
    512) and SSDLite (MobileNetV2, depthwise neck and head, explicit min/max sizes, strides 107 and 160,
    std from its config), on ONNX Runtime and OpenVINO."""
    name, onnx_path, cases, _ = other_network
    priors = NETWORKS[name][0]
    detectors = [load_detector(onnx_path), load_detector(onnx_path, runtime="openvino")]
    meta = detectors[0].meta
    assert (meta.input_width, len(meta.anchors.feature_maps)) == (priors.size, len(priors.strides))
    assert meta.extra["mmdetection"]["min_sizes"] == list(priors.mins)
    for image, x, (loc, conf) in cases:
        for detector in detectors:
            assert_mmdetection_parity(detector, image, x, loc, conf, priors)


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


def test_configs_are_read_as_data_with_base_references(tmp_path):
    """The 3.x SSDLite config: _base_ merged beneath, {{_base_.name}} looked up in it, the values the importer
    takes found; a {{...}} that is not a _base_ reference is code, one naming nothing a one-line error."""
    (tmp_path / "_base_" / "datasets").mkdir(parents=True)
    (tmp_path / "_base_" / "datasets" / "coco_detection.py").write_text(DATASET)
    (tmp_path / "ssd").mkdir()
    config = tmp_path / "ssd" / "lite.py"
    config.write_text(LITE_CONFIG)
    read = read_config(config)
    assert read["train_dataloader"]["dataset"]["dataset"] == {"type": "CocoDataset", "data_root": "data/coco/"}
    assert read["model"]["backbone"]["norm_cfg"]["eps"] == 0.001 and read["dataset_type"] == "CocoDataset"
    assert read["model"]["data_preprocessor"]["std"] == [58.395, 57.12, 57.375]
    for text, phrases in (("x = {{os.system}}\n", ["lite.py:2", "holds code"]),
                          ("x = {{_base_.no_such}}\n", ["lite.py:2", "_base_.no_such", "names nothing"])):
        config.write_text("_base_ = ['../_base_/datasets/coco_detection.py']\n" + text)
        with pytest.raises(UserError) as refused:
            read_config(config)
        assert all(p in str(refused.value) for p in phrases), str(refused.value)


def test_networks_and_configs_that_do_not_fit_are_named(other_network, tmp_path):
    """A neck with a sixth extra level, an unknown preset, a config whose anchors do not fit the head, a preset
    for SSDLite (whose sizes are its config's): each one line naming the problem and the fix."""
    name, _, _, state = other_network
    if name == "ssd512":
        six = dict(state, **{"neck.extra_layers.5.0.conv.weight": torch.zeros(1)})
        cases = [(six, ImportOptions(), ["mmdetection", "6 extra levels", "SSD300's 4 or SSD512's 5"]),
                 (state, ImportOptions(preset="kitti"), ["--preset kitti", "coco and voc"])]
    else:
        wrong = tmp_path / "wrong.py"
        wrong.write_text(LITE_CONFIG.replace("_base_ = ['../_base_/datasets/coco_detection.py']", "")
                         .replace("[2, 3], [2, 3]]", "[2], [2]]").replace("{{_base_.dataset_type}}", "'x'")
                         .replace("{{_base_.data_root}}", "'y'"))
        cases = [(state, ImportOptions(config=wrong), ["[6, 6, 6, 6, 4, 4] boxes per cell", "--config"]),
                 (state, ImportOptions(preset="coco"), ["--preset coco", "no presets", "leave --preset out"])]
    for candidate, options, phrases in cases:
        with pytest.raises(UserError) as refused:
            import_state_dict(candidate, options)
        assert all(p in str(refused.value) for p in phrases), str(refused.value)
