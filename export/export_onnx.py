"""Export an SSD checkpoint to a simplified, self-describing ONNX model (or adopt an existing ONNX).

    python export/export_onnx.py --checkpoint mb1-ssd-Epoch-99.pth --classes labels.txt --output ssd.onnx
    python export/export_onnx.py --arch ssd300_vgg16 --checkpoint ssd.pth --num-classes 21 --output ssd.onnx
    python export/export_onnx.py --onnx-in mb2-ssd-lite.onnx --classes labels.txt --output ssd.onnx

The codebase and network of a checkpoint are recognised from its keys and shapes (importers/: torchvision,
pytorch-ssd, ssd.pytorch, lufficc/SSD, MMDetection, NVIDIA's SSD, UltraFace; docs/checkpoints.md); ``--arch`` names a
network only where they cannot tell, ``--preset`` a codebase's named configuration, ``--config`` its training
config (read as data). The network is exported up to its raw head outputs (``bbox_regression`` offsets and
``cls_logits``);
decoding and NMS stay on the host in the shared post-processor. The file carries everything needed to run
it (architecture, input size, channel order, mean/std, class names, box coder, anchors, thresholds, the
checkpoint's sha256) in ``metadata_props``.

Foreign files in the pytorch-ssd / jetson-inference convention (one image input; ``scores`` [B,N,C] after
softmax and ``boxes`` [B,N,4] decoded, normalised corners) are adopted with ``--onnx-in``: weights listed
as graph inputs are folded in, old opsets upgraded, tensors renamed to the toolkit's names.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any, List, Optional, Sequence

# The repository root replaces the script's own folder on the path: a module here (e.g. export/onnx_model.py)
# must not shadow a library's top-level module of the same name (onnxruntime's quantizer imports one).
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.pop(1)

from importers.base import ImportOptions
from importers.cli import add_import_arguments, import_options
from runtimes.class_names import read_class_names
from runtimes.cli import run_cli
from runtimes.errors import UserError
from runtimes.metadata import (
    DECODED_OUTPUTS,
    DYNAMIC_BATCH,
    INPUT_NAME,
    RAW_OUTPUTS,
    VOC_CLASSES,
    InputSpec,
    ModelMetadata,
)


def class_names_for(num_classes: Optional[int], classes_file: Optional[Path]) -> List[str]:
    """Class names without the background: from ``classes_file`` (runtimes/class_names.py), else VOC's 20
    when ``num_classes`` is 21."""
    if classes_file is not None:
        names = read_class_names(classes_file)
        if num_classes is not None and len(names) + 1 != num_classes:
            raise UserError(f"{classes_file}: lists {len(names)} classes, but the model has {num_classes} "
                            f"outputs ({num_classes - 1} classes + background); fix the file or --num-classes")
        return names
    if num_classes in (None, len(VOC_CLASSES) + 1):
        return list(VOC_CLASSES)
    raise UserError(f"the model has {num_classes} classes: pass their names with --classes FILE "
                    "(one per line, background excluded)")


def export_checkpoint(checkpoint: Path, arch: Optional[str], output: Path, num_classes: Optional[int] = None,
                      classes_file: Optional[Path] = None, dynamic_batch: bool = False,
                      allow_pickle: bool = False, opset: Optional[int] = None,
                      options: Optional[ImportOptions] = None, **thresholds: float) -> ModelMetadata:
    """Export ``checkpoint`` to ``output``; returns the metadata written into the file.

    ``arch`` names one of torchvision's SSDs (export/architectures.py); None (or a network name in another
    codebase's vocabulary) recognises the codebase and network from the state dict (importers/).
    """
    from export.architectures import ARCHITECTURES
    from runtimes.atomic import check_output_dir
    from runtimes.hashing import sha256_file

    check_output_dir(output)
    if arch in ARCHITECTURES:
        module, meta = _torchvision_model(checkpoint, str(arch), num_classes, classes_file, allow_pickle)
    else:
        module, meta = _imported_model(checkpoint, arch, num_classes, classes_file, allow_pickle,
                                       options or ImportOptions())
    meta = meta.replace(checkpoint_sha256=sha256_file(checkpoint), source=f"checkpoint {Path(checkpoint).name}",
                        input=InputSpec(channel_order=meta.channel_order, batch=DYNAMIC_BATCH if dynamic_batch else 1),
                        **{k: v for k, v in thresholds.items() if v is not None})
    export_module(module, meta, output, dynamic_batch, opset)
    return meta


def _torchvision_model(checkpoint: Path, arch: str, num_classes: Optional[int], classes_file: Optional[Path],
                       allow_pickle: bool):
    """torchvision's ``arch`` with the checkpoint's weights, as (module with raw outputs, metadata)."""
    from export.architectures import RawHeadOutputs, describe
    from export.checkpoint import checkpoint_class_count, load_checkpoint

    if num_classes is None:
        names = class_names_for(None, classes_file) if classes_file else None
        num_classes = len(names) + 1 if names else checkpoint_class_count(checkpoint, arch, allow_pickle)
    if num_classes is None:  # no classification head found: load_checkpoint names the mismatch
        num_classes = len(VOC_CLASSES) + 1
    # Weights first: a checkpoint that does not fit is the more useful error than missing class names.
    model = load_checkpoint(checkpoint, arch, num_classes, allow_pickle)
    return RawHeadOutputs(model), describe(model, arch, class_names_for(num_classes, classes_file))


def _imported_model(checkpoint: Path, arch: Optional[str], num_classes: Optional[int], classes_file: Optional[Path],
                    allow_pickle: bool, options: ImportOptions):
    """The network of another codebase's checkpoint (importers/), as (module with raw outputs, metadata)."""
    from export.checkpoint import load_state_dict
    from importers.registry import import_state_dict

    state = load_state_dict(checkpoint, allow_pickle)
    try:
        imported = import_state_dict(state, options)
    except UserError as exc:
        raise UserError(f"{checkpoint}: {exc}") from None
    meta = imported.meta
    network = meta.arch.split("/")[-1]
    if arch is not None and arch != network:
        raise UserError(f"unknown --arch '{arch}' for {checkpoint}: it is a {meta.arch} checkpoint; leave --arch out")
    if num_classes is not None and num_classes != meta.num_classes:
        raise UserError(f"--num-classes {num_classes}, but {checkpoint}'s head has {meta.num_classes} classes "
                        "(background included); leave --num-classes out")
    names = class_names_for(meta.num_classes, classes_file)
    print(f"recognised {meta.arch} ({meta.num_classes} classes with the background), input "
          f"{meta.input_width}x{meta.input_height}", flush=True)
    return imported.module, meta.replace(class_names=["__background__"] + names)


def export_module(module, meta: ModelMetadata, output: Path, dynamic_batch: bool = False,
                  opset: Optional[int] = None) -> None:
    """Export ``module`` (images -> raw ``bbox_regression``, ``cls_logits``) to ``output``, simplified and
    carrying ``meta``."""
    import onnx
    import torch

    from export.onnx_model import DEFAULT_OPSET, save_checked, simplify, write_metadata
    from runtimes.atomic import temporary_beside

    dummy = torch.zeros(1, 3, meta.input_height, meta.input_width)
    dynamic_axes = {n: {0: "batch"} for n in (INPUT_NAME, *RAW_OUTPUTS)} if dynamic_batch else None
    started = time.monotonic()
    raw_path = temporary_beside(output)  # the raw export is read back, never renamed onto --output
    try:
        # The TorchScript-based exporter: opset 17 in seconds, one self-contained file. (The dynamo
        # exporter needs onnxscript, cannot go below opset 18 here and writes external data.)
        torch.onnx.export(module.eval(), (dummy,), str(raw_path), dynamo=False,
                          opset_version=opset or DEFAULT_OPSET, input_names=[INPUT_NAME],
                          output_names=list(RAW_OUTPUTS), dynamic_axes=dynamic_axes, do_constant_folding=True)
        exported = onnx.load(str(raw_path))
    finally:
        raw_path.unlink(missing_ok=True)
    print(f"exported {meta.arch} ({meta.num_classes} classes) in {time.monotonic() - started:.1f} s", flush=True)
    simplified = simplify(exported)
    write_metadata(simplified, meta)
    save_checked(simplified, output)


# -- adopting an existing ONNX --------------------------------------------------------------------------

def _rename(graph, old: str, new: str) -> None:
    if old == new:
        return
    for node in graph.node:
        node.input[:] = [new if n == old else n for n in node.input]
        node.output[:] = [new if n == old else n for n in node.output]
    for info in list(graph.input) + list(graph.output) + list(graph.value_info):
        if info.name == old:
            info.name = new


def _static_dims(info) -> List[Optional[int]]:
    dims = info.type.tensor_type.shape.dim
    return [d.dim_value if d.HasField("dim_value") else None for d in dims]


def _pick_outputs(graph, origin: str):
    """(scores, boxes) graph outputs of a decoded SSD, by name or else by shape."""
    outputs = {o.name: _static_dims(o) for o in graph.output}
    described = ", ".join(f"{n} {d}" for n, d in outputs.items())
    not_ssd = UserError(f"{origin}: not an SSD in the pytorch-ssd convention: expected outputs scores "
                        f"[B,N,C] and boxes [B,N,4], found {described}")
    if "scores" in outputs and "boxes" in outputs:
        scores, boxes = "scores", "boxes"
    else:
        rank3 = [n for n, d in outputs.items() if len(d) == 3]
        boxes_c = [n for n in rank3 if outputs[n][2] == 4]
        scores_c = [n for n in rank3 if n not in boxes_c]
        if len(boxes_c) != 1 or len(scores_c) != 1:
            raise not_ssd
        scores, boxes = scores_c[0], boxes_c[0]
    s, b = outputs[scores], outputs[boxes]
    if len(s) != 3 or len(b) != 3 or b[2] != 4 or (s[1] and b[1] and s[1] != b[1]) or (s[2] or 0) < 2:
        raise not_ssd
    return scores, boxes, s[2]


def convert_foreign_onnx(onnx_in: Path, output: Path, classes_file: Optional[Path] = None,
                         mean: Optional[Sequence[float]] = None, std: Optional[Sequence[float]] = None,
                         channel_order: str = "RGB", arch: str = "external-ssd", **thresholds: float) -> ModelMetadata:
    """Adopt a pytorch-ssd / jetson-inference style ONNX file; returns the metadata written.

    A network pytorch-ssd exports (recognised by its box count at 300x300) gets that codebase's
    normalisation, resize and post-processing; for any other, ``mean`` and ``std`` must be given."""
    import onnx

    from export.onnx_model import load_onnx, read_metadata, save_checked, simplify, write_metadata
    from importers.pytorch_ssd import onnx_conventions
    from runtimes.atomic import check_output_dir
    from runtimes.hashing import sha256_file

    check_output_dir(output)
    origin = str(onnx_in)
    model = load_onnx(onnx_in)
    existing = read_metadata(model, origin)
    dims = _image_input_dims(model, origin)
    model = simplify(onnx.shape_inference.infer_shapes(_upgraded(model)))
    graph = model.graph
    scores, boxes, num_classes = _pick_outputs(graph, origin)
    _rename(graph, graph.input[0].name, INPUT_NAME)
    _rename(graph, scores, DECODED_OUTPUTS[1])
    _rename(graph, boxes, DECODED_OUTPUTS[0])
    if classes_file is None and existing is not None and existing.num_classes == num_classes:
        names = existing.class_names[1:]
    else:
        names = class_names_for(num_classes, classes_file)
    conventions = onnx_conventions(int(_static_dims(graph.output[0])[1] or 0), int(dims[2]), int(dims[3]),
                                   len(names) + 1) or {"arch": arch}
    if arch != "external-ssd":
        conventions["arch"] = arch
    given = {k: [float(v) for v in values] for k, values in (("mean", mean), ("std", std)) if values is not None}
    if len(given) < 2 and "mean" not in conventions:
        raise UserError(f"{origin}: its normalisation cannot be told from the file (no pytorch-ssd network at "
                        f"{dims[3]}x{dims[2]}): pass --mean and --std (jetson-inference's mobilenets: --mean 127 "
                        "--std 128)")
    fields = {"score_threshold": 0.01, "iou_threshold": 0.45, "topk_candidates": 200, "max_detections": 200,
              **conventions, **given}
    meta = ModelMetadata(
        input_height=int(dims[2]), input_width=int(dims[3]), channel_order=channel_order,
        class_names=["__background__"] + names, output_format="decoded", anchors=None,
        checkpoint_sha256=sha256_file(Path(onnx_in)), source=f"onnx {Path(onnx_in).name}", **fields,
    ).replace(**{k: v for k, v in thresholds.items() if v is not None})
    write_metadata(model, meta)
    save_checked(model, output)
    return meta


def _image_input_dims(model: Any, origin: str) -> List[Any]:
    """[B, 3, H, W] of the one image input (H and W fixed), after dropping the weights that old exporters list
    as graph inputs too (they are constants, not inputs)."""
    graph = model.graph
    weights = {init.name for init in graph.initializer}
    images = [i for i in graph.input if i.name not in weights]
    for info in [i for i in graph.input if i.name in weights]:
        graph.input.remove(info)
    if len(images) != 1:
        raise UserError(f"{origin}: expected one image input, found {len(images)} "
                        f"({', '.join(i.name for i in images)}); not an SSD this toolkit can adopt")
    dims = _static_dims(images[0])
    if len(dims) != 4 or dims[1] != 3 or not dims[2] or not dims[3]:
        raise UserError(f"{origin}: the image input must be [B, 3, H, W] with a fixed H and W, found {dims}")
    return dims


def _upgraded(model: Any) -> Any:
    """``model`` at opset 13 when it is older than 11 (the simplifier and the runtimes need 11+), else as is."""
    from onnx import version_converter

    opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 0)
    if opset >= 11:
        return model
    try:
        model = version_converter.convert_version(model, 13)
        print(f"upgraded opset {opset} -> 13")
    except Exception as exc:  # the converter raises bare RuntimeErrors
        print(f"note: could not upgrade opset {opset} ({str(exc).splitlines()[0][:100]}); keeping it")
    return model


def _three(text: str) -> List[float]:
    values = [float(v) for v in text.replace(",", " ").split()]
    if len(values) == 1:
        values *= 3
    if len(values) != 3:
        raise argparse.ArgumentTypeError("give one value or three (R,G,B)")
    return values


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--checkpoint", type=Path, help="PyTorch checkpoint (.pth/.pt state_dict or .safetensors)")
    src.add_argument("--onnx-in", type=Path, help="adopt an existing pytorch-ssd style ONNX file instead")
    p.add_argument("--arch", help="the network, where the checkpoint's keys cannot tell: torchvision's "
                                  "ssd300_vgg16 | ssd512_vgg16 (default: recognised; docs/checkpoints.md)")
    add_import_arguments(p)
    p.add_argument("--num-classes", type=int, help="outputs incl. background (default: from --classes or "
                                                   "the checkpoint)")
    p.add_argument("--classes", type=Path, help="class names, one per line, background excluded "
                                                "(default: VOC's 20 when there are 21 outputs)")
    p.add_argument("--output", type=Path, required=True, help="the .onnx file to write")
    p.add_argument("--dynamic-batch", action="store_true", help="dynamic batch axis (default: static batch 1)")
    p.add_argument("--opset", type=int, default=None, help="ONNX opset (default: 17, parsed by TensorRT 8.5+)")
    p.add_argument("--allow-pickle", action="store_true",
                   help="allow checkpoints that need pickle (runs code from the file: trusted files only)")
    p.add_argument("--mean", type=_three, help="--onnx-in: pixel mean on 0..255 (default: the recognised "
                                               "pytorch-ssd network's; needed otherwise)")
    p.add_argument("--std", type=_three, help="--onnx-in: pixel std on 0..255 (default: as --mean)")
    p.add_argument("--score-threshold", type=float, help="default score threshold stored in the model")
    p.add_argument("--iou-threshold", type=float, help="default NMS IoU threshold stored in the model")
    return p


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    thresholds = {"score_threshold": args.score_threshold, "iou_threshold": args.iou_threshold}
    if args.onnx_in is not None:
        meta = convert_foreign_onnx(args.onnx_in, args.output, args.classes, args.mean, args.std,
                                    arch=args.arch or "external-ssd", **thresholds)
    else:
        options = import_options(args, args.arch)
        meta = export_checkpoint(args.checkpoint, args.arch, args.output, args.num_classes, args.classes,
                                 args.dynamic_batch, args.allow_pickle, args.opset, options, **thresholds)
    print(f"wrote {args.output}: {meta.arch}, input {meta.input_width}x{meta.input_height} {meta.channel_order}, "
          f"{meta.num_classes - 1} classes, outputs {meta.output_format}")
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main))
