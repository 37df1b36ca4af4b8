"""export_onnx.py on bad input (one line, non-zero exit, nothing left behind) and on foreign ONNX files."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from calibration.images import read_image
from export.architectures import build_model
from runtimes.loader import load_detector
from tests.matching import assert_same_detections
from tests.reference_models import voc_mini_images

ROOT = Path(__file__).resolve().parents[1]
LITE = "ssdlite320_mobilenet_v3_large"


def run(*args: str, cwd: Path = ROOT):
    return subprocess.run([sys.executable, "export/export_onnx.py", *map(str, args)], cwd=cwd,
                          capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="module")
def lite_checkpoint(tmp_path_factory):
    folder = tmp_path_factory.mktemp("ckpt")
    torch.manual_seed(0)
    model = build_model(LITE, 21)
    path = folder / "lite.pth"
    torch.save({"epoch": 3, "model_state_dict": {"module." + k: v for k, v in model.state_dict().items()}}, path)
    return path


def assert_user_error(result, *phrases: str) -> None:
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert "Traceback" not in result.stderr
    for phrase in phrases:
        assert phrase in lines[0], lines[0]


def bad_cases(ckpt: Path, tmp: Path):
    (tmp / "empty.pth").write_bytes(b"")
    (tmp / "truncated.pth").write_bytes(ckpt.read_bytes()[:5000])
    torch.save({"model": build_model(LITE, 21)}, tmp / "pickled.pth")
    torch.save(build_model("ssd300_vgg16", 21).state_dict(), tmp / "vgg.pth")
    (tmp / "not_ssd.onnx").write_bytes(_not_ssd_onnx())
    out = tmp / "out.onnx"
    return [
        (["--arch", LITE, "--checkpoint", tmp / "missing.pth", "--output", out], ["no such checkpoint"]),
        (["--arch", LITE, "--checkpoint", tmp / "empty.pth", "--output", out], ["empty"]),
        (["--arch", LITE, "--checkpoint", tmp / "truncated.pth", "--output", out], ["corrupt or truncated"]),
        (["--arch", LITE, "--checkpoint", tmp / "pickled.pth", "--output", out], ["needs pickle", "--allow-pickle"]),
        (["--arch", LITE, "--checkpoint", tmp / "vgg.pth", "--output", out], ["does not fit", "--arch ssd300_vgg16"]),
        (["--arch", LITE, "--checkpoint", ckpt, "--num-classes", "91", "--output", out],
         ["shape mismatch", "wrong --num-classes", "has 21 classes"]),
        (["--arch", "ssd999", "--checkpoint", ckpt, "--output", out], ["unknown --arch 'ssd999'"]),
        (["--onnx-in", tmp / "not_ssd.onnx", "--output", out], ["not an SSD"]),
        (["--arch", LITE, "--checkpoint", ckpt, "--output", tmp / "no" / "such" / "dir.onnx"], ["does not exist"]),
    ]


def _not_ssd_onnx() -> bytes:
    import io

    buf = io.BytesIO()
    torch.onnx.export(torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.Flatten()), (torch.zeros(1, 3, 8, 8),),
                      buf, dynamo=False, opset_version=17)
    return buf.getvalue()


def test_bad_input_gives_one_line_and_leaves_nothing(lite_checkpoint, tmp_path):
    for args, phrases in bad_cases(lite_checkpoint, tmp_path):
        before = set(tmp_path.rglob("*"))
        result = run(*args)
        assert_user_error(result, *phrases)
        assert set(tmp_path.rglob("*")) == before, f"{args} left files behind"
        assert not (tmp_path / "out.onnx").exists()


def test_pickle_checkpoint_loads_with_the_flag(lite_checkpoint, tmp_path):
    torch.save({"model": build_model(LITE, 21)}, tmp_path / "pickled.pth")
    result = run("--arch", LITE, "--checkpoint", tmp_path / "pickled.pth", "--output", tmp_path / "p.onnx",
                 "--allow-pickle")
    assert result.returncode == 0, result.stderr
    assert load_detector(tmp_path / "p.onnx").meta.num_classes == 21


def test_wrapped_checkpoint_exports_with_metadata(lite_checkpoint, tmp_path):
    result = run("--arch", LITE, "--checkpoint", lite_checkpoint, "--output", tmp_path / "m.onnx",
                 "--dynamic-batch")
    assert result.returncode == 0, result.stderr
    import onnx

    model = onnx.load(str(tmp_path / "m.onnx"))
    opset = next(o.version for o in model.opset_import if o.domain in ("", "ai.onnx"))
    assert opset == 17
    assert model.graph.input[0].type.tensor_type.shape.dim[0].dim_param == "batch"
    meta = load_detector(tmp_path / "m.onnx").meta
    assert meta.class_names[1] == "aeroplane" and meta.num_classes == 21  # VOC's names by default
    assert meta.mean == [127.5] * 3 and meta.std == [127.5] * 3
    assert meta.score_threshold == 0.001 and meta.iou_threshold == 0.55  # torchvision's SSDLite defaults
    from runtimes.hashing import sha256_file

    assert meta.checkpoint_sha256 == sha256_file(lite_checkpoint)


class PytorchSSDStyle(torch.nn.Module):
    """An SSD exported the pytorch-ssd / jetson-inference way: softmax scores and decoded, normalised
    corner boxes inside the graph."""

    def __init__(self, model, anchors: torch.Tensor, size: int) -> None:
        super().__init__()
        self.model, self.size = model, size
        self.register_buffer("anchors", anchors)

    def forward(self, x):
        features = list(self.model.backbone(x).values())
        head = self.model.head(features)
        boxes = self.model.box_coder.decode_single(head["bbox_regression"][0], self.anchors)
        boxes = boxes.clamp(0, self.size) / self.size
        return torch.softmax(head["cls_logits"], -1), boxes[None]


def test_foreign_onnx_with_weights_as_inputs_and_old_opset(exported, tmp_path):
    from runtimes.anchors import default_boxes

    model, _, ours_path = exported(LITE)
    ours = load_detector(ours_path)
    anchors = torch.from_numpy(default_boxes(ours.meta.anchors, 320, 320))
    foreign = tmp_path / "mb3-ssd-lite.onnx"
    # eval(): export restores the wrapper's mode afterwards, which would put the shared model in training
    torch.onnx.export(PytorchSSDStyle(model, anchors, 320).eval(), (torch.zeros(1, 3, 320, 320),), str(foreign),
                      dynamo=False, opset_version=11, keep_initializers_as_inputs=True,
                      input_names=["input_0"], output_names=["scores", "boxes"])
    labels = tmp_path / "labels.txt"
    labels.write_text("BACKGROUND\n" + "\n".join(ours.class_names[1:]) + "\n")
    out = tmp_path / "adopted.onnx"
    result = run("--onnx-in", foreign, "--classes", labels, "--mean", "127.5", "--std", "127.5",
                 "--output", out, "--score-threshold", str(ours.meta.score_threshold),
                 "--iou-threshold", str(ours.meta.iou_threshold))
    assert result.returncode == 0, result.stderr
    adopted = load_detector(out, topk_candidates=ours.meta.topk_candidates, max_detections=ours.meta.max_detections)
    assert adopted.meta.output_format == "decoded" and adopted.class_names == ours.class_names
    for path in voc_mini_images()[:3]:
        image, _ = read_image(path)
        expected = ours(image)
        got = adopted(image)
        assert_same_detections(got, {"boxes": expected.boxes, "scores": expected.scores, "labels": expected.labels},
                               box_tol=2e-2)
    assert np.isfinite(got.boxes).all()
