"""The per-layer INT8 sensitivity report: a row per quantized layer named as in the ONNX file, a ranking that
holds on frames it was not made from (the report's own consistency check), the three files.

The Q/DQ reports run on models made hard to quantize at known layers (tests/hard_to_quantize.py): which
layers rank worst, and that keeping them in float beats keeping the best-ranked one, then follow from the
model on any CPU; on the plain demo model those margins are a few tenths of a dB (docs/int8.md)."""

from __future__ import annotations

import csv
import math

import numpy as np
import pytest

from calibration.stream import select_images
from calibration.voc import VOCDataset
from export.onnx_model import load_onnx, read_metadata
from quantization.int8_report import KeptAlone, SensitivityReport, markdown, qdq_report
from quantization.int8_sensitivity import LayerError
from tests.hard_to_quantize import HEAD_CONVS, with_outlier_channel

# SSD300's first feature map's class scores (5776 of 8732 anchors). Its random-weight features are not bounded
# like the demo's ReLU6 outputs: an outlier far above any of them rounds them all to 0 all the same.
SSD300_CONV = "/head/classification_head/module_list.0/Conv"
SSD300_OUTLIER = 1e7


def _check_files(folder, report, onnx_path):
    """The three files, a row per quantized Conv (every Conv of these models), most sensitive first."""
    rows = list(csv.DictReader(open(folder / "int8_report.csv")))
    convs = {n.name for n in load_onnx(onnx_path).graph.node if n.op_type == "Conv"}
    assert len(rows) == len(report.layers) == len(convs) and {r["layer"] for r in rows} == convs
    gains = [float(r["float_gain_db"]) for r in rows]
    assert gains == sorted(gains, reverse=True)  # most sensitive first
    md = (folder / "int8_report.md").read_text()
    assert md.count("\n| ") == len(rows) + 1 and f"`{rows[0]['layer']}`" in md
    assert (folder / "int8_report.png").stat().st_size > 10_000
    return rows, md


def test_consistency_check_compares_worst_with_best():
    layers = [LayerError("/a/Conv", 20.0, 15.0, 0.5), LayerError("/b/Conv", 40.0, 30.0, 0.01)]
    report = SensitivityReport("t", layers, 25.0, 4, 4, [KeptAlone("/a/Conv", 25.4), KeptAlone("/b/Conv", 25.1)])
    assert report.consistent and "consistency check passed" in markdown(report)
    report.kept_alone[0].output_sqnr_db = 24.9
    assert not report.consistent and "consistency check FAILED" in markdown(report)


@pytest.mark.slow
def test_qdq_report_on_the_demo_model(demo_model, tmp_path):
    _, onnx_path, data = demo_model
    hard = with_outlier_channel(onnx_path, tmp_path / onnx_path.name)
    meta = read_metadata(load_onnx(hard), str(hard))
    images = select_images(data, 16, 0, split="train")
    val = VOCDataset(data, "2007", "val", meta.class_names[1:])
    val.samples = val.samples[:40]  # the mAP column's machinery, on a few images
    report = qdq_report(hard, meta, images, tmp_path / "report", val, worst=2, frames=8, log=lambda _: None,
                        show_progress=False)
    rows, md = _check_files(tmp_path / "report", report, hard)
    assert sorted(r["layer"] for r in rows[:2]) == sorted(HEAD_CONVS)  # the layers made sensitive rank worst
    assert [k.name for k in report.kept_alone] == [rows[0]["layer"], rows[1]["layer"], rows[-1]["layer"]]
    # Each head kept alone in float gives back what its quantized input destroyed, so one of them gains mAP
    # over the best-ranked layer in float (the other head stays destroyed in all three).
    maps = [k.map for k in report.kept_alone]
    assert all(m is not None and 0 <= m <= 1 for m in maps) and max(maps[:2]) > maps[2]
    # The check, on 4 frames the ranking did not see: the worst-ranked layer in float helps more.
    assert report.consistent and "consistency check passed" in md
    # A layer's own error: the outlier-fed ones lose their whole input; every other is an ordinary int8 layer.
    alone = {r["layer"]: float(r["sqnr_alone_db"]) for r in rows}
    assert all(map(math.isfinite, alone.values()))
    assert max(alone[n] for n in HEAD_CONVS) < min(v for n, v in alone.items() if n not in HEAD_CONVS)
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


@pytest.mark.slow
def test_qdq_report_on_ssd300_with_random_weights(exported, voc_mini, tmp_path):
    _, _, onnx_path = exported("ssd300_vgg16")
    hard = with_outlier_channel(onnx_path, tmp_path / "hard.onnx", [SSD300_CONV], SSD300_OUTLIER)
    meta = read_metadata(load_onnx(hard), str(hard))
    images = select_images(voc_mini, 4, 0)
    report = qdq_report(hard, meta, images, tmp_path / "report", None, worst=1, frames=4, log=lambda _: None,
                        show_progress=False)
    rows, md = _check_files(tmp_path / "report", report, hard)
    assert rows[0]["layer"] == SSD300_CONV
    assert report.consistent and "consistency check passed" in md
    assert np.isfinite(report.output_sqnr_db)


@pytest.mark.slow
def test_openvino_layer_kept_alone_in_float_changes_that_layer_only(demo_model, tmp_path):
    import openvino as ov

    from calibration.images import read_image
    from export.openvino_build import build_openvino, float_layers
    from quantization.openvino_sensitivity import (
        ir_metadata_of,
        keep_layer_in_float,
        onnx_name,
        openvino_output_sqnr_db,
        quantized_layers,
    )
    from runtimes.preprocess import Preprocessor

    _, onnx_path, data = demo_model
    meta = read_metadata(load_onnx(onnx_path), str(onnx_path))
    images = select_images(data, 8, 0, split="train")
    fp32 = build_openvino(onnx_path, meta, "fp32", tmp_path / "fp32.xml", log=lambda _: None).path
    int8 = build_openvino(onnx_path, meta, "int8", tmp_path / "int8.xml", images, log=lambda _: None).path
    core = ov.Core()
    before = float_layers(core.read_model(str(int8)))
    layer = onnx_name(quantized_layers(core.read_model(str(int8)))[5].get_friendly_name())
    kept = keep_layer_in_float(int8, fp32, layer, tmp_path / "kept.xml")
    after = float_layers(core.read_model(str(kept)))
    assert [onnx_name(n) for n in after if n not in before] == [layer]
    preprocess = Preprocessor(ir_metadata_of(fp32))
    frames = [preprocess(read_image(p)[0]) for p in images.paths[:2]]
    assert openvino_output_sqnr_db(fp32, kept, frames)["mean"] != openvino_output_sqnr_db(fp32, int8, frames)["mean"]
