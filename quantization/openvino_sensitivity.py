"""Per-layer INT8 error of an OpenVINO INT8 IR (NNCF) against its FP32 IR, measured with OpenVINO.

The same two SQNRs as quantization/int8_sensitivity.py gives for Q/DQ models, for every Convolution/GroupConvolution
NNCF quantized (a FakeQuantize on its input): ``alone`` (the FP32 graph with, beside each such layer, a copy
fed its FP32 input through the INT8 IR's FakeQuantize and the INT8 IR's int8 weights) and ``in model`` (the
layer's output in the INT8 IR against the FP32 IR's). Layer names are the ONNX node names (OpenVINO names the
bias-free convolution ``<node>/WithoutBiases``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

import numpy as np

from quantization.int8_sensitivity import LayerError, SignalNoise, mean_sqnr_db

CONVOLUTIONS = ("Convolution", "GroupConvolution")
LAYOUT_OPS = ("Transpose", "Reshape", "Convert")  # between a FakeQuantize and its layer: no arithmetic
IR_SUFFIX = "/WithoutBiases"
# Every figure in FP32 arithmetic, whatever the CPU would pick (bf16/f16 where it has them).
F32 = {"INFERENCE_PRECISION_HINT": "f32"}


def onnx_name(ir_name: str) -> str:
    return ir_name[:-len(IR_SUFFIX)] if ir_name.endswith(IR_SUFFIX) else ir_name


def input_fake_quantize(op: Any) -> Optional[Any]:
    """The FakeQuantize quantizing ``op``'s data input, or None (the layer runs in float)."""
    source = op.input_value(0).get_node()
    while source.get_type_name() in LAYOUT_OPS:
        source = source.input_value(0).get_node()
    return source if source.get_type_name() == "FakeQuantize" else None


def quantized_layers(model: Any) -> List[Any]:
    return [op for op in model.get_ordered_ops()
            if op.get_type_name() in CONVOLUTIONS and input_fake_quantize(op) is not None]


def _compiled(model: Any):
    import openvino as ov

    return ov.Core().compile_model(model, "CPU", F32)


def openvino_layer_errors(fp32_xml: Path, int8_xml: Path, frames: Sequence[np.ndarray],
                          show_progress: bool = True) -> List[LayerError]:
    """Both SQNRs of every quantized layer of ``int8_xml`` over ``frames`` (what the IRs take: (1, H, W, 3)
    resized pixels) and the outputs' SQNR gain with it alone in float; worst (largest gain) first."""
    import openvino as ov
    import openvino.opset13 as ops

    from calibration.progress import progress

    core = ov.Core()
    fp32, int8 = core.read_model(str(fp32_xml)), core.read_model(str(int8_xml))
    reference = {op.get_friendly_name(): op for op in fp32.get_ordered_ops() if op.get_type_name() in CONVOLUTIONS}
    names, ref_out, alone_out, int8_out = [], [], [], []
    for op in quantized_layers(int8):
        ref = reference.get(op.get_friendly_name())
        if ref is None:
            continue
        fq = input_fake_quantize(op)
        assert fq is not None  # quantized_layers() holds only layers with one
        x = ops.fake_quantize(ref.input_value(0), *(fq.input_value(i) for i in range(1, 5)),
                              fq.get_attributes()["levels"])
        attrs = op.get_attributes()
        make = ops.convolution if op.get_type_name() == "Convolution" else ops.group_convolution
        copy = make(x, op.input_value(1), attrs["strides"], attrs["pads_begin"], attrs["pads_end"],
                    attrs["dilations"], attrs["auto_pad"])
        names.append(op.get_friendly_name())
        ref_out.append(ref.output(0))
        alone_out.append(copy.output(0))
        int8_out.append(op.output(0))
    beside = _compiled(ov.Model([ops.result(o) for o in ref_out + alone_out], fp32.get_parameters()))
    inside = _compiled(ov.Model([ops.result(o) for o in int8_out], int8.get_parameters()))
    alone = {n: SignalNoise() for n in names}
    in_model = {n: SignalNoise() for n in names}
    count = len(names)
    for frame in frames:
        got = beside({0: frame})
        values = [got[beside.outputs[i]] for i in range(2 * count)]
        quantized = inside({0: frame})
        for i, name in enumerate(names):
            alone[name].add(values[i], values[count + i])
            in_model[name].add(values[i], quantized[inside.outputs[i]])
    errors = [LayerError(onnx_name(n), alone[n].sqnr_db(), in_model[n].sqnr_db()) for n in names]
    reference_outputs = _network_outputs(_compiled(core.read_model(str(fp32_xml))), frames)
    base = mean_sqnr_db(reference_outputs, _network_outputs(_compiled(core.read_model(str(int8_xml))), frames))
    for error in progress(errors, len(errors), "per-layer effect on the outputs", show_progress):
        variant = _compiled(_bypassed(int8_xml, fp32_xml, error.name))
        error.float_gain_db = mean_sqnr_db(reference_outputs, _network_outputs(variant, frames)) - base
    return sorted(errors, key=lambda e: -e.float_gain_db)


def _network_outputs(compiled: Any, frames: Sequence[np.ndarray]) -> List[List[np.ndarray]]:
    """Every frame's network outputs, ordered by output name."""
    ports = sorted(compiled.outputs, key=lambda o: o.get_any_name())
    results = []
    for frame in frames:
        got = compiled({0: frame})
        results.append([np.array(got[port]) for port in ports])
    return results


def openvino_output_sqnr_db(fp32_xml: Path, other: Any, frames: Sequence[np.ndarray]) -> Dict[str, float]:
    """SQNR (dB) of each network output of ``other`` (an IR path or an ov.Model) against ``fp32_xml``, and
    ``"mean"`` over the outputs."""
    import openvino as ov

    core = ov.Core()
    reference = _compiled(core.read_model(str(fp32_xml)))
    model = other if isinstance(other, ov.Model) else core.read_model(str(other))
    compared = _compiled(model)
    names = [o.get_any_name() for o in reference.outputs]
    energies = {n: SignalNoise() for n in names}
    for frame in frames:
        ref, got = reference({0: frame}), compared({0: frame})
        by_name = {o.get_any_name(): got[o] for o in compared.outputs}
        for output in reference.outputs:
            energies[output.get_any_name()].add(ref[output], by_name[output.get_any_name()])
    result = {n: e.sqnr_db() for n, e in energies.items()}
    result["mean"] = float(np.mean([result[n] for n in names]))
    return result


def ir_metadata_of(xml: Path):
    """The ModelMetadata an IR file carries (its input contract says what to feed it)."""
    import openvino as ov

    from runtimes.metadata_io import ir_metadata

    return ir_metadata(ov.Core().read_model(str(xml)), str(xml))


def save_quantized_ir(quantized: Any, fp32_xml: Path, out: Path) -> None:
    """Save an NNCF-quantized copy of the FP32 IR ``fp32_xml`` as ``out``, with that IR's metadata marked INT8."""
    from export.openvino_build import save_ir
    from runtimes.metadata import METADATA_KEY

    meta = ir_metadata_of(fp32_xml)
    quantized.set_rt_info(meta.replace(precision="int8", quantization="nncf").to_json(), [METADATA_KEY])
    save_ir(quantized, out, compress_to_fp16=False)


def keep_layer_in_float(int8_xml: Path, fp32_xml: Path, layer: str, out: Path) -> Path:
    """``int8_xml`` with ``layer`` (an ONNX node name) alone back in float, saved as ``out``."""
    from export.openvino_build import save_ir

    save_ir(_bypassed(int8_xml, fp32_xml, layer), out, compress_to_fp16=False)
    return out


def _bypassed(int8_xml: Path, fp32_xml: Path, layer: str) -> Any:
    """``int8_xml`` with ``layer`` alone back in float: its input FakeQuantize bypassed and its weights the
    FP32 IR's, every other layer as quantized (no re-calibration, so nothing else moves)."""
    import openvino as ov

    from runtimes.errors import UserError

    core = ov.Core()
    int8, fp32 = core.read_model(str(int8_xml)), core.read_model(str(fp32_xml))
    op = next((o for o in quantized_layers(int8) if onnx_name(o.get_friendly_name()) == layer), None)
    ref = next((o for o in fp32.get_ordered_ops() if o.get_friendly_name() == getattr(op, "get_friendly_name",
                                                                                         lambda: None)()), None)
    if op is None or ref is None:
        raise UserError(f"{layer}: not a quantized layer of {int8_xml}")
    reader = op  # the node reading the FakeQuantize: the layer, or the layout op (Transpose) before it
    while reader.input_value(0).get_node().get_type_name() in LAYOUT_OPS:
        reader = reader.input_value(0).get_node()
    fq = reader.input_value(0).get_node()
    reader.input(0).replace_source_output(fq.input_value(0))
    op.input(1).replace_source_output(ref.input_value(1))
    return int8
