"""pytorch-ssd checkpoints: recognised from their keys, exported, and run by the toolkit's runners, checked
against pytorch-ssd's own Predictor (tests/pytorch_ssd_reference.py) in three parts (see
test_runners_give_pytorch_ssds_own_detections): the pre-processed input, the network's raw outputs, and the
detections decoded from those very outputs (labels exact, boxes within 0.5 px, scores within 1e-4)."""

from __future__ import annotations

import hashlib
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from calibration.images import read_image
from export.export_onnx import export_checkpoint
from importers.base import ImportOptions
from importers.pytorch_ssd_networks import build, layouts
from runtimes.loader import load_detector
from tests.matching import as_nchw_input, assert_close_outputs, assert_same_detections, detect_with_raw_outputs
from tests.pytorch_ssd_reference import decode, network_input, run_network
from tests.reference_models import decisive_pytorch_ssd, voc_mini_images

ROOT = Path(__file__).resolve().parents[1]
# sha256 of "key [shape]" lines, sorted, of each network's state dict for 5 classes, as qfgaohao/pytorch-ssd
# (commit 7a839cb) builds it with train_ssd.py's defaults.
CODEBASE_LAYOUTS = {
    "vgg16-ssd": "c51afee11a308a94",
    "mb1-ssd": "b7b0f3c3e70971b3",
    "mb1-ssd-lite": "b472380d10398984",
    "mb2-ssd-lite": "7e5f3b595df7c76c",
    "mb3-large-ssd-lite": "fd39255dda97379e",
    "mb3-small-ssd-lite": "8536db6905c076d7",
    "sq-ssd-lite": "49d416e5507f4c5a",
}
CASES = [(network, 300) for network in CODEBASE_LAYOUTS] + [("mb1-ssd", 512)]  # 512: jetson-inference's --resolution
# Raw outputs (logits, box offsets) of a runtime against PyTorch's on the same input: within this fraction
# of the largest |output| (the weights put logits at +-6, offsets at +-2). float32 rounding differs between
# kernels, thread counts and CPUs; measured up to 3e-5 of the range for the VGG and MobileNet v1/v2
# networks and 4e-4 for mb3-large-ssd-lite (15 squeeze-excitation bottlenecks amplify it), so 2e-3 holds
# with a margin of 5 while a wrong weight, layer or class order moves outputs by a large part of it.
OUTPUT_TOL = 2e-3


@pytest.mark.parametrize("network", CODEBASE_LAYOUTS)
def test_networks_have_the_codebases_keys_and_shapes(network):
    state = build(layouts()[network], 5).state_dict()
    text = "\n".join(f"{k} {list(v.shape)}" for k, v in sorted(state.items()))
    assert hashlib.sha256(text.encode()).hexdigest()[:16] == CODEBASE_LAYOUTS[network]


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    folder = tmp_path_factory.mktemp("pytorch_ssd")
    cache = {}

    def get(network: str, size: int):
        if (network, size) not in cache:
            model = decisive_pytorch_ssd(network, size=size)
            checkpoint = folder / f"{network}-{size}.pth"
            torch.save(model.state_dict(), checkpoint)
            onnx_path = folder / f"{network}-{size}.onnx"
            export_checkpoint(checkpoint, None, onnx_path, options=ImportOptions(input_size=size))
            cache[network, size] = model, checkpoint, onnx_path
        return cache[network, size]

    return get


def assert_runtime_matches_codebase(detector, network: str, pytorch: tuple, image, size: int) -> None:
    """The three parts of the parity, for one runner and one image, all on one call of the real Detector
    (load_detector's, with its own pre-processing, runtime and post-processor), whose network input and
    raw outputs are recorded:

    1. pre-processing: its input is PredictionTransform's tensor (within 1e-5: the same cv2.resize of the
       8-bit image, (x - mean) / std against a multiply-add), so the resize, channel order, mean and std
       are the codebase's;
    2. the network: its raw outputs (bbox_regression, cls_logits with the background first) are PyTorch's
       on that input within OUTPUT_TOL of their range (float32 across kernels and CPUs);
    3. post-processing: its detections are pytorch-ssd's Predictor decoding (priors, decoding, softmax,
       per-class hard NMS, scaling) applied to the SAME raw outputs: labels exact, boxes within 0.5 px,
       scores within 1e-4. No runtime float noise separates the two sides, so a near-tie in NMS among the
       ~2,000 detections (scores above 0.01, 200 per class) cannot flip between them, while wrong priors,
       decoding, NMS, thresholds or labels still fail.

    Comparing the runner's detections with PyTorch's end to end was flaky: differences of 1e-6 in the
    outputs flip near-ties. ``pytorch``: (input, locations, logits, feature map sizes) of PyTorch's run.
    """
    x, locations, logits, maps = pytorch
    detections, prepared, outputs = detect_with_raw_outputs(detector, image)
    origin = f"{detector.backend} {network}-{size}"
    np.testing.assert_allclose(as_nchw_input(detector, prepared), x.numpy(), atol=1e-5, rtol=0, err_msg=origin)
    for name, want in (("bbox_regression", locations), ("cls_logits", logits)):
        assert_close_outputs(outputs, {name: want.numpy()}, atol=OUTPUT_TOL * float(want.abs().max()), rtol=0,
                             origin=origin)
    reference = decode(outputs["bbox_regression"][0], outputs["cls_logits"][0], network, maps, size, image.shape)
    assert len(set(reference["labels"].tolist())) > 3, "the reference should detect varied classes"
    assert_same_detections(detections, reference, score_tol=1e-4, box_tol=0.5)


@pytest.mark.parametrize("network,size", CASES)
def test_runners_give_pytorch_ssds_own_detections(exported, network, size):
    """ONNX Runtime and OpenVINO, through load_detector, against pytorch-ssd's inference: see
    assert_runtime_matches_codebase for what is compared and why the detections are decoded from the
    runtime's own raw outputs."""
    model, _, onnx_path = exported(network, size)
    detectors = [load_detector(onnx_path), load_detector(onnx_path, runtime="openvino")]
    assert detectors[0].meta.arch == f"pytorch-ssd/{network}"
    for path in voc_mini_images()[:2]:
        image, _ = read_image(path)
        x = network_input(network, image, size)
        pytorch = (x, *run_network(model, x))
        for detector in detectors:
            assert_runtime_matches_codebase(detector, network, pytorch, image, size)


def run(*args) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "export/export_onnx.py", *map(str, args)], cwd=ROOT,
                          capture_output=True, text=True, timeout=300)


def test_labels_file_with_background_names_the_classes(exported, tmp_path):
    _, checkpoint, _ = exported("mb1-ssd", 300)
    labels = tmp_path / "labels.txt"
    labels.write_text("BACKGROUND\n" + "\n".join(f"thing{i}" for i in range(1, 21)) + "\n")
    out = tmp_path / "m.onnx"
    result = run("--checkpoint", checkpoint, "--classes", labels, "--output", out)
    assert result.returncode == 0, result.stderr
    meta = load_detector(out).meta
    assert meta.class_names[:2] == ["__background__", "thing1"] and meta.num_classes == 21
    assert (meta.mean, meta.std, meta.resize.pixels, meta.clip_boxes) == ([127.0] * 3, [128.0] * 3, "uint8", "none")


def test_bad_input_is_one_line_naming_the_problem(exported, tmp_path):
    _, checkpoint, _ = exported("mb1-ssd", 300)
    labels = tmp_path / "labels.txt"
    labels.write_text("BACKGROUND\ncat\ndog\n")
    fpn = {"base_net.0.0.weight": torch.zeros(32, 3, 3, 3), "classification_headers.0.weight": torch.zeros(6, 8, 3, 3),
           "regression_headers.0.weight": torch.zeros(24, 8, 3, 3)}
    torch.save(fpn, tmp_path / "fpn.pth")
    torch.save({"backbone.body.conv1.weight": torch.zeros(64, 3, 7, 7)}, tmp_path / "foreign.pth")
    (tmp_path / "truncated.pth").write_bytes(checkpoint.read_bytes()[:4000])
    out = tmp_path / "out.onnx"
    cases = [
        (["--checkpoint", checkpoint, "--classes", labels], ["lists 2 classes", "21 outputs"]),
        (["--checkpoint", checkpoint, "--input-size", "20"], ["--input-size 20"]),
        (["--checkpoint", tmp_path / "fpn.pth"], ["recognised a pytorch-ssd checkpoint", "none of the networks"]),
        (["--checkpoint", tmp_path / "foreign.pth"], ["no codebase", "backbone.*"]),
        (["--checkpoint", tmp_path / "truncated.pth"], ["corrupt or truncated"]),
    ]
    for args, phrases in cases:
        result = run(*args, "--output", out)
        lines = result.stderr.strip().splitlines()
        assert result.returncode == 2 and len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
        assert all(phrase in lines[0] for phrase in phrases), lines[0]
        assert not out.exists()
