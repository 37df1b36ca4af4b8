"""How much each quantized layer of a Q/DQ ONNX model loses against FP32, measured with ONNX Runtime.

For every quantized Conv (named as in the ONNX file) two signal-to-quantization-noise ratios (SQNR, dB;
higher is better) over a few calibration frames:

- ``alone_sqnr_db``: the layer's own quantization. The FP32 model is run with, beside each Conv, a copy of
  it fed the FP32 input through the Q/DQ model's own QuantizeLinear/DequantizeLinear pair and the Q/DQ
  model's int8 weights; the copy's output is compared with the Conv's: the error that keeping the layer
  in float removes, free of what earlier layers did.
- ``in_model_sqnr_db``: the layer's output in the Q/DQ model against the FP32 model's, every earlier
  layer's error included (what ONNX Runtime's ``qdq_loss_debug`` calls the cross-model error).

Layers are ranked by ``float_gain_db``: how much the network outputs' SQNR rises when that layer alone is
back in float (its float input and weights; every other layer's quantization unchanged). A layer's own
error and its effect disagree where later layers damp it: on OpenVINO's INT8 of the demo model the SE
gates' 1x1 convs have the lowest own SQNR and no measurable effect.

:func:`output_sqnr_db` measures a whole model's network outputs against FP32 the same way.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Sequence

import numpy as np

from calibration.stream import CalibrationSet, CalibrationStream
from runtimes.metadata import INPUT_NAME, ModelMetadata
from runtimes.preprocess import Preprocessor

# The copies' output names: the Conv's output name with this suffix.
ALONE_SUFFIX = "__quantized_alone"


@dataclass
class LayerError:
    name: str  # the Conv node's name in the ONNX file
    alone_sqnr_db: float
    in_model_sqnr_db: float
    float_gain_db: float = 0.0  # how much the network outputs' SQNR rises with this layer alone in float


class SignalNoise:
    """Running signal and noise energies of one tensor over frames."""

    def __init__(self) -> None:
        self.signal = 0.0
        self.noise = 0.0

    def add(self, reference: np.ndarray, other: np.ndarray) -> None:
        reference = reference.astype(np.float64)
        self.signal += float(np.square(reference).sum())
        self.noise += float(np.square(reference - other.astype(np.float64)).sum())

    def sqnr_db(self) -> float:
        if self.noise == 0.0:
            return math.inf
        return 10.0 * math.log10(max(self.signal, 1e-30) / self.noise)


def sensitivity_frames(images: CalibrationSet, meta: ModelMetadata, count: int = 32) -> List[np.ndarray]:
    """The first ``count`` calibration images, (1, 3, H, W) float32 each as the ONNX model takes them."""
    stream = CalibrationStream(images, Preprocessor(meta), limit=count)
    return list(stream.samples())


def quantized_convs(model) -> List[str]:
    """Names of the Conv nodes of a Q/DQ ``onnx.ModelProto`` whose data input comes from a DequantizeLinear."""
    producers = {o: n for n in model.graph.node for o in n.output}
    names = []
    for node in model.graph.node:
        if node.op_type == "Conv":
            data = producers.get(node.input[0])
            if data is not None and data.op_type == "DequantizeLinear":
                names.append(node.name)
    return names


def _session(model):
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 3
    # Basic graph optimizations: the same outputs as ORT_ENABLE_ALL on the demo Q/DQ model (bit-identical) in
    # two thirds of the session set-up and half the run time, which a ranking pays once per layer.
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
    return ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])


def _expose(model, names: Sequence[str]) -> None:
    from onnx import TensorProto, helper

    present = {o.name for o in model.graph.output}
    for name in names:
        if name not in present:
            model.graph.output.append(helper.make_tensor_value_info(name, TensorProto.FLOAT, None))


def _with_alone_copies(fp32, qdq, layers: Sequence[str]):
    """``fp32`` plus, per Conv in ``layers``, a copy fed Q/DQ'd FP32 input and the Q/DQ model's weights."""
    import copy

    from onnx import helper

    model = copy.deepcopy(fp32)
    q_init = {i.name: i for i in qdq.graph.initializer}
    q_producers = {o: n for n in qdq.graph.node for o in n.output}
    q_nodes = {n.name: n for n in qdq.graph.node}
    have = {i.name for i in model.graph.initializer}
    for name in layers:
        conv = q_nodes[name]
        data_dq = q_producers[conv.input[0]]
        data_q = q_producers[data_dq.input[0]]
        weight_dq = q_producers[conv.input[1]]
        prefix = conv.output[0] + ALONE_SUFFIX
        for tensor in list(data_q.input[1:]) + list(weight_dq.input) + list(conv.input[2:]):  # + the bias
            if tensor in q_init and tensor not in have:
                model.graph.initializer.append(q_init[tensor])
                have.add(tensor)
        model.graph.node.extend([
            helper.make_node("QuantizeLinear", [data_q.input[0], *data_q.input[1:]], [prefix + "_q"],
                             name=prefix + "_Q"),
            helper.make_node("DequantizeLinear", [prefix + "_q", *data_dq.input[1:]], [prefix + "_x"],
                             name=prefix + "_DQ"),
            helper.make_node("DequantizeLinear", list(weight_dq.input), [prefix + "_w"], name=prefix + "_WDQ",
                             axis=next((a.i for a in weight_dq.attribute if a.name == "axis"), 1)),
        ])
        alone = helper.make_node("Conv", [prefix + "_x", prefix + "_w", *conv.input[2:]], [prefix],
                                 name=prefix + "_Conv")
        alone.attribute.extend(conv.attribute)
        model.graph.node.append(alone)
    # A QuantizeLinear's output type follows its zero point (int8); nodes appended at the end are in
    # topological order already, since their inputs all exist earlier in the graph.
    return model


def layer_errors(fp32_path: Path, qdq_path: Path, frames: Sequence[np.ndarray],
                 show_progress: bool = True) -> List[LayerError]:
    """Both SQNRs of every quantized Conv of ``qdq_path`` against ``fp32_path`` (the model it was made
    from) over ``frames``, and ``float_gain_db``; worst (keeping it in float helps the outputs most) first."""
    from calibration.progress import progress
    from export.onnx_model import load_onnx

    fp32, qdq = load_onnx(fp32_path), load_onnx(qdq_path)
    layers = quantized_convs(qdq)
    outputs = {n.name: n.output[0] for n in qdq.graph.node if n.name in set(layers)}
    augmented = _with_alone_copies(fp32, qdq, layers)
    _expose(augmented, [outputs[n] for n in layers] + [outputs[n] + ALONE_SUFFIX for n in layers])
    exposed_qdq = qdq
    _expose(exposed_qdq, [outputs[n] for n in layers])
    reference, quantized = _session(augmented), _session(exposed_qdq)
    alone = {n: SignalNoise() for n in layers}
    in_model = {n: SignalNoise() for n in layers}
    wanted = [outputs[n] for n in layers]
    for frame in progress(frames, len(frames), "per-layer error", show_progress):
        ref = dict(zip(wanted + [w + ALONE_SUFFIX for w in wanted],
                       reference.run(wanted + [w + ALONE_SUFFIX for w in wanted], {INPUT_NAME: frame})))
        got = dict(zip(wanted, quantized.run(wanted, {INPUT_NAME: frame})))
        for name in layers:
            out = outputs[name]
            alone[name].add(ref[out], ref[out + ALONE_SUFFIX])
            in_model[name].add(ref[out], got[out])
    errors = [LayerError(n, alone[n].sqnr_db(), in_model[n].sqnr_db()) for n in layers]
    # The ranking: what keeping each layer alone in float does to the network outputs (its own error's
    # reach: a low-SQNR layer whose error the next layers damp, e.g. an SE gate's, matters little).
    network = [o.name for o in fp32.graph.output]
    reference_outputs = _outputs(_session(fp32), frames, network)
    base = mean_sqnr_db(reference_outputs, _outputs(quantized, frames, network))
    for error in progress(errors, len(errors), "per-layer effect on the outputs", show_progress):
        variant = _session(_bypassed(load_onnx(qdq_path), fp32, error.name))
        error.float_gain_db = mean_sqnr_db(reference_outputs, _outputs(variant, frames, network)) - base
    return sorted(errors, key=lambda e: -e.float_gain_db)


def _outputs(session, frames: Sequence[np.ndarray], names: Sequence[str]) -> List[List[np.ndarray]]:
    """The outputs ``names`` (the network's own) for every frame."""
    return [session.run(list(names), {INPUT_NAME: frame}) for frame in frames]


def mean_sqnr_db(reference: Sequence[Sequence[np.ndarray]],
                 other: Sequence[Sequence[np.ndarray]]) -> float:
    """Mean over outputs (dB) of each output's SQNR over all frames."""
    energies = [SignalNoise() for _ in reference[0]]
    for ref_frame, other_frame in zip(reference, other):
        for energy, ref, got in zip(energies, ref_frame, other_frame):
            energy.add(ref, got)
    return float(np.mean([e.sqnr_db() for e in energies]))


def _bypassed(qdq, fp32, name: str):
    """``qdq`` (modified) with Conv ``name`` reading its float input and the FP32 model's float weights: that
    layer alone back in float, every other layer's quantization as it was."""
    conv = next(n for n in qdq.graph.node if n.name == name)
    producers = {o: n for n in qdq.graph.node for o in n.output}
    data_q = producers[producers[conv.input[0]].input[0]]
    float_conv = next(n for n in fp32.graph.node if n.name == name)
    weight = next(i for i in fp32.graph.initializer if i.name == float_conv.input[1])
    copy = qdq.graph.initializer.add()
    copy.CopyFrom(weight)
    copy.name = weight.name + "__float"
    conv.input[0] = data_q.input[0]
    conv.input[1] = copy.name
    return qdq  # the DequantizeLinear nodes it no longer reads are left unused


def output_sqnr_db(fp32_path: Path, other_path: Path, frames: Sequence[np.ndarray]) -> Dict[str, float]:
    """SQNR (dB) of each network output of ``other_path`` against ``fp32_path`` over ``frames``, and
    ``"mean"``, their mean in dB (the outputs differ in scale, so their energies are not summed)."""
    from export.onnx_model import load_onnx

    reference, other = _session(load_onnx(fp32_path)), _session(load_onnx(other_path))
    names = [o.name for o in reference.get_outputs()]
    energies = {n: SignalNoise() for n in names}
    for frame in frames:
        for name, ref, got in zip(names, reference.run(names, {INPUT_NAME: frame}),
                                  other.run(names, {INPUT_NAME: frame})):
            energies[name].add(ref, got)
    result = {n: e.sqnr_db() for n, e in energies.items()}
    result["mean"] = float(np.mean([result[n] for n in names]))
    return result
