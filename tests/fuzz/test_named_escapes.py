"""The escapes issue #18 names, one test each (the fuzz harness covers their neighbourhoods)."""

from __future__ import annotations

import random
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from calibration.images import UnreadableImage, read_image
from calibration.voc import VOCDataset
from export.checkpoint import load_checkpoint, load_state_dict
from runtimes.errors import UserError
from tests.fuzz.cases import VOC_XML, png_bomb

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("allow_pickle", [False, True])
def test_random_bytes_as_a_checkpoint_are_corrupt_not_pickle(tmp_path, allow_pickle):
    rng = random.Random(18)
    for i in range(60):  # before the fix: IndexError/KeyError from torch's unpickler, or "needs pickle"
        path = tmp_path / f"{i}.pth"
        path.write_bytes(rng.choice([b"", b"\x80\x02", b"PK\x03\x04"]) + rng.randbytes(rng.randint(1, 3000)))
        with pytest.raises(UserError, match="corrupt or truncated checkpoint") as info:
            load_state_dict(path, allow_pickle)
        assert "needs pickle" not in str(info.value) and "\n" not in str(info.value)


def test_a_genuine_pickle_still_needs_the_flag_and_loads_with_it(tmp_path):
    path = tmp_path / "pickled.pth"
    torch.save({"model": torch.nn.Linear(3, 2)}, path)
    with pytest.raises(UserError, match="needs pickle to load"):
        load_state_dict(path)
    assert sorted(load_state_dict(path, allow_pickle=True)) == ["bias", "weight"]


def test_allow_pickle_on_a_non_pickle_is_one_line_from_the_cli(tmp_path):
    path = tmp_path / "notes.pth"
    path.write_text("epoch 3, loss 0.2\n")
    result = subprocess.run([sys.executable, "export/export_onnx.py", "--arch", "ssdlite320_mobilenet_v3_large",
                             "--checkpoint", str(path), "--num-classes", "6", "--output", str(tmp_path / "m.onnx"),
                             "--allow-pickle"], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "corrupt or truncated checkpoint" in lines[0]
    assert not (tmp_path / "m.onnx").exists()


def test_weights_with_nan_or_of_an_integer_dtype_are_refused(tmp_path):
    from safetensors.torch import load_file

    from export.demo_model import DEMO_ARCH, DEMO_CHECKPOINT, DEMO_NUM_CLASSES

    state = load_file(str(DEMO_CHECKPOINT))
    key = next(k for k, v in state.items() if v.is_floating_point() and v.dim() == 4)
    poisoned = dict(state, **{key: state[key].clone().index_fill_(0, torch.tensor([0]), float("nan"))})
    torch.save(poisoned, tmp_path / "nan.pth")
    with pytest.raises(UserError, match=f"tensor {key} holds .* NaN or infinite"):
        load_checkpoint(tmp_path / "nan.pth", DEMO_ARCH, DEMO_NUM_CLASSES)
    torch.save(dict(state, **{key: state[key].to(torch.int8)}), tmp_path / "int.pth")
    with pytest.raises(UserError, match=f"tensor {key} has dtype torch.int8"):
        load_checkpoint(tmp_path / "int.pth", DEMO_ARCH, DEMO_NUM_CLASSES)


def test_a_decompression_bomb_is_refused_before_it_is_decoded(tmp_path, monkeypatch):
    import calibration.images as images

    bomb = tmp_path / "bomb.png"
    bomb.write_bytes(png_bomb())
    assert bomb.stat().st_size < 200_000
    decoded = []
    monkeypatch.setattr(images.cv2, "imdecode", lambda *a: decoded.append(1))
    with pytest.raises(UnreadableImage, match="declares 30000 x 30000 pixels"):
        read_image(bomb)
    assert decoded == []
    assert issubclass(UnreadableImage, UserError)


@pytest.mark.parametrize("kind", ["gray", "gray16", "rgb16", "bgra", "1x1"])
def test_odd_images_come_back_as_bgr_uint8(tmp_path, kind):
    rng = np.random.default_rng(0)
    image = {"gray": rng.integers(0, 256, (30, 40), np.uint8), "gray16": rng.integers(0, 65536, (30, 40), np.uint16),
             "rgb16": rng.integers(0, 65536, (30, 40, 3), np.uint16),
             "bgra": rng.integers(0, 256, (30, 40, 4), np.uint8), "1x1": np.full((1, 1, 3), 7, np.uint8)}[kind]
    cv2.imwrite(str(tmp_path / "x.png"), image)
    got, _ = read_image(tmp_path / "x.png")
    assert got.dtype == np.uint8 and got.ndim == 3 and got.shape[2] == 3 and got.shape[:2] == image.shape[:2]


def test_voc_boxes_outside_the_image_are_clipped_and_inverted_ones_dropped(tmp_path):
    year = tmp_path / "VOCdevkit" / "VOC2007"
    for sub in ("Annotations", "JPEGImages", "ImageSets/Main"):
        (year / sub).mkdir(parents=True)
    ids = {"outside": dict(x1="-50", x2="900"), "inverted": dict(x1="200", x2="100"), "inf": dict(x1="inf", x2="9")}
    for name, box in ids.items():
        cv2.imwrite(str(year / "JPEGImages" / f"{name}.jpg"), np.zeros((500, 353, 3), np.uint8))
        fields = dict(width="353", height="500", y1="240", y2="371", **box)
        (year / "Annotations" / f"{name}.xml").write_text(VOC_XML.format(**fields))
    (year / "ImageSets" / "Main" / "test.txt").write_text("\n".join(ids) + "\n")
    data = VOCDataset(tmp_path, "2007", "test")
    by_id = {s.image_id: s for s in data.samples}
    assert sorted(by_id) == ["inverted", "outside"]  # 'inf' does not parse
    assert by_id["outside"].objects[0].box == (0.0, 239.0, 353.0, 371.0)
    assert [o.name for o in by_id["inverted"].objects] == ["person"]  # the dog's inverted box is dropped
    report = " | ".join(data.skipped.lines())
    assert "clipped" in report and "inverted" in report and "do not parse (ValueError): inf" in report
