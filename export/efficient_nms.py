"""ONNX graph surgery for in-engine post-processing: box decoding, softmax and ``EfficientNMS_TRT``.

``append_decoding`` turns a "raw" model (box-coder offsets + logits) into a "decoded" one (normalised
corners + probabilities), the same maths as the host post-processor (torchvision's ``BoxCoder.decode_single``
as defined in runtimes/box_coder.py, clipped to the input). ``append_efficient_nms`` then adds
TensorRT's EfficientNMS plugin so the engine returns final detections (the "nms" output format). The
plugin picks its candidates by score over all classes rather than top-k per class, so on crowded images
its result may differ from host NMS in the last, lowest-scoring detections.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, List, Tuple

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from export.onnx_model import save_checked
from runtimes.box_coder import BBOX_XFORM_CLIP, BoxCoder
from runtimes.errors import UserError
from runtimes.metadata import DECODED_OUTPUTS, NMS_OUTPUTS, RAW_OUTPUTS, ModelMetadata

NMS_OP = "EfficientNMS_TRT"
NMS_INPUTS = ("nms_input_boxes", "nms_input_scores")  # (B, N, 4) corners in input pixels, (B, N, C)
NMS_NODE_PREFIX = "nms"  # names of the nodes append_efficient_nms adds: "nms/..."


class _Graph:
    """Appends nodes and constants with unique names."""

    def __init__(self, model: onnx.ModelProto, prefix: str) -> None:
        self.graph = model.graph
        self.prefix = prefix
        self.count = 0

    def name(self, hint: str) -> str:
        self.count += 1
        return f"{self.prefix}/{hint}_{self.count}"

    def const(self, hint: str, value: np.ndarray) -> str:
        name = self.name(hint)
        self.graph.initializer.append(numpy_helper.from_array(np.ascontiguousarray(value), name))
        return name

    def op(self, op_type: str, inputs: List[str], hint: str, **attrs: Any) -> str:
        out = self.name(hint)
        self.graph.node.append(helper.make_node(op_type, inputs, [out], name=out + "_node", **attrs))
        return out


def _output_names(model: onnx.ModelProto) -> List[str]:
    return [o.name for o in model.graph.output]


def _batch_dim(model: onnx.ModelProto) -> "str | int":
    dim = model.graph.output[0].type.tensor_type.shape.dim[0]
    return dim.dim_value if dim.HasField("dim_value") else (dim.dim_param or "batch")


def _pixel_boxes(g: _Graph, model: onnx.ModelProto, meta: ModelMetadata) -> Tuple[str, str]:
    """Tensor names of clipped corner boxes in input pixels (B, N, 4) and class probabilities (B, N, C)."""
    width, height = meta.input_width, meta.input_height
    scale = np.array([width, height, width, height], dtype=np.float32)
    if meta.output_format == "decoded":
        boxes, scores = DECODED_OUTPUTS
        return g.op("Mul", [boxes, g.const("pixel_scale", scale)], "pixel_boxes"), scores
    if meta.output_format != "raw" or meta.anchors is None:
        raise UserError(f"in-graph decoding needs a raw or decoded model, not '{meta.output_format}'")
    offsets, logits = RAW_OUTPUTS
    coder = BoxCoder.for_model(meta)  # the host post-processor's anchors, weights and clamp
    scores = g.op("Softmax", [logits], "scores", axis=-1)
    rel = g.op("Div", [offsets, g.const("coder_weights", coder.weights)], "rel")
    axes, two, four, zero = (g.const(n, np.array([v], np.int64)) for n, v in
                             (("axis", 2), ("two", 2), ("four", 4), ("zero", 0)))
    d_ctr = g.op("Slice", [rel, zero, two, axes], "d_ctr")
    d_size = g.op("Min", [g.op("Slice", [rel, two, four, axes], "d_size"),
                          g.const("xform_clip", np.array(BBOX_XFORM_CLIP, np.float32))], "d_size_clipped")
    wh = g.const("anchor_wh", coder.anchor_wh)
    ctr = g.op("Add", [g.op("Mul", [d_ctr, wh], "ctr_shift"), g.const("anchor_ctr", coder.anchor_ctr)], "ctr")
    size = g.op("Mul", [g.op("Exp", [d_size], "exp"), wh], "size")
    half = g.op("Mul", [size, g.const("half", np.array(0.5, np.float32))], "half")
    corners = g.op("Concat", [g.op("Sub", [ctr, half], "top_left"), g.op("Add", [ctr, half], "bottom_right")],
                   "corners", axis=2)
    clipped = g.op("Min", [g.op("Max", [corners, g.const("lower", np.zeros(4, np.float32))], "clip_low"),
                           g.const("upper", scale)], "pixel_boxes")
    return clipped, scores


def _replace_outputs(model: onnx.ModelProto, outputs: List[onnx.ValueInfoProto]) -> None:
    del model.graph.output[:]
    model.graph.output.extend(outputs)


def append_decoding(model: onnx.ModelProto, meta: ModelMetadata) -> Tuple[onnx.ModelProto, ModelMetadata]:
    """A copy of ``model`` whose outputs are ``boxes`` (B, N, 4; normalised x1, y1, x2, y2) and ``scores``
    (B, N, C; probabilities): the "decoded" output format."""
    if meta.output_format != "raw":
        raise UserError(f"the model's outputs are already '{meta.output_format}'")
    model = _copy(model, list(RAW_OUTPUTS))
    g = _Graph(model, "decode")
    pixels, scores = _pixel_boxes(g, model, meta)
    inv = np.array([1 / meta.input_width, 1 / meta.input_height] * 2, dtype=np.float32)
    boxes = g.op("Mul", [pixels, g.const("inv_scale", inv)], "normalised")
    n_anchors = model.graph.output[0].type.tensor_type.shape.dim[1]
    n = n_anchors.dim_value or "anchors"
    batch = _batch_dim(model)
    g.graph.node.append(helper.make_node("Identity", [boxes], [DECODED_OUTPUTS[0]], name="decoded_boxes"))
    g.graph.node.append(helper.make_node("Identity", [scores], [DECODED_OUTPUTS[1]], name="decoded_scores"))
    _replace_outputs(model, [
        helper.make_tensor_value_info(DECODED_OUTPUTS[0], TensorProto.FLOAT, [batch, n, 4]),
        helper.make_tensor_value_info(DECODED_OUTPUTS[1], TensorProto.FLOAT, [batch, n, meta.num_classes])])
    return model, meta.replace(output_format="decoded")


def append_efficient_nms(model: onnx.ModelProto, meta: ModelMetadata) -> Tuple[onnx.ModelProto, ModelMetadata]:
    """A copy of ``model`` ending in ``EfficientNMS_TRT``: outputs ``num_detections`` (B, 1) int32,
    ``detection_boxes`` (B, K, 4; x1, y1, x2, y2 in input pixels), ``detection_scores`` (B, K) and
    ``detection_classes`` (B, K) int32 with K = the metadata's ``max_detections``. The thresholds come from
    the metadata; class 0 is the background."""
    expected = list(RAW_OUTPUTS if meta.output_format == "raw" else DECODED_OUTPUTS)
    model = _copy(model, expected)
    g = _Graph(model, NMS_NODE_PREFIX)
    pixels, scores = _pixel_boxes(g, model, meta)
    # Named inputs to the plugin, so tools and tests can expose and check them.
    g.graph.node.append(helper.make_node("Identity", [pixels], [NMS_INPUTS[0]], name="nms_boxes"))
    g.graph.node.append(helper.make_node("Identity", [scores], [NMS_INPUTS[1]], name="nms_scores"))
    batch, k = _batch_dim(model), int(meta.max_detections)
    g.graph.node.append(helper.make_node(
        NMS_OP, list(NMS_INPUTS), list(NMS_OUTPUTS), name="efficient_nms",
        plugin_version="1", background_class=0, max_output_boxes=k,
        score_threshold=float(meta.score_threshold), iou_threshold=float(meta.iou_threshold),
        score_activation=0, class_agnostic=0, box_coding=0))
    _replace_outputs(model, [
        helper.make_tensor_value_info(NMS_OUTPUTS[0], TensorProto.INT32, [batch, 1]),
        helper.make_tensor_value_info(NMS_OUTPUTS[1], TensorProto.FLOAT, [batch, k, 4]),
        helper.make_tensor_value_info(NMS_OUTPUTS[2], TensorProto.FLOAT, [batch, k]),
        helper.make_tensor_value_info(NMS_OUTPUTS[3], TensorProto.INT32, [batch, k])])
    return model, meta.replace(output_format="nms")


def _copy(model: onnx.ModelProto, expected_outputs: List[str]) -> onnx.ModelProto:
    names = _output_names(model)
    if names != expected_outputs:
        raise UserError(f"expected the outputs {expected_outputs}, the model has {names}; re-export it with "
                        "export/export_onnx.py")
    copy = onnx.ModelProto()
    copy.CopyFrom(model)
    return copy


def without_plugin(model: onnx.ModelProto) -> onnx.ModelProto:
    """``model`` cut before ``EfficientNMS_TRT``, its outputs being the plugin's inputs: standard ONNX that
    the checker and ONNX Runtime accept (neither knows TensorRT's plugin)."""
    batch = _batch_dim(model)
    cut = onnx.ModelProto()
    cut.CopyFrom(model)
    plugin = [n for n in cut.graph.node if n.op_type == NMS_OP]
    if len(plugin) != 1:
        raise ValueError(f"expected one {NMS_OP} node, found {len(plugin)}")
    cut.graph.node.remove(plugin[0])
    _replace_outputs(cut, [helper.make_tensor_value_info(NMS_INPUTS[0], TensorProto.FLOAT, [batch, None, 4]),
                           helper.make_tensor_value_info(NMS_INPUTS[1], TensorProto.FLOAT, [batch, None, None])])
    return cut


def save_with_plugin(model: onnx.ModelProto, output: "str | Path") -> None:
    """Check everything but the plugin node with the ONNX checker, then write ``model`` atomically."""
    save_checked(model, Path(output), checked=without_plugin(model))
