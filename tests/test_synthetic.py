from __future__ import annotations

import filecmp
import subprocess
import sys
from pathlib import Path

import pytest

from calibration.synthetic import SHAPE_CLASSES, generate
from calibration.voc import VOCDataset

ROOT = Path(__file__).resolve().parents[1]


def test_same_seed_same_files_other_seed_other_files(tmp_path):
    splits = {"train": 6, "val": 2, "test": 3}
    a = generate(tmp_path / "a", seed=7, splits=splits)
    b = generate(tmp_path / "b", seed=7, splits=splits)
    c = generate(tmp_path / "c", seed=8, splits=splits)
    files = sorted(p.relative_to(a) for p in a.rglob("*") if p.is_file())
    assert len(files) == 2 * 11 + 4 + 1 + 1  # images + annotations, 4 splits, classes.txt, DATASET.json
    for rel in files:
        assert filecmp.cmp(a / rel, b / rel, shallow=False), rel
    img = "VOCdevkit/VOC2007/JPEGImages/000000.jpg"
    assert not filecmp.cmp(a / img, c / img, shallow=False)


def test_generated_set_reads_as_voc_with_varied_objects(tmp_path):
    root = generate(tmp_path / "d", seed=1, splits={"train": 40, "test": 5})
    data = VOCDataset(root, "2007", "train")
    assert data.class_names == list(SHAPE_CLASSES)
    assert len(data) == 40 and data.skipped.total == 0
    boxes = [o.box for s in data.samples for o in s.objects]
    widths = [b[2] - b[0] for b in boxes]
    aspect = [(b[2] - b[0]) / (b[3] - b[1]) for b in boxes]
    assert set(data.class_counts()) == set(SHAPE_CLASSES)
    assert min(widths) < 40 and max(widths) > 150
    assert min(aspect) < 0.7 and max(aspect) > 1.4


@pytest.mark.parametrize("flag,value", [("--frames", "20"), ("--sequences", "0")])
def test_tracking_set_too_small_to_generate_is_one_line_and_writes_nothing(tmp_path, flag, value):
    out = tmp_path / "tracks"
    result = subprocess.run([sys.executable, "calibration/synthetic_tracks.py", "--output", str(out), flag, value],
                            cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr[-2000:]
    assert result.stderr.strip().splitlines() == [result.stderr.strip()] and "at least 51 frames" in result.stderr
    assert not out.exists() and list(tmp_path.iterdir()) == []
