"""The in-engine post-processing graph: decoding that matches the host post-processor, and the
EfficientNMS_TRT node TensorRT's parser turns into its plugin (not runnable here: checked structurally)."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest

from calibration.images import read_image
from export.efficient_nms import (
    NMS_INPUTS,
    NMS_OP,
    append_decoding,
    append_efficient_nms,
    save_with_plugin,
    without_plugin,
)
from export.onnx_model import load_onnx, read_metadata, write_metadata
from runtimes.metadata import NMS_OUTPUTS, RAW_OUTPUTS
from runtimes.postprocess import SSDPostprocessor, softmax
from runtimes.preprocess import Preprocessor
from tests.matching import matched


@pytest.fixture(scope="module")
def raw(demo_model):
    _, onnx_path, _ = demo_model
    model = load_onnx(onnx_path)
    return model, read_metadata(model, str(onnx_path))


def _images(voc_mini, count=6):
    return [read_image(p)[0] for p in sorted((voc_mini / "VOCdevkit" / "VOC2007" / "JPEGImages").glob("*.jpg"))[:count]]


def test_decoded_graph_gives_the_host_post_processors_detections(raw, voc_mini):
    model, meta = raw
    decoded, decoded_meta = append_decoding(model, meta)
    write_metadata(decoded, decoded_meta)
    onnx.checker.check_model(decoded, full_check=True)
    raw_session = ort.InferenceSession(model.SerializeToString())
    dec_session = ort.InferenceSession(decoded.SerializeToString())
    host_raw, host_decoded = SSDPostprocessor(meta), SSDPostprocessor(decoded_meta)
    total = 0
    for image in _images(voc_mini):
        x = Preprocessor(meta)(image)
        a = host_raw(dict(zip(RAW_OUTPUTS, raw_session.run(None, {"images": x}))), image.shape[:2])
        b = host_decoded(dict(zip(("boxes", "scores"), dec_session.run(None, {"images": x}))), image.shape[:2])
        hits, count = matched(a, b, min_score=0.05, iou=0.999)
        assert hits == count and len(a) == len(b)
        total += count
    assert total > 0


def test_efficient_nms_node_and_its_inputs(raw, voc_mini, tmp_path):
    model, meta = raw
    with_nms, nms_meta = append_efficient_nms(model, meta)
    assert nms_meta.output_format == "nms"
    nodes = [n for n in with_nms.graph.node if n.op_type == NMS_OP]
    assert len(nodes) == 1
    node = nodes[0]
    attrs = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
    assert attrs["plugin_version"] == b"1" and attrs["background_class"] == 0 and attrs["box_coding"] == 0
    assert attrs["score_activation"] == 0 and attrs["class_agnostic"] == 0
    assert attrs["max_output_boxes"] == meta.max_detections
    assert attrs["score_threshold"] == pytest.approx(meta.score_threshold)
    assert attrs["iou_threshold"] == pytest.approx(meta.iou_threshold)
    assert list(node.input) == list(NMS_INPUTS) and list(node.output) == list(NMS_OUTPUTS)
    outputs = {o.name: o.type.tensor_type for o in with_nms.graph.output}
    assert outputs["num_detections"].elem_type == onnx.TensorProto.INT32
    assert outputs["detection_classes"].elem_type == onnx.TensorProto.INT32
    assert [d.dim_value for d in outputs["detection_boxes"].shape.dim] == [1, meta.max_detections, 4]

    # Everything before the plugin is standard ONNX: checked, and equal to the host's decoding.
    cut = without_plugin(with_nms)
    onnx.checker.check_model(cut, full_check=True)
    session = ort.InferenceSession(cut.SerializeToString())
    raw_session = ort.InferenceSession(model.SerializeToString())
    host = SSDPostprocessor(meta)
    image = _images(voc_mini, 1)[0]
    x = Preprocessor(meta)(image)
    boxes, scores = session.run(None, {"images": x})
    offsets, logits = raw_session.run(None, {"images": x})
    np.testing.assert_allclose(scores[0], softmax(logits[0]), rtol=1e-5, atol=1e-6)
    everything = np.arange(offsets.shape[1])
    np.testing.assert_allclose(boxes[0], host._decode(offsets[0], everything), rtol=1e-5, atol=1e-3)

    write_metadata(with_nms, nms_meta)
    out = tmp_path / "nms.onnx"
    save_with_plugin(with_nms, out)
    assert read_metadata(load_onnx(out), str(out)).output_format == "nms"


def test_host_post_processor_reads_efficient_nms_outputs(raw):
    """The "nms" output form (what an engine with --nms engine returns) scaled back to the image."""
    _, meta = raw
    post = SSDPostprocessor(meta.replace(output_format="nms"))
    k = meta.max_detections
    boxes = np.zeros((1, k, 4), np.float32)
    boxes[0, :3] = [[10, 20, 110, 220], [0, 0, 320, 320], [-5, 300, 40, 330]]
    scores = np.zeros((1, k), np.float32)
    scores[0, :3] = [0.9, 0.5, 0.3]
    classes = np.zeros((1, k), np.int32)
    classes[0, :3] = [1, 2, 3]
    dets = post({"num_detections": np.array([[3]], np.int32), "detection_boxes": boxes,
                 "detection_scores": scores, "detection_classes": classes}, (640, 960))
    assert len(dets) == 3 and list(dets.labels) == [1, 2, 3]
    np.testing.assert_allclose(dets.boxes[0], [30, 40, 330, 440])
    np.testing.assert_allclose(dets.boxes[2], [0, 600, 120, 640])  # clipped to the input first
    assert dets.names[0] == meta.class_names[1]
