"""The TensorRT target's parts that need no GPU: version dispatch, build plans, the trtexec line, engine
records, the calibration cache and the pinned batcher. None of this verifies TensorRT itself; that is
tests/gpu/ on a device."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from calibration.stream import CalibrationStream, select_images
from calibration.tensorrt_calibrator import CalibrationCache, PinnedBatcher, preprocessing_record
from export.tensorrt_build import TensorRTOptions, parse_batch, plan_build, trtexec_command
from runtimes.errors import UserError
from runtimes.metadata import VOC_CLASSES, ModelMetadata
from runtimes.preprocess import Preprocessor
from runtimes.tensorrt_engine_file import EngineRecord, check_compatible, read_engine, record_path, write_engine
from runtimes.tensorrt_support import Capabilities, GPUIdentity, parse_version

ROOT = Path(__file__).resolve().parents[1]
JP5, JP6, TRT11 = Capabilities((8, 5)), Capabilities((10, 3)), Capabilities((11, 0))
META = ModelMetadata("ssd300_vgg16", 300, 300, "RGB", [123.0, 117.0, 104.0], [1.0, 1.0, 1.0],
                     ["__background__", *VOC_CLASSES], output_format="decoded")


def test_version_dispatch():
    assert parse_version("8.5.2.2") == (8, 5) and parse_version("10.13.0.35") == (10, 13)
    assert (JP5.always_strongly_typed, JP6.always_strongly_typed, TRT11.always_strongly_typed) == (False, False, True)
    assert not Capabilities((10, 11)).efficient_nms_deprecated and Capabilities((10, 12)).efficient_nms_deprecated
    assert (JP5.default_int8_route(), JP6.default_int8_route(), TRT11.default_int8_route()) == \
        ("implicit", "implicit", "explicit")
    assert JP5.explicit_batch_flag and not JP6.explicit_batch_flag


@pytest.mark.parametrize("caps, options, network, flags, route", [
    (JP5, TensorRTOptions("fp16"), ["EXPLICIT_BATCH"], ["FP16"], None),
    (JP5, TensorRTOptions("int8"), ["EXPLICIT_BATCH"], ["INT8", "FP16"], "implicit"),
    (JP6, TensorRTOptions("int8", int8_route="explicit"), [], ["INT8", "FP16"], "explicit"),
    (JP6, TensorRTOptions("fp32"), [], [], None),
    (TRT11, TensorRTOptions("int8"), [], [], "explicit"),  # strongly typed always: no (deprecated) flag
    (TRT11, TensorRTOptions("fp32"), [], [], None),
    (JP5, TensorRTOptions("int8", dla_core=0), ["EXPLICIT_BATCH"], ["INT8", "FP16", "GPU_FALLBACK"], "implicit"),
])
def test_build_plan(caps, options, network, flags, route):
    plan = plan_build(caps, options)
    assert (plan.network_flags, plan.builder_flags, plan.int8_route) == (network, flags, route)
    assert plan.calibrator == ("entropy" if route == "implicit" else None)


def test_build_plan_picks_the_onnx_variant_tensorrt_builds_from():
    assert plan_build(JP5, TensorRTOptions("fp16")).onnx_variant == "fp32"  # FP16 by builder flag
    assert plan_build(TRT11, TensorRTOptions("fp16")).onnx_variant == "fp16"  # strongly typed: an FP16 model
    assert plan_build(JP6, TensorRTOptions("int8", int8_route="explicit")).onnx_variant == "qdq"
    assert plan_build(TRT11, TensorRTOptions("int8")).onnx_variant == "qdq"
    assert plan_build(JP5, TensorRTOptions("int8")).onnx_variant == "fp32"  # implicit: calibrated by TensorRT
    assert plan_build(TRT11, TensorRTOptions("fp32"), onnx_has_qdq=True).onnx_variant == "fp32"  # already Q/DQ


def test_build_plan_for_a_qdq_model_is_explicit_int8_on_every_version():
    for caps in (JP5, JP6, TRT11):
        plan = plan_build(caps, TensorRTOptions("fp16"), onnx_has_qdq=True)
        assert plan.int8_route == "explicit" and plan.calibrator is None
        assert ("INT8" in plan.builder_flags) == caps.precision_flags


@pytest.mark.parametrize("caps, options, words", [
    (TRT11, TensorRTOptions("int8", int8_route="implicit"), "--int8-route explicit"),
    (JP5, TensorRTOptions("fp32", dla_core=0), "--fp16 or --int8"),
    (JP6, TensorRTOptions("fp16", dla_core=0, batch=(1, 2, 4)), "--batch 4,4,4"),  # DLA: no dynamic shapes
])
def test_impossible_builds_are_refused_with_the_way_out(caps, options, words):
    with pytest.raises(UserError, match=words):
        plan_build(caps, options)


def test_trtexec_command_mirrors_the_plan():
    options = TensorRTOptions("int8", int8_route="explicit", batch=(1, 4, 8), workspace_mib=512)
    line = trtexec_command(Path("m.onnx"), Path("m.engine"), META, options, plan_build(JP5, options), Path("t.cache"))
    for part in ("--onnx=m.onnx", "--saveEngine=m.engine", "--int8", "--fp16", "--memPoolSize=workspace:512M",
                 "--minShapes=images:1x3x300x300", "--optShapes=images:4x3x300x300", "--maxShapes=images:8x3x300x300",
                 "--timingCacheFile=t.cache"):
        assert part in line.split()
    dla = TensorRTOptions("fp16", batch=(2, 2, 2), dla_core=1)
    line = trtexec_command(Path("m.onnx"), Path("m.engine"), META, dla, plan_build(JP5, dla), Path("t.cache"))
    assert {"--useDLACore=1", "--allowGPUFallback", "--maxShapes=images:2x3x300x300"} <= set(line.split())
    strong = trtexec_command(Path("m.onnx"), Path("m.engine"), META, TensorRTOptions("int8"),
                             plan_build(TRT11, TensorRTOptions("int8")), Path("t.cache"))
    assert "--int8" not in strong.split() and "--fp16" not in strong.split()


def test_parse_batch():
    assert parse_batch("1,4,8") == (1, 4, 8) and parse_batch(None) is None
    for bad in ("4,1,8", "1,2", "a,b,c", "0,1,1"):
        with pytest.raises(UserError):
            parse_batch(bad)


# -- engine files -------------------------------------------------------------------------------------

GPU = GPUIdentity("Orin", "8.7")


def _record() -> EngineRecord:
    return EngineRecord(META, "8.5.2.2", GPU, {"precision": "int8"}, "python export/build_engine.py --int8")


def test_engine_record_round_trip(tmp_path):
    engine = tmp_path / "m.engine"
    write_engine(engine, b"PLAN-BYTES", _record())
    plan, record = read_engine(engine)
    assert plan == b"PLAN-BYTES"
    assert record.metadata == META and record.gpu == GPU and record.build == {"precision": "int8"}
    assert json.loads(record_path(engine).read_text())["tensorrt_version"] == "8.5.2.2"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.engine", "m.engine.json"]  # no temporaries left


def test_engine_from_another_version_or_gpu_is_refused_with_the_rebuild_command(tmp_path):
    record = _record()
    check_compatible(record, "8.5.2.2", GPU, "m.engine")
    for version, gpu, words in (("10.3.0", GPU, "built by TensorRT 8.5.2.2, this is TensorRT 10.3.0"),
                                ("8.5.2.2", GPUIdentity("Xavier", "7.2"), "built for Orin \\(compute 8.7\\)")):
        with pytest.raises(UserError, match=words) as err:
            check_compatible(record, version, gpu, "m.engine")
        assert "python export/build_engine.py --int8" in str(err.value)


def test_engine_whose_plan_or_record_is_wrong_is_refused(tmp_path):
    engine = tmp_path / "m.engine"
    engine.write_bytes(b"bare trtexec plan")
    with pytest.raises(UserError, match="no engine record"):
        read_engine(engine)
    write_engine(engine, b"PLAN", _record())
    engine.write_bytes(b"PLAN, replaced")
    with pytest.raises(UserError, match="does not match its record"):
        read_engine(engine)
    record_path(engine).write_text("{not json")
    with pytest.raises(UserError, match="unreadable engine record"):
        read_engine(engine)


def test_interrupted_engine_write_leaves_the_old_engine(tmp_path, monkeypatch):
    engine = tmp_path / "m.engine"
    write_engine(engine, b"GOOD", _record())

    def crash(self):
        raise KeyboardInterrupt

    monkeypatch.setattr(EngineRecord, "to_json", crash)
    with pytest.raises(KeyboardInterrupt):
        write_engine(engine, b"NEW", _record())
    assert engine.read_bytes() == b"GOOD" and len(list(tmp_path.iterdir())) == 2


def test_loading_an_engine_here_says_what_is_missing(tmp_path):
    engine = tmp_path / "m.engine"
    engine.write_bytes(b"a plan")
    code = ("import sys; from runtimes.cli import run_cli; from runtimes.loader import load_detector; "
            f"sys.exit(run_cli(lambda argv: load_detector({str(engine)!r})))")
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "TensorRT is not installed" in result.stderr and "--target openvino" in result.stderr


def test_build_engine_for_tensorrt_without_tensorrt_is_one_line(tmp_path):
    result = subprocess.run([sys.executable, "export/build_engine.py", "--target", "tensorrt", "--int8",
                             "--output", str(tmp_path)], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines()[-1].startswith("error: TensorRT is not installed")
    assert not any(p.suffix == ".engine" for p in tmp_path.iterdir())


# -- calibration --------------------------------------------------------------------------------------

def _cache_record(**change):
    record = {"model_sha256": "ab" * 32, "preprocessing": preprocessing_record(META),
              "images": {"image_list_sha256": "cd" * 32, "images": 300}, "algorithm": "entropy",
              "batch_size": 8, "tensorrt_version": "8.5.2.2"}
    record.update(change)
    return record


def test_calibration_cache_is_reused_only_for_the_same_inputs(tmp_path, capsys):
    path = tmp_path / "m.calib.cache"
    table = b"TRT-8502-EntropyCalibration2\nimages: 3c010a14\n"
    CalibrationCache(path, _cache_record()).save(table)
    same = CalibrationCache(path, _cache_record())
    assert same.load() == table and same.status == "reused"
    for change in ({"model_sha256": "ef" * 32}, {"algorithm": "minmax"}, {"tensorrt_version": "10.3.0"},
                   {"preprocessing": {**preprocessing_record(META), "mean": [0.0, 0.0, 0.0]}},
                   {"images": {"image_list_sha256": "00" * 32, "images": 300}}):
        stale = CalibrationCache(path, _cache_record(**change))
        assert stale.load() is None and stale.status == "stale"
        assert next(iter(change)) in capsys.readouterr().out


def test_foreign_or_corrupt_calibration_cache_is_refused_not_overwritten(tmp_path):
    path = tmp_path / "theirs.cache"
    path.write_bytes(b"TRT-8502-EntropyCalibration2\nimages: 3c010a14\n")
    with pytest.raises(UserError, match="not a calibration cache written by this toolkit"):
        CalibrationCache(path, _cache_record()).load()
    assert path.read_bytes().startswith(b"TRT-8502")
    path.write_bytes(b"# ssd-edge calibration cache 1 {broken\n")
    with pytest.raises(UserError, match="header is corrupt"):
        CalibrationCache(path, _cache_record()).load()


def test_pinned_batcher_fills_one_buffer_with_the_streams_full_batches(voc_mini):
    images = select_images(voc_mini / "VOCdevkit" / "VOC2007" / "JPEGImages", 10, 0)
    preprocessor = Preprocessor(META)
    allocations = []

    def allocate(shape, dtype):
        allocations.append((shape, dtype))
        return np.empty(shape, dtype)

    batcher = PinnedBatcher(CalibrationStream(images, preprocessor, batch_size=4, drop_last=True), allocate)
    expected = list(CalibrationStream(images, preprocessor, batch_size=4, drop_last=True))
    seen = [(id(b), b.copy()) for b in batcher]
    assert allocations == [((4, 3, 300, 300), np.float32)] and len(batcher) == 2 == len(seen)
    assert len({i for i, _ in seen}) == 1  # the same (pinned) buffer every time
    for (_, got), want in zip(seen, expected):
        np.testing.assert_array_equal(got, want)
    assert not np.array_equal(seen[0][1], seen[1][1])
    with pytest.raises(UserError, match="fewer than one batch"):
        PinnedBatcher(CalibrationStream(images, preprocessor, batch_size=16, drop_last=True), allocate)


def test_timing_cache_is_named_per_tensorrt_version_and_gpu():
    from export.tensorrt_build import timing_cache_name

    assert timing_cache_name("10.3.0", GPUIdentity("Orin", "8.7")) == "timing-10.3.0-orin-sm87.cache"
    assert timing_cache_name("8.5.2.2", GPUIdentity("Xavier (AGX)", "7.2")) == "timing-8.5.2.2-xavier-agx-sm72.cache"


def test_batch_profile_only_for_a_dynamic_batch_axis():
    from export.tensorrt_build import batch_profile

    assert batch_profile([-1, 3, 300, 300], TensorRTOptions(batch=(1, 4, 8)), Path("m.onnx")) == (1, 4, 8)
    assert batch_profile([-1, 3, 300, 300], TensorRTOptions(), Path("m.onnx")) == (1, 1, 1)
    assert batch_profile([1, 3, 300, 300], TensorRTOptions(), Path("m.onnx")) is None
    with pytest.raises(UserError, match="m.onnx has a static batch of 1"):
        batch_profile([1, 3, 300, 300], TensorRTOptions(batch=(1, 4, 8)), Path("m.onnx"))


def test_trtexec_line_takes_the_profile_used_and_the_calibration_table():
    options = TensorRTOptions("int8")
    line = trtexec_command(Path("m.onnx"), Path("m.engine"), META, options, plan_build(JP5, options),
                           Path("t.cache"), profile=(1, 1, 1), calib_table=Path("m.calib.table")).split()
    assert "--calib=m.calib.table" in line and "--minShapes=images:1x3x300x300" in line
