"""apps/benchmark.py --checkpoint with another codebase's checkpoint (an MMDetection SSDLite) and no --arch:
its network is recognised, the PyTorch row runs it as imported (the same detections as the exported ONNX
file's) and a short run measures it (the other rows measure the exported file, as for any checkpoint)."""

from __future__ import annotations

import json

import numpy as np
import torch

from apps import benchmark
from benchmarking.measure import TorchDetector
from calibration.images import read_image
from runtimes.loader import load_detector
from tests import mmdetection_reference_nets
from tests.matching import assert_same_detections
from tests.mmdetection_reference import network_input
from tests.reference_models import voc_mini_images


def test_an_imported_checkpoint_benchmarks_without_arch(tmp_path):
    image = read_image(voc_mini_images()[0])[0]
    state = mmdetection_reference_nets.make_state("ssdlite", 21, network_input(image, 320, (58.395, 57.12, 57.375)))
    checkpoint = tmp_path / "ssdlite.pth"
    torch.save({"meta": {"mmdet_version": "3.3.0"}, "state_dict": state}, checkpoint)
    out = tmp_path / "report"
    assert benchmark.main(["--checkpoint", str(checkpoint), "--runtimes", "pytorch", "--precisions",
                           "fp32", "--iterations", "3", "--warmup", "1", "--no-benchmark-app", "--output-dir",
                           str(out), "--build-dir", str(tmp_path / "models")]) == 0
    rows = json.loads((out / "benchmark.json").read_text())["rows"]
    assert [(r["runtime"], r["status"], r["iterations"]) for r in rows] == [("pytorch", "ok", 3)], rows
    exported = load_detector(tmp_path / "models" / "ssdlite.onnx")
    assert exported.meta.arch == "mmdetection/ssdlite_mobilenetv2"
    eager = TorchDetector.create(str(checkpoint), None, exported.meta.class_names[1:])
    assert eager.meta.arch == exported.meta.arch and eager.meta.std == exported.meta.std
    ours, theirs = eager(image), exported(image)
    assert len(set(np.asarray(theirs.labels).tolist())) > 3
    assert_same_detections(ours, {"boxes": theirs.boxes, "scores": theirs.scores, "labels": theirs.labels},
                           score_tol=1e-4, box_tol=0.5)
