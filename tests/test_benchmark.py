"""apps/benchmark.py: statistics on known inputs, one row (or a reasoned skip) per combination, outputs."""

from __future__ import annotations

import csv
import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from benchmarking.stats import fps, iterations_for, summarize

ROOT = Path(__file__).resolve().parents[1]


def test_summary_statistics_on_known_values():
    s = summarize([i / 1000 for i in range(1, 101)])  # 1..100 ms
    assert s["p50"] == pytest.approx(50.5)
    assert s["p90"] == pytest.approx(90.1)
    assert s["p99"] == pytest.approx(99.01)
    assert s["mean"] == pytest.approx(50.5) and s["min"] == 1 and s["max"] == 100 and s["n"] == 100
    assert summarize([0.004])["p99"] == pytest.approx(4.0)
    with pytest.raises(ValueError):
        summarize([])


def test_rates_and_iteration_choice():
    assert fps(20.0) == pytest.approx(50.0)
    assert fps(20.0, batch=4) == pytest.approx(200.0)
    assert iterations_for(10.0) == 300  # 3 s of 10 ms calls
    assert iterations_for(500.0) == 50  # never fewer than 50
    assert iterations_for(0.001) == 2000  # capped


@pytest.mark.slow
def test_every_combination_gives_a_row_or_a_reason(tmp_path, demo_model):
    out = tmp_path / "bench"
    cmd = [sys.executable, "apps/benchmark.py", "--runtimes", "pytorch,onnxruntime,openvino,tensorrt",
           "--precisions", "fp32,fp16,int8", "--iterations", "8", "--warmup", "1", "--calib-images", "20",
           "--split", "val", "--no-benchmark-app", "--output-dir", str(out),
           "--build-dir", str(tmp_path / "models")]
    result = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stderr[-3000:]
    data = json.loads((out / "benchmark.json").read_text())
    rows = {(r["runtime"], r["precision"]): r for r in data["rows"]}
    assert len(rows) == 12
    ok = {k for k, r in rows.items() if r["status"] == "ok"}
    assert ok == {("pytorch", "fp32"), ("onnxruntime", "fp32"), ("onnxruntime", "fp16"), ("onnxruntime", "int8"),
                  ("openvino", "fp32"), ("openvino", "fp16"), ("openvino", "int8")}
    assert rows[("onnxruntime", "int8")]["model"].endswith("_int8_qdq.onnx")
    assert rows[("onnxruntime", "fp16")]["model"].endswith("_fp16.onnx")
    for key, row in rows.items():
        if key not in ok:
            assert row["status"].startswith("unavailable: ") and len(row["status"]) > 20
    trt = rows[("tensorrt", "fp32")]["status"]
    assert "no CUDA GPU" in trt or "not installed" in trt
    for key in ok:
        row = rows[key]
        lat = row["latency_ms"]["end_to_end"]
        assert row["iterations"] == 8 and len(row["raw_end_to_end_ms"]) == 8
        assert lat["p50"] <= lat["p90"] <= lat["p99"] <= lat["max"]
        assert row["fps"] == pytest.approx(1000 / lat["mean"])
        assert 0.5 < row["map_voc07"] <= 1.0 and row["peak_rss_mb"] > 50 and row["size_mb"] > 0.5
    with open(out / "benchmark.csv") as f:
        table = list(csv.DictReader(f))
    assert len(table) == 12
    for line in table:
        row = rows[(line["runtime"], line["precision"])]
        if row["status"] == "ok":
            assert math.isclose(float(line["end_to_end_p50_ms"]), row["latency_ms"]["end_to_end"]["p50"])
            assert math.isclose(float(line["map_voc07"]), row["map_voc07"])
    md = (out / "benchmark.md").read_text()
    assert md.count("\n") == 14 and "| pytorch | FP32 |" in md
    assert (out / "benchmark.png").stat().st_size > 10_000
    assert data["environment"]["cpu_count"] >= 1 and data["environment"]["openvino_version"]


def test_benchmark_app_cross_check_runs_side_by_side(demo_irs):
    from benchmarking.measure import benchmark_app_cross_check
    from runtimes.loader import load_detector

    detector = load_detector(demo_irs["fp32"])
    frame = np.full((240, 320, 3), 90, np.uint8)
    check = benchmark_app_cross_check(detector, str(demo_irs["fp32"]), frame, rounds=2, calls=20)
    detector.close()
    assert len(check["benchmark_app_runs_ms"]) == 2 == len(check["inference_back_to_back_runs_ms"])
    runs = check["benchmark_app_runs_ms"] + check["inference_back_to_back_runs_ms"]
    assert all(0 < t < 1000 for t in runs)  # a latency a second long is no measurement of this small model
    assert max(runs) < 10 * min(runs)  # both ways time the same model on the same frame: not 10x apart
    ratio = check["inference_back_to_back_ms"] / check["benchmark_app_ms"]
    assert check["inference_vs_benchmark_app"] == round(ratio, 3)
    assert check["inference_within_10pct_of_benchmark_app"] == (ratio <= 1.10)


@pytest.mark.slow
def test_nms_inside_the_model_rows_give_the_reference_accuracy(tmp_path, demo_model):
    out = tmp_path / "bench"
    cmd = [sys.executable, "apps/benchmark.py", "--runtimes", "onnxruntime,openvino", "--precisions", "fp32",
           "--nms", "engine", "--iterations", "8", "--warmup", "1", "--split", "val", "--no-benchmark-app",
           "--output-dir", str(out), "--build-dir", str(tmp_path / "models")]
    result = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stderr[-3000:]
    rows = {r["runtime"]: r for r in json.loads((out / "benchmark.json").read_text())["rows"]}
    assert rows["onnxruntime"]["nms"] == "host" and rows["openvino"]["nms"] == "engine"
    assert rows["openvino"]["model"].endswith("_fp32_nms.xml")
    # NMS inside the IR finds what the host post-processor finds: the same mAP as the reference row.
    assert rows["openvino"]["map_voc07"] == pytest.approx(rows["onnxruntime"]["map_voc07"], abs=2e-4)
    assert "| openvino (NMS in model) | FP32 |" in (out / "benchmark.md").read_text()


def test_the_rows_runtimes_and_their_throughput_options_come_from_the_registry(monkeypatch, demo_model, tmp_path):
    """A runtime registered for IR files gets rows built by the OpenVINO target; one that opens only URLs gets
    none; the throughput column loads a runtime with the options its registration carries."""
    import runtimes.loader as loader
    from benchmarking.measure import _throughput
    from benchmarking.plan import REFERENCE, PlanOptions, benchmark_runtimes, build_target, plan_rows
    from calibration.images import read_image
    from runtimes.onnxruntime_runner import OnnxRuntimeDetector

    loader.registered_runtimes()  # the built-in runners found first, so the additions below are not overwritten
    seen = []

    def toy(location, **options):
        seen.append(options)
        return OnnxRuntimeDetector(str(demo_model[1]))

    monkeypatch.setitem(loader._REGISTRY, "toy-ir", loader.Runtime("toy-ir", (".xml",), toy))
    monkeypatch.setitem(loader._REGISTRY, "toy-url", loader.Runtime("toy-url", ("toy://",), toy))
    monkeypatch.setitem(loader._REGISTRY, "toy-file", loader.Runtime("toy-file", (".toy",), toy,
                                                                     throughput_options={"streams": 2}))
    names = benchmark_runtimes()
    assert names[0] == REFERENCE and {"onnxruntime", "openvino", "tensorrt", "toy-ir"} <= set(names)
    assert "kserve" not in names and "toy-url" not in names and "toy-file" not in names
    assert [build_target(n) for n in ("onnxruntime", "openvino", "tensorrt", "toy-ir")] == \
        ["onnx", "openvino", "tensorrt", "openvino"]
    (row,) = plan_rows(PlanOptions(["toy-url"], ["fp32"]))
    assert row["status"].startswith("unavailable: toy-url opens no file a build makes")
    model = tmp_path / "m.toy"
    model.write_bytes(b"the toy factory opens the demo ONNX whatever the file")
    frames = [read_image(p)[0] for p in sorted((demo_model[2] / "VOCdevkit/VOC2007/JPEGImages").glob("*.jpg"))[:2]]
    rate, note = _throughput({"runtime": "toy-file", "model": str(model)}, None, frames, 2)
    assert seen == [{"streams": 2}] and rate > 0 and note.endswith("2 requests, streams 2")


@pytest.mark.slow
def test_onnx_runtime_rows_are_built_through_export_build_and_kept_while_their_inputs_stay(demo_model, tmp_path):
    import dataclasses
    import shutil

    import onnx

    from benchmarking.plan import PlanOptions, model_request, plan_rows
    from export.build import build
    from export.build_request import SourceSpec
    from export.onnx_model import load_onnx, read_metadata, write_metadata

    options = PlanOptions(["onnxruntime"], ["fp32", "fp16", "int8"], calib_images=8)
    rows = plan_rows(options)
    assert [r["status"] for r in rows] == ["planned"] * 3

    def models(options, source=SourceSpec(), precisions=("fp32", "fp16", "int8")):
        return {r["precision"]: build(model_request(r, options, source, tmp_path), log=lambda _: None)
                for r in rows if r["precision"] in precisions}

    def meta(path):
        return read_metadata(load_onnx(path), str(path))

    first = models(options)
    assert all(result.built for result in first.values())
    assert first["int8"].path.name.endswith("_int8_qdq.onnx") and first["fp16"].path.name.endswith("_fp16.onnx")
    int8 = meta(first["int8"].path)
    assert (int8.precision, int8.quantization) == ("int8", "qdq")
    assert int8.extra["quantization"]["calibration"]["images"] == 8
    assert meta(first["fp16"].path).precision == "fp16"
    assert not any(result.built for result in models(options).values())  # the same inputs: all kept
    nine = models(dataclasses.replace(options, calib_images=9))  # other images: only the INT8 model is rebuilt
    assert [p for p, result in nine.items() if result.built] == ["int8"]
    assert meta(nine["int8"].path).extra["quantization"]["calibration"]["images"] == 9
    other = tmp_path / "src" / demo_model[1].name  # another source ONNX (same network, other metadata): rebuilt
    other.parent.mkdir()
    shutil.copyfile(demo_model[1], other)
    model = load_onnx(other)
    write_metadata(model, meta(demo_model[1]).replace(score_threshold=0.02))
    onnx.save(model, str(other))
    assert models(options, SourceSpec(onnx=other), ("fp16",))["fp16"].built
