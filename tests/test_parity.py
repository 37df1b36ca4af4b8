"""Our exported ONNX + shared post-processor against torchvision's own SSD, per architecture."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch
from torchvision.models.detection.image_list import ImageList

from calibration.images import read_image
from runtimes.anchors import count, default_boxes
from runtimes.loader import load_detector
from tests.matching import assert_same_detections, box_iou
from tests.reference_models import voc_mini_images

ARCHS = ["ssdlite320_mobilenet_v3_large", "ssd300_vgg16", "ssd512_vgg16"]


def torchvision_reference(model, blob: np.ndarray, image_size):
    """torchvision's SSD on an already preprocessed input: its backbone, head, anchors, post-processing
    and box rescaling to ``image_size``, everything but its own resize/normalise. Also returns the raw
    head outputs."""
    x = torch.from_numpy(blob)
    with torch.no_grad():
        features = list(model.backbone(x).values())
        head = model.head(features)
        images = ImageList(x, [tuple(x.shape[-2:])])
        anchors = model.anchor_generator(images, features)
        dets = model.postprocess_detections(head, anchors, images.image_sizes)
        dets = model.transform.postprocess(dets, images.image_sizes, [image_size])[0]
    raw = {k: v.numpy() for k, v in head.items()}
    return {k: v.numpy() for k, v in dets.items()}, raw


@pytest.mark.parametrize("arch", ARCHS)
def test_anchors_equal_torchvision(exported, arch):
    model, _, onnx_path = exported(arch)
    detector = load_detector(onnx_path)
    meta = detector.meta
    size = (meta.input_height, meta.input_width)
    x = torch.zeros(1, 3, *size)
    with torch.no_grad():
        features = list(model.backbone(x).values())
    theirs = model.anchor_generator(ImageList(x, [size]), features)[0].numpy()
    ours = default_boxes(meta.anchors, *size)
    assert ours.shape == theirs.shape == (count(meta.anchors), 4)
    np.testing.assert_array_equal(ours, theirs)


def test_ssd512_has_24564_default_boxes(exported):
    _, _, onnx_path = exported("ssd512_vgg16")
    meta = load_detector(onnx_path).meta
    assert meta.input_height == meta.input_width == 512
    assert len(meta.anchors.feature_maps) == 7 and meta.anchors.feature_maps[-1] == [1, 1]
    assert count(meta.anchors) == 24564


@pytest.mark.parametrize("arch", ARCHS)
def test_postprocessor_equals_torchvision(exported, arch):
    """The same raw outputs through both post-processors, boxes scaled back to the original image."""
    model, _, onnx_path = exported(arch)
    detector = load_detector(onnx_path)
    for path in voc_mini_images()[:4]:
        image, _ = read_image(path)
        ref, raw = torchvision_reference(model, detector.preprocessor(image), image.shape[:2])
        assert_same_detections(detector.postprocessor(raw, image.shape[:2]), ref)


@pytest.mark.parametrize("arch", ARCHS)
def test_onnx_detections_equal_torchvision_on_same_input(exported, arch):
    """ONNX Runtime + our post-processor against ``model.eval()`` on the same preprocessed input, boxes in
    that input's pixels."""
    model, _, onnx_path = exported(arch)
    detector = load_detector(onnx_path)
    compared = 0
    for path in voc_mini_images()[:4]:
        image, _ = read_image(path)
        blob = detector.preprocessor(image)
        size = blob.shape[-2:]
        ref, _ = torchvision_reference(model, blob, size)
        ours = detector.postprocessor(detector.infer(blob), size)
        assert_same_detections(ours, ref)
        compared += len(ours)
    assert compared > 20


def test_end_to_end_matches_torchvision_on_voc_images(demo_model, voc_mini):
    """Full pipelines, each with its own resize (ours: OpenCV on uint8; torchvision's: float), on the real
    VOC images and the demo test images, with the trained demo model.

    Random weights cannot be used here: an untrained SSD is chaotic, and the half-grey-level rounding of a
    uint8 resize reshuffles its NMS (measured on SSD300: 949 of 1600 boxes matched; that is why the
    random-weight parity tests above share one preprocessed input).
    """
    model, onnx_path, data_root = demo_model
    detector = load_detector(onnx_path)
    images = voc_mini_images() + sorted((data_root / "VOCdevkit/VOC2007/JPEGImages").glob("*.jpg"))[-40:]
    matched = total = 0
    for path in images:
        image, _ = read_image(path)
        rgb = torch.from_numpy(cv2.cvtColor(image, cv2.COLOR_BGR2RGB).transpose(2, 0, 1).copy()).float() / 255
        with torch.no_grad():
            ref = model([rgb])[0]
        ours = detector(image)
        keep = ref["scores"].numpy() >= 0.3
        ref_boxes, ref_labels = ref["boxes"].numpy()[keep], ref["labels"].numpy()[keep]
        total += len(ref_boxes)
        if not len(ref_boxes) or not len(ours):
            continue
        iou = box_iou(ref_boxes, ours.boxes)
        same = ref_labels[:, None] == ours.labels[None, :]
        matched += int(((iou >= 0.99) & same).any(axis=1).sum())
    assert total > 50
    assert matched / total >= 0.99, f"{matched}/{total} matched"
