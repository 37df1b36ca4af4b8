"""Post-processing inside the OpenVINO IR (``--nms engine``): the IR returns final detections.

The graph gets the toolkit's in-graph decoding and softmax (the very ONNX nodes TensorRT engines get, from
export/efficient_nms.py) followed by OpenVINO's ``MulticlassNms``, which runs torchvision's algorithm: per
class, the scores above ``score_threshold``, the best ``topk_candidates`` of them, greedy NMS (suppress IoU
above ``iou_threshold``). The host post-processor then keeps the best ``max_detections`` of the survivors.
Why: at the model's own thresholds (score > 0.001, 300 detections) MulticlassNms costs a fraction of host
NMS per SSDLite320 frame, with the same detections; with untrained (near-uniform) scores it is the other way
round: every class fills its top-k and the host's best-first window stops earlier (figures in
docs/benchmark/openvino_latency.md).

Why the host makes the final cut: OpenVINO orders near-equal scores of different classes loosely (1e-5
apart, seen on real frames), so its own ``keep_top_k`` sometimes kept a lower-scoring box in place of the
300th; the host sorts the survivors by score exactly (a few hundred to a few thousand rows).
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any, Tuple

from export.efficient_nms import NMS_INPUTS, NMS_NODE_PREFIX
from runtimes.errors import UserError
from runtimes.metadata import NMS_OUTPUTS, ModelMetadata

# Node-name prefix of everything appended after the network: NNCF leaves these nodes unquantized.
SCOPE = NMS_NODE_PREFIX + "/"


def decoded_openvino_model(onnx_path: Path, meta: ModelMetadata) -> Any:
    """``onnx_path`` converted to OpenVINO with decoding and softmax appended: outputs :data:`NMS_INPUTS`,
    boxes (B, N, 4; x1, y1, x2, y2 in input pixels, clipped) and scores (B, N, C; probabilities)."""
    import openvino as ov

    from export.efficient_nms import append_efficient_nms, without_plugin
    from export.onnx_model import load_onnx

    with_plugin, _ = append_efficient_nms(load_onnx(onnx_path), meta)
    return ov.convert_model(io.BytesIO(without_plugin(with_plugin).SerializeToString()))


def append_multiclass_nms(model: Any, meta: ModelMetadata) -> Tuple[Any, ModelMetadata]:
    """``model`` (from :func:`decoded_openvino_model`, batch 1) ending in ``MulticlassNms``: outputs
    ``num_detections`` (1, 1) int32, ``detection_boxes`` (1, K, 4; corners in input pixels),
    ``detection_scores`` (1, K) and ``detection_classes`` (1, K) int32: every NMS survivor, K varying per
    frame (at most ``topk_candidates`` per class). Thresholds come from ``meta``; class 0 is the
    background."""
    import openvino as ov
    import openvino.opset13 as ops
    from openvino import opset9

    batch = model.input(0).get_partial_shape()[0]
    if not batch.is_static or batch.get_length() != 1:
        raise UserError("--nms engine on OpenVINO needs a batch-1 model: export it without --batch")
    # A model's output is its Result node's port: take what feeds each Result instead.
    boxes, scores = (model.output(name).get_node().input_value(0) for name in NMS_INPUTS)
    nms = opset9.multiclass_nms(
        boxes, ops.transpose(scores, ops.constant([0, 2, 1])), sort_result_type="score", output_type="i32",
        iou_threshold=float(meta.iou_threshold), score_threshold=float(meta.score_threshold),
        nms_top_k=int(meta.topk_candidates), keep_top_k=-1, background_class=0,  # -1: the host cuts
        nms_eta=1.0, normalized=True)  # normalized=True: plain IoU (False adds 1 to every width and height)
    nms.set_friendly_name(SCOPE + "multiclass_nms")
    selected, _indices, count = nms.outputs()  # (M, 6): class, score, x1, y1, x2, y2; M per batch image

    def columns(start: int, stop: int, shape: list) -> Any:
        piece = ops.slice(selected, ops.constant([start]), ops.constant([stop]), ops.constant([1]),
                          ops.constant([1]))
        return ops.reshape(piece, ops.constant(shape), special_zero=False)

    outputs = {
        NMS_OUTPUTS[0]: ops.reshape(count, ops.constant([1, 1]), special_zero=False),
        NMS_OUTPUTS[1]: columns(2, 6, [1, -1, 4]),
        NMS_OUTPUTS[2]: columns(1, 2, [1, -1]),
        NMS_OUTPUTS[3]: ops.convert(columns(0, 1, [1, -1]), ov.Type.i32),
    }
    results = []
    for name, node in outputs.items():
        node.set_friendly_name(SCOPE + name)
        result = ops.result(node)
        result.output(0).get_tensor().set_names({name})
        results.append(result)
    return ov.Model(results, model.get_parameters(), model.get_friendly_name()), meta.replace(output_format="nms")
