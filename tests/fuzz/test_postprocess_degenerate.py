"""The shared post-processor on degenerate network outputs (NaN, inf, huge values, tied scores, wrong shapes)
and its batch entry point, against torchvision's ``postprocess_detections`` where results are defined."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
from torchvision.models.detection.image_list import ImageList

from export.architectures import build_model, describe
from runtimes.errors import UserError
from runtimes.metadata import VOC_CLASSES
from runtimes.postprocess import SSDPostprocessor, softmax_by_class, softmax_by_class_batch

ARCH = "ssdlite320_mobilenet_v3_large"


@pytest.fixture(scope="module")
def lite():
    """(torch model, metadata, anchors, image list) of a randomly initialised SSDLite320 with 21 classes."""
    torch.manual_seed(0)
    model = build_model(ARCH, 21).eval()
    meta = describe(model, ARCH, list(VOC_CLASSES))
    x = torch.zeros(1, 3, meta.input_height, meta.input_width)
    with torch.no_grad():
        features = list(model.backbone(x).values())
        head = model.head(features)
    images = ImageList(x, [(meta.input_height, meta.input_width)])
    anchors = model.anchor_generator(images, features)
    return model, meta, anchors, images, {k: v.numpy() for k, v in head.items()}


def torchvision_detections(model, anchors, images, raw):
    head = {k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in raw.items()}
    with torch.no_grad():
        return model.postprocess_detections(head, anchors, images.image_sizes)[0]


def assert_valid(dets, meta, size, iou_threshold):
    """Finite boxes inside the image, scores in (threshold, 1], sorted, known labels, NMS respected."""
    height, width = size
    assert dets.boxes.dtype == np.float32 and np.isfinite(dets.boxes).all()
    assert (dets.boxes[:, 0::2] >= 0).all() and (dets.boxes[:, 0::2] <= width).all()
    assert (dets.boxes[:, 1::2] >= 0).all() and (dets.boxes[:, 1::2] <= height).all()
    assert np.isfinite(dets.scores).all() and (dets.scores <= 1.0).all()
    assert (np.diff(dets.scores) <= 0).all()
    assert ((dets.labels >= 1) & (dets.labels < meta.num_classes)).all()
    assert len(dets) <= meta.max_detections
    for label in np.unique(dets.labels):  # no two kept boxes of one class overlap beyond the NMS threshold
        b = dets.boxes[dets.labels == label].astype(np.float64)
        area = np.prod(np.clip(b[:, 2:] - b[:, :2], 0, None), axis=1)
        lt, rb = np.maximum(b[:, None, :2], b[None, :, :2]), np.minimum(b[:, None, 2:], b[None, :, 2:])
        inter = np.prod(np.clip(rb - lt, 0, None), axis=2)
        iou = inter / np.maximum(area[:, None] + area[None, :] - inter, 1e-12)
        np.fill_diagonal(iou, 0)
        assert iou.max(initial=0) <= iou_threshold + 1e-5


def spread(rng, n, scale=0.5, classes=21, batch=1):
    return {"cls_logits": rng.normal(0, scale, (batch, n, classes)).astype(np.float32),
            "bbox_regression": rng.normal(0, 1, (batch, n, 4)).astype(np.float32)}


def test_randomly_initialised_model_tied_scores_give_valid_detections(lite):
    model, meta, anchors, images, raw = lite
    size = (meta.input_height, meta.input_width)
    assert np.ptp(softmax_by_class(raw["cls_logits"][0])[1:]) < 1e-6  # the case: every score is 1/21
    ours, ref = SSDPostprocessor(meta)(raw, size), torchvision_detections(model, anchors, images, raw)
    assert len(ours) == len(ref["scores"]) == meta.max_detections  # which of the tied boxes is arbitrary
    np.testing.assert_allclose(ours.scores, ref["scores"].numpy(), rtol=1e-6)
    assert_valid(ours, meta, size, meta.iou_threshold)


@pytest.mark.parametrize("seed", range(3))
@pytest.mark.parametrize("collapsed", [False, True])
def test_near_uniform_distinct_scores_equal_torchvision(lite, seed, collapsed, monkeypatch):
    """Scores a hair apart, boxes near the anchors or (collapsed) all on one spot, so that NMS keeps one box
    per class and the ranked candidate set is used; the result is still torchvision's, box for box."""
    model, meta, anchors, images, _ = lite
    rng = np.random.default_rng(seed)
    n = anchors[0].shape[0]
    raw = {"cls_logits": rng.normal(0, 0.05, (1, n, 21)).astype(np.float32),
           "bbox_regression": rng.normal(0, 0.05, (1, n, 4)).astype(np.float32)}
    post = SSDPostprocessor(meta)
    if collapsed:  # offsets that decode every anchor to about the same 100 x 80 box in the middle
        target = np.array([160, 160], np.float32) + rng.normal(0, 2, (n, 2)).astype(np.float32)
        raw["bbox_regression"][0, :, :2] = 10 * (target - post._coder.anchor_ctr) / post._coder.anchor_wh
        raw["bbox_regression"][0, :, 2:] = 5 * np.log(np.array([100, 80], np.float32) / post._coder.anchor_wh)
    ranked = []
    original = SSDPostprocessor._ranked_candidates
    monkeypatch.setattr(SSDPostprocessor, "_ranked_candidates",
                        lambda self, fg: ranked.append(1) or original(self, fg))
    ours, ref = post(raw, (320, 320)), torchvision_detections(model, anchors, images, raw)
    assert bool(ranked) == collapsed
    assert len(ours) == len(ref["scores"])
    np.testing.assert_array_equal(ours.labels, ref["labels"].numpy())
    np.testing.assert_allclose(ours.boxes, ref["boxes"].numpy(), atol=1e-3)
    np.testing.assert_allclose(ours.scores, ref["scores"].numpy(), rtol=1e-5)


@pytest.mark.parametrize("poison", ["nan_logits", "inf_logits", "neg_inf_logits", "nan_boxes", "inf_boxes",
                                    "huge_logits", "huge_boxes", "all_nan", "all_equal"])
def test_degenerate_outputs_give_finite_detections_without_warnings(lite, poison):
    model, meta, anchors, images, _ = lite
    rng = np.random.default_rng(7)
    n = anchors[0].shape[0]
    raw = spread(rng, n, scale=2.0)
    logits, regression = raw["cls_logits"], raw["bbox_regression"]
    hit = rng.random(n) < 0.3  # a third of the anchors poisoned
    if poison == "nan_logits":
        logits[0, hit, 3] = np.nan
    elif poison == "inf_logits":
        logits[0, hit, 5] = np.inf
    elif poison == "neg_inf_logits":
        logits[0, hit] = -np.inf
    elif poison == "nan_boxes":
        regression[0, hit, rng.integers(0, 4)] = np.nan
    elif poison == "inf_boxes":
        regression[0, hit] = np.where(rng.random((hit.sum(), 4)) < 0.5, np.inf, -np.inf)
    elif poison == "huge_logits":
        logits[0, hit] = rng.choice([-3e38, 3e38], (hit.sum(), 21))
    elif poison == "huge_boxes":
        regression[0, hit] = rng.choice([-3e38, 3e38], (hit.sum(), 4))
    elif poison == "all_nan":
        logits[:], regression[:] = np.nan, np.nan
    elif poison == "all_equal":
        logits[:] = 1.5
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no RuntimeWarning from numpy either
        dets = SSDPostprocessor(meta)(raw, (480, 640))
    assert_valid(dets, meta, (480, 640), meta.iou_threshold)
    if poison in ("nan_logits", "inf_logits", "neg_inf_logits", "nan_boxes"):
        # The clean anchors' detections are still there: the same as with the poisoned anchors' logits at
        # -inf (no score passes), which is torchvision's answer for them.
        masked = {"cls_logits": np.where(hit[None, :, None], np.float32(-1e4), logits),
                  "bbox_regression": np.where(hit[None, :, None], np.float32(0), regression)}
        masked["cls_logits"][0, hit, 0] = 1e4  # background certain: no foreground score passes
        ref = torchvision_detections(model, anchors, images, masked)
        ours = SSDPostprocessor(meta)(masked, (320, 320))
        assert len(ref["scores"]) > 0
        if poison != "nan_boxes":  # (a NaN box's anchor still has its scores: it may fill a place)
            mine = SSDPostprocessor(meta)(raw, (320, 320))
            np.testing.assert_array_equal(mine.labels, ours.labels)
            np.testing.assert_allclose(mine.boxes, ref["boxes"].numpy(), atol=1e-3)
    if poison == "all_nan":
        assert len(dets) == 0
    if poison == "all_equal":
        assert len(dets) == meta.max_detections and np.allclose(dets.scores, 1 / 21)


def test_nan_scores_are_the_poisoned_anchors_removed(lite):
    """An anchor with a NaN logit scores 0 in every class; the other anchors' scores are unchanged."""
    rng = np.random.default_rng(3)
    logits = rng.normal(0, 2, (500, 21)).astype(np.float32)
    clean = softmax_by_class(logits)
    logits[::7, 4] = np.nan
    logits[1::7, 0] = np.inf
    logits[2::7] = -np.inf
    poisoned = softmax_by_class(logits)
    bad = np.zeros(500, bool)
    bad[::7] = bad[1::7] = bad[2::7] = True
    assert (poisoned[:, bad] == 0).all()
    np.testing.assert_array_equal(poisoned[:, ~bad], clean[:, ~bad])


def test_decoded_and_nms_formats_drop_non_finite_and_impossible_values(lite):
    _, meta, anchors, _, _ = lite
    n = anchors[0].shape[0]
    rng = np.random.default_rng(5)
    decoded = meta.replace(output_format="decoded")
    scores = rng.uniform(0, 0.2, (1, n, 21)).astype(np.float32)
    scores[0, :50, 2] = np.inf
    scores[0, 50:100, 3] = np.nan
    boxes = np.sort(rng.uniform(0, 1, (1, n, 2, 2)), axis=2).reshape(1, n, 4).astype(np.float32)
    boxes[0, 100:150] = np.nan
    dets = SSDPostprocessor(decoded)({"boxes": boxes, "scores": scores}, (240, 320))
    assert_valid(dets, decoded, (240, 320), decoded.iou_threshold)
    nms = meta.replace(output_format="nms")
    k = 10
    out = {"num_detections": np.array([[k + 5]], np.int32),  # more than K: garbage from a broken engine
           "detection_boxes": np.tile(np.array([10, 10, 50, 60], np.float32), (1, k, 1)),
           "detection_scores": np.linspace(0.9, 0.1, k, dtype=np.float32)[None],
           "detection_classes": np.array([[1, 2, 0, 21, -1, 3.5, 4, 5, 6, 7]], np.float32)}
    out["detection_scores"][0, 6] = np.nan
    out["detection_boxes"][0, 7, 2] = np.inf  # clipped to the edge: kept, finite
    out["detection_boxes"][0, 8, 0] = np.nan
    dets = SSDPostprocessor(nms)(out, (320, 320))
    assert dets.labels.tolist() == [1, 2, 5, 7]  # 0, 21, -1, 3.5 name no class; NaN score and box dropped
    assert np.isfinite(dets.boxes).all() and dets.boxes[2].tolist() == [10, 10, 320, 60]
    out["num_detections"] = np.array([[-3]], np.int32)
    assert len(SSDPostprocessor(nms)(out, (320, 320))) == 0


@pytest.mark.parametrize("broken", ["missing", "anchors", "classes", "rank", "batch"])
def test_outputs_of_the_wrong_shape_are_one_clear_error(lite, broken):
    _, meta, anchors, _, _ = lite
    n = anchors[0].shape[0]
    raw = spread(np.random.default_rng(0), n)
    if broken == "missing":
        del raw["bbox_regression"]
    elif broken == "anchors":
        raw["bbox_regression"] = raw["bbox_regression"][:, :-3]
    elif broken == "classes":
        raw["cls_logits"] = raw["cls_logits"][..., :6]
    elif broken == "rank":
        raw["cls_logits"] = raw["cls_logits"][0]
    elif broken == "batch":
        raw = {k: v[:0] for k, v in raw.items()}
    with pytest.raises(UserError, match="re-export it with export/export_onnx.py"):
        SSDPostprocessor(meta)(raw, (320, 320))


def test_batched_softmax_is_bit_identical_to_per_image():
    logits = np.random.default_rng(1).normal(0, 3, (4, 3234, 21)).astype(np.float32)
    logits[2, ::5, 1] = np.nan
    batched = softmax_by_class_batch(logits)
    for b in range(4):
        np.testing.assert_array_equal(batched[b], softmax_by_class(logits[b]))


@pytest.mark.parametrize("fmt", ["raw", "decoded", "nms"])
def test_batch_equals_one_call_per_image(lite, fmt):
    """``batch(outputs, sizes)`` gives what ``__call__(outputs, size, index)`` gives for each index, also past
    padding entries a fixed-batch model returns, on trained-like, near-uniform, tied and poisoned images."""
    model, meta, anchors, _, tied = lite
    n = anchors[0].shape[0]
    rng = np.random.default_rng(11)
    sizes = [(480, 640), (320, 320), (100, 900), (720, 1280), (240, 320)]
    meta = meta.replace(output_format=fmt)
    if fmt == "raw":
        outputs = spread(rng, n, scale=2.0, batch=6)  # 6: one padding entry after the five images
        outputs["cls_logits"][1] *= 0.02  # near-uniform
        outputs["cls_logits"][2] = tied["cls_logits"][0]
        outputs["cls_logits"][3, ::3, 4] = np.nan
        outputs["bbox_regression"][3, 1::3, 2] = np.inf
        outputs["cls_logits"][4] -= 8  # few scores pass: the one-round path
    elif fmt == "decoded":
        scores = rng.dirichlet(np.full(21, 0.3), (6, n)).astype(np.float32)
        boxes = np.sort(rng.uniform(0, 1, (6, n, 2, 2)), axis=2).reshape(6, n, 4).astype(np.float32)
        scores[1] = 1 / 21
        outputs = {"boxes": boxes, "scores": scores}
    else:
        k = 50
        outputs = {"num_detections": rng.integers(0, k + 1, (6, 1)).astype(np.int32),
                   "detection_boxes": np.sort(rng.uniform(0, 320, (6, k, 2, 2)), axis=2).reshape(6, k, 4),
                   "detection_scores": rng.uniform(0, 1, (6, k)).astype(np.float32),
                   "detection_classes": rng.integers(0, 22, (6, k)).astype(np.int32)}
    post = SSDPostprocessor(meta)
    batched = post.batch(outputs, sizes)
    assert len(batched) == len(sizes)
    assert any(len(d) for d in batched)
    for i, size in enumerate(sizes):
        single = post(outputs, size, i)
        np.testing.assert_array_equal(batched[i].boxes, single.boxes)
        np.testing.assert_array_equal(batched[i].scores, single.scores)
        np.testing.assert_array_equal(batched[i].labels, single.labels)
    assert post.batch(outputs, []) == []
    with pytest.raises(UserError, match="for 7 image"):
        post.batch(outputs, sizes + [(1, 1), (2, 2)])


def test_degenerate_and_batch_paths_agree_on_the_devices_numpy_1(lite, tmp_path):
    """The same detections from Debian's Python (numpy 1.x, as on JetPack) on tied, poisoned and batched outputs."""
    import json
    import subprocess
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    _, meta, anchors, _, tied = lite
    rng = np.random.default_rng(2)
    outputs = spread(rng, anchors[0].shape[0], scale=2.0, batch=3)
    outputs["cls_logits"][0] = tied["cls_logits"][0]
    outputs["cls_logits"][1, ::4, 2] = np.nan
    outputs["bbox_regression"][1, 1::4] = np.inf
    outputs["cls_logits"][2] *= 0.02
    np.savez(tmp_path / "raw.npz", **outputs)
    (tmp_path / "meta.json").write_text(meta.to_json())
    sizes = [(480, 640), (320, 320), (100, 900)]
    code = f"""
import json, numpy as np
from runtimes.metadata import ModelMetadata
from runtimes.postprocess import SSDPostprocessor
post = SSDPostprocessor(ModelMetadata.from_json(open({str(tmp_path / "meta.json")!r}).read()))
raw = dict(np.load({str(tmp_path / "raw.npz")!r}))
print(json.dumps({{"numpy": np.__version__, "dets": [[d.boxes.tolist(), d.scores.tolist(), d.labels.tolist()]
                                                  for d in post.batch(raw, {sizes!r})]}}))
"""
    try:
        result = subprocess.run(["/usr/bin/python3", "-c", code], cwd=root, capture_output=True, text=True,
                                timeout=120, env={"PYTHONPATH": str(root), "PATH": "/usr/bin:/bin"})
    except FileNotFoundError:
        pytest.skip("no /usr/bin/python3")
    assert result.returncode == 0, result.stderr[-2000:]
    got = json.loads(result.stdout)
    if not got["numpy"].startswith("1."):
        pytest.skip(f"the system numpy is {got['numpy']}, not 1.x")
    post = SSDPostprocessor(meta)
    for (boxes, scores, labels), size, i in zip(got["dets"], sizes, range(3)):
        expected = post(outputs, size, i)
        np.testing.assert_allclose(scores, expected.scores, rtol=1e-6)
        if i == 0:  # tied scores: which boxes win depends on numpy's sort internals, not on our code
            assert len(labels) == len(expected) == meta.max_detections
            continue
        assert labels == expected.labels.tolist() and len(labels) > 0
        np.testing.assert_allclose(scores, expected.scores, rtol=1e-6)
        np.testing.assert_allclose(boxes, expected.boxes, atol=1e-3)
