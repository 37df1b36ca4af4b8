"""apps/calibration_sweep.py: one fresh INT8 build per (route, algorithm, image count), scored against FP32 on the
same runtime, as a table, CSV and plot; bad choices refused with one line."""

from __future__ import annotations

import csv

import pytest

from apps.calibration_sweep import main as sweep_cli
from calibration.stream import select_images
from calibration.voc import VOCDataset
from export.onnx_model import load_onnx, read_metadata
from quantization.int8_sweep import first_images, markdown, sweep, write_sweep
from runtimes.errors import UserError


@pytest.mark.parametrize("argv, words", [
    (["--routes", "tensorflow"], "--routes: unknown tensorflow; choose from qdq, openvino"),
    (["--routes", "openvino", "--algorithms", "entropy"], "--algorithms: entropy not offered by openvino"),
    (["--counts", "32,many"], "--counts takes whole numbers"),
    (["--counts", "0,10"], "every count must be at least 1"),
])
def test_bad_choices_are_one_line(argv, words, tmp_path):
    with pytest.raises(UserError, match=words):
        sweep_cli(argv + ["--output-dir", str(tmp_path)])


def test_smaller_sets_are_the_first_images_of_the_larger(demo_model):
    images = select_images(demo_model[2], 12, 0, split="train")
    small = first_images(images, 5)
    assert small.paths == images.paths[:5] == select_images(demo_model[2], 5, 0, split="train").paths
    assert small.content_sha256 == select_images(demo_model[2], 5, 0, split="train").content_sha256


@pytest.mark.slow
def test_sweep_builds_and_scores_every_point(demo_model, tmp_path):
    _, onnx_path, data = demo_model
    meta = read_metadata(load_onnx(onnx_path), str(onnx_path))
    images = select_images(data, 8, 0, split="train")
    val = VOCDataset(data, "2007", "val", meta.class_names[1:])
    val.samples = val.samples[:30]
    lines = []
    points = sweep(onnx_path, meta, images, val, ("qdq", "openvino"), (4, 8, 50),
                   {"qdq": ["minmax", "percentile"], "openvino": ["mixed"]}, work_dir=tmp_path, log=lines.append)
    assert [(p.route, p.algorithm, p.images) for p in points] == [
        ("qdq", "minmax", 4), ("qdq", "minmax", 8), ("qdq", "percentile", 4), ("qdq", "percentile", 8),
        ("openvino", "mixed", 4), ("openvino", "mixed", 8)]
    assert "skipping counts 50" in lines[0]
    assert len({p.fp32_map for p in points if p.route == "qdq"}) == 1 and all(p.build_seconds > 0 for p in points)
    # Every point a working INT8 model (half of FP32's mAP kept: CPUs move INT8 mAPs by tenths of a point),
    # its drop taken against FP32 on the same runtime.
    assert all(p.fp32_map / 2 < p.map <= 1 and p.drop == pytest.approx(100 * (p.fp32_map - p.map)) for p in points)
    written = write_sweep(points, tmp_path / "out", "demo")
    assert [p.name for p in written] == ["calibration_sweep.md", "calibration_sweep.csv", "calibration_sweep.png"]
    rows = list(csv.DictReader(open(written[1])))
    assert [(r["route"], r["algorithm"], int(r["images"])) for r in rows] == [
        (p.route, p.algorithm, p.images) for p in points]
    table = markdown(points, "demo")
    for p in points:
        assert f"{100 * p.map:.2f} / {p.drop:+.2f} / {p.build_seconds:.0f} s" in table
    assert table.count("\n| ") == 4  # header + three (route, algorithm) rows
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".calibration_sweep")]
