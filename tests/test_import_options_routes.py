"""What a checkpoint of another codebase cannot tell (--input-size, --preset, --config: importers/cli.py)
reaches every route that exports it: build_engine.py's build (export/build_inputs.resolve_source) and
apps/benchmark.py's PyTorch row (benchmarking/measure.torch_model), so both describe the network that
export_onnx.py would."""

from __future__ import annotations

import numpy as np
import torch

from benchmarking.measure import torch_model
from export.build_engine import build_parser
from export.build_inputs import resolve_source
from export.build_request import SourceSpec
from export.onnx_model import require_metadata
from importers.pytorch_ssd_networks import build, layouts
from runtimes.anchors import default_boxes


def test_the_input_size_reaches_the_build_and_the_benchmarks_pytorch_row(tmp_path):
    checkpoint = tmp_path / "mb1-ssd.pth"
    torch.save(build(layouts()["mb1-ssd"], 21).state_dict(), checkpoint)  # trained at --resolution 512
    args = build_parser().parse_args(["--target", "onnx", "--checkpoint", str(checkpoint), "--input-size", "512"])
    assert args.input_size == 512 and args.preset is None and args.config is None
    built = resolve_source(SourceSpec(checkpoint=checkpoint, input_size=args.input_size), tmp_path,
                           dynamic_batch=False, log=lambda _: None)
    meta = require_metadata(built.onnx)
    names = meta.class_names[1:]
    net, row_meta = torch_model(checkpoint, None, names, {"input_size": 512, "preset": None, "config": None})
    assert (meta.input_width, meta.input_height) == (row_meta.input_width, row_meta.input_height) == (512, 512)
    priors = [default_boxes(m.anchors, m.input_height, m.input_width) for m in (meta, row_meta)]
    assert priors[0].shape == priors[1].shape and np.allclose(*priors)  # the same priors
    _, default_meta = torch_model(checkpoint, None, names)
    assert default_meta.input_width == 300  # without the option: the codebase's default, not what was built
