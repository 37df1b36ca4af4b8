"""A copy of the demo model that per-tensor INT8 cannot represent at chosen layers, whatever the CPU.

Each chosen Conv reads one extra input channel holding a large constant, through zero weights: its FP32
output is unchanged (0 * OUTLIER is 0 exactly, in FP16 too), but calibration sees the constant in the
tensor the Conv reads, so that tensor's single int8 scale is OUTLIER / 127 and every real value in it
rounds to 0. The Conv's output falls to its bias. Keeping that Conv in float restores it exactly. How much
mAP is lost therefore follows from the construction, not from a CPU's INT8 rounding, which moves the demo
model's mAP by tenths of a point (docs/int8.md, "Tests on any CPU").

The chosen layers are the last 1x1 Convs of the classification and regression heads on the largest feature
map (20x20, 2400 of the 3234 anchors): they read ReLU6 outputs (at most 6), lie on parallel branches (each
one's damage shows, and is undone, whatever the other's state) and together hold most of the detections.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Sequence

import numpy as np
from onnx import helper, numpy_helper

from export.onnx_model import load_onnx, save_checked

# The inputs read are ReLU6 outputs (0..6): with 6000 in the tensor the int8 step is 47, 160 times the
# largest real value's 6/127-wide step, so every real value rounds to 0. FP16-safe (below 65504) for a
# TensorRT build that runs the float layers in FP16.
OUTLIER = 6000.0
HEAD_CONVS = ("/head/classification_head/module_list.0/module_list.0.1/Conv",
              "/head/regression_head/module_list.0/module_list.0.1/Conv")
# An --max-map-drop (VOC07 mAP points) for the model with both HEAD_CONVS fed the outlier. Its plain Q/DQ model
# loses a large share of the mAP, and with either head back in float still several times this budget (the
# other head's anchors give nothing right); with both in float it is the demo model's own INT8 drop, tenths
# of a point, which is all that varies between CPUs (figures in docs/int8.md, "Tests on any CPU"). An order
# of magnitude from both: on any CPU the gate must keep exactly those two layers, and one cannot meet it.
GATE_BUDGET = 10.0


def with_outlier_channel(source: Path, output: Path, convs: Sequence[str] = HEAD_CONVS,
                         outlier: float = OUTLIER) -> Path:
    """Write to ``output`` ``source`` (an exported ONNX with its metadata) with ``convs`` (group 1) each
    reading an extra channel of ``outlier`` (far above anything they read) through zero weights."""
    model = load_onnx(source)
    graph = model.graph
    weights = {i.name: i for i in graph.initializer}
    graph.initializer.extend([numpy_helper.from_array(np.array(v, np.int64), n) for n, v in
                              (("outlier_start", [0]), ("outlier_end", [1]), ("outlier_axis", [1]))])
    graph.initializer.extend([numpy_helper.from_array(np.array(0, np.float32), "outlier_zero"),
                              numpy_helper.from_array(np.array(outlier, np.float32), "outlier_value")])
    for index, name in enumerate(convs):
        conv = next(n for n in graph.node if n.name == name)
        group = next((a.i for a in conv.attribute if a.name == "group"), 1)
        assert group == 1, f"{name}: a grouped Conv cannot take one more input channel"
        data, prefix = conv.input[0], f"outlier{index}"
        # One channel shaped like the input's first (so any batch size works), set to the outlier.
        graph.node.extend([
            helper.make_node("Slice", [data, "outlier_start", "outlier_end", "outlier_axis"], [prefix + "_slice"]),
            helper.make_node("Mul", [prefix + "_slice", "outlier_zero"], [prefix + "_zero"]),
            helper.make_node("Add", [prefix + "_zero", "outlier_value"], [prefix + "_channel"]),
            helper.make_node("Concat", [data, prefix + "_channel"], [prefix + "_input"], axis=1),
        ])
        conv.input[0] = prefix + "_input"
        weight = weights[conv.input[1]]
        array = numpy_helper.to_array(weight)
        extended = np.concatenate([array, np.zeros_like(array[:, :1])], axis=1)
        weight.CopyFrom(numpy_helper.from_array(extended, weight.name))
    _sort_topologically(graph)
    save_checked(model, output)
    return output


def _sort_topologically(graph) -> None:
    """Nodes in an order where every input is made before it is read (the new nodes were appended)."""
    made = {i.name for i in graph.input} | {i.name for i in graph.initializer}
    pending, ordered = [copy.deepcopy(n) for n in graph.node], []
    while pending:
        ready = [n for n in pending if all(not i or i in made for i in n.input)]
        assert ready, "the graph has a cycle"
        taken = {id(n) for n in ready}
        for node in ready:
            made.update(node.output)
        ordered += ready
        pending = [n for n in pending if id(n) not in taken]
    del graph.node[:]
    graph.node.extend(ordered)
