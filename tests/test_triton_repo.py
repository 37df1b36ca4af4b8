"""The Triton model repository from ``export/build_engine.py --target triton`` (export/triton_repo.py).

Every config.pbtxt is parsed into Triton's own ``inference.ModelConfig`` protobuf (tritonclient ships the
generated module) with protobuf's ``text_format``, which rejects unknown fields and malformed values. The
TensorRT plans come from the build against the labelled TEST DOUBLE of tensorrt (tests/tensorrt_double.py):
placeholder plans with real engine records, not engines.
"""

from __future__ import annotations

import json
import shutil
import sys
import types
from pathlib import Path

import pytest

from export.build_engine import main as build
from export.onnx_model import require_metadata
from runtimes.errors import UserError
from runtimes.metadata import ModelMetadata
from runtimes.served_model import PARAMETER_KEY

model_config_pb2 = pytest.importorskip("tritonclient.grpc.model_config_pb2",
                                       reason="tritonclient is not installed: pip install 'tritonclient[http,grpc]'")
text_format = pytest.importorskip("google.protobuf.text_format")


def parse(folder: Path):
    """config.pbtxt of ``folder`` as Triton's ModelConfig (ParseError on anything Triton would not read)."""
    return text_format.Parse((folder / "config.pbtxt").read_text(encoding="utf-8"), model_config_pb2.ModelConfig())


def metadata_of(config) -> ModelMetadata:
    return ModelMetadata.from_json(config.parameters[PARAMETER_KEY].string_value, "config.pbtxt")


def dims(tensor) -> list:
    return list(tensor.dims)


@pytest.fixture(scope="module")
def onnx_files(demo_model):
    """(static batch-1 ONNX, dynamic-batch ONNX) of the demo model; the dynamic one through
    export_checkpoint(..., dynamic_batch=True) (demo_onnx caches it)."""
    from export.demo_model import demo_onnx

    return demo_model[1], demo_onnx(verbose=False, dynamic_batch=True)


@pytest.fixture(scope="module")
def irs(onnx_files, tmp_path_factory):
    """FP32 IRs of the static and the dynamic ONNX."""
    from export.openvino_build import build_openvino

    folder = tmp_path_factory.mktemp("ir")
    out = []
    for onnx_path, name in zip(onnx_files, ("static", "dynamic")):
        out.append(build_openvino(onnx_path, require_metadata(onnx_path), "fp32", folder / f"{name}.xml",
                                  log=lambda _: None).path)
    return out


def test_static_onnx_is_served_as_is_with_batch_in_the_dims(onnx_files, tmp_path, capsys):
    static, _ = onnx_files
    assert build(["--target", "triton", "--onnx", str(static), "--model-name", "ssd", "--output", str(tmp_path)]) == 0
    config = parse(tmp_path / "ssd")
    assert config.name == "ssd" and config.backend == "onnxruntime" and config.default_model_filename == "model.onnx"
    assert config.max_batch_size == 0 and not config.HasField("dynamic_batching")  # a static batch cannot be batched
    assert [(t.name, dims(t)) for t in config.input] == [("images", [1, 3, 320, 320])]
    assert [(t.name, dims(t)) for t in config.output] == [("bbox_regression", [1, 3234, 4]),
                                                          ("cls_logits", [1, 3234, 6])]
    assert all(t.data_type == model_config_pb2.TYPE_FP32 for t in list(config.input) + list(config.output))
    assert metadata_of(config) == require_metadata(static)
    assert (tmp_path / "ssd" / "1" / "model.onnx").read_bytes() == static.read_bytes()
    out = capsys.readouterr().out
    assert f"tritonserver --model-repository {tmp_path.resolve()}" in out and "http://HOST:8000/ssd" in out


def test_dynamic_onnx_gets_dynamic_batching_and_instance_options(onnx_files, tmp_path):
    _, dynamic = onnx_files
    build(["--target", "triton", "--onnx", str(dynamic), "--model-name", "ssd", "--max-batch", "16",
           "--preferred-batch", "4,8", "--queue-delay-us", "250", "--instance-count", "2", "--instance-kind", "cpu",
           "--output", str(tmp_path)])
    config = parse(tmp_path / "ssd")
    assert config.max_batch_size == 16
    assert dims(config.input[0]) == [3, 320, 320] and dims(config.output[1]) == [3234, 6]  # batch axis left out
    assert list(config.dynamic_batching.preferred_batch_size) == [4, 8]
    assert config.dynamic_batching.max_queue_delay_microseconds == 250
    assert [(g.count, g.kind) for g in config.instance_group] == [(2, model_config_pb2.ModelInstanceGroup.KIND_CPU)]
    meta = metadata_of(config)
    assert meta == require_metadata(dynamic) and meta.inputs.dynamic_batch

    build(["--target", "triton", "--onnx", str(dynamic), "--model-name", "ssd", "--no-dynamic-batching",
           "--output", str(tmp_path)])
    config = parse(tmp_path / "ssd")
    assert config.max_batch_size == 8 and not config.HasField("dynamic_batching")


@pytest.mark.parametrize("which", [0, 1], ids=["static", "dynamic"])
def test_ir_takes_nhwc_pixels_and_ships_xml_and_bin(irs, tmp_path, which):
    import openvino as ov

    from runtimes.openvino_runner import read_metadata

    xml = irs[which]
    build(["--target", "triton", "--ir", str(xml), "--model-name", "ssd", "--ovms", "--output", str(tmp_path)])
    config = parse(tmp_path / "ssd")
    assert config.backend == "openvino" and config.default_model_filename == "model.xml"
    assert config.instance_group[0].kind == model_config_pb2.ModelInstanceGroup.KIND_CPU
    expected = [1, 320, 320, 3] if which == 0 else [320, 320, 3]
    assert config.max_batch_size == (0 if which == 0 else 8) and dims(config.input[0]) == expected
    meta = metadata_of(config)
    assert meta == read_metadata(ov.Core().read_model(str(xml)), str(xml))
    assert (meta.inputs.layout, meta.inputs.normalisation_in_graph) == ("NHWC", True)
    for suffix in (".xml", ".bin"):
        assert (tmp_path / "ssd" / "1" / f"model{suffix}").read_bytes() == xml.with_suffix(suffix).read_bytes()
    ovms = json.loads((tmp_path / "config.json").read_text())
    assert ovms == {"model_config_list": [{"config": {"name": "ssd", "base_path": "ssd", "target_device": "CPU"}}]}
    assert ModelMetadata.from_json((tmp_path / "ssd" / "metadata.json").read_text(), "metadata.json") == meta


def test_ovms_config_keeps_the_other_models_and_needs_an_ir(irs, onnx_files, tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"model_config_list": [{"config": {"name": "other",
                                                                                       "base_path": "other"}}]}))
    build(["--target", "triton", "--ir", str(irs[0]), "--model-name", "ssd", "--ovms", "--output", str(tmp_path)])
    build(["--target", "triton", "--ir", str(irs[0]), "--model-name", "ssd", "--ovms", "--output", str(tmp_path)])
    names = [e["config"]["name"] for e in json.loads((tmp_path / "config.json").read_text())["model_config_list"]]
    assert names == ["other", "ssd"]
    with pytest.raises(UserError, match="--ovms serves OpenVINO IR"):
        build(["--target", "triton", "--onnx", str(onnx_files[0]), "--ovms", "--output", str(tmp_path / "x")])


@pytest.fixture
def double(monkeypatch):
    """The TEST DOUBLE of tensorrt and pycuda.driver (as in tests/test_tensorrt_orchestration.py)."""
    from tests.tensorrt_double import fake_cuda, fake_tensorrt

    def install(version: str):
        cuda = fake_cuda()
        trt = fake_tensorrt(version, cuda)
        package = types.ModuleType("pycuda")
        package.driver = cuda  # type: ignore[attr-defined]
        monkeypatch.setitem(sys.modules, "tensorrt", trt)
        monkeypatch.setitem(sys.modules, "pycuda", package)
        monkeypatch.setitem(sys.modules, "pycuda.driver", cuda)

    return install


def test_plans_from_engine_records_static_dynamic_and_with_nms(double, demo_model, tmp_path):
    from runtimes.tensorrt_engine_file import read_engine

    double("10.3.0")
    engines = tmp_path / "engines"
    build(["--target", "tensorrt", "--fp16", "--output", str(engines)])
    build(["--target", "tensorrt", "--fp16", "--batch", "1,4,16", "--nms", "engine", "--output", str(engines)])
    static, with_nms = engines / "ssdlite320_shapes_fp16.engine", engines / "ssdlite320_shapes_fp16_nms.engine"
    repo = tmp_path / "repo"

    build(["--target", "triton", "--engine", str(static), "--model-name", "plain", "--output", str(repo)])
    config = parse(repo / "plain")
    assert config.platform == "tensorrt_plan" and config.default_model_filename == "model.plan"
    assert config.max_batch_size == 0 and dims(config.input[0]) == [1, 3, 320, 320]
    assert [(t.name, dims(t)) for t in config.output] == [("bbox_regression", [1, 3234, 4]),
                                                          ("cls_logits", [1, 3234, 6])]
    assert config.instance_group[0].kind == model_config_pb2.ModelInstanceGroup.KIND_GPU
    assert metadata_of(config) == read_engine(static)[1].metadata
    assert (repo / "plain" / "1" / "model.plan").read_bytes() == static.read_bytes()  # the bare plan

    build(["--target", "triton", "--engine", str(with_nms), "--model-name", "nms", "--output", str(repo)])
    config = parse(repo / "nms")
    assert config.max_batch_size == 16 and dims(config.input[0]) == [3, 320, 320]  # the profile's largest batch
    k = read_engine(with_nms)[1].metadata.max_detections
    assert [(t.name, dims(t), t.data_type) for t in config.output] == [
        ("num_detections", [1], model_config_pb2.TYPE_INT32), ("detection_boxes", [k, 4], model_config_pb2.TYPE_FP32),
        ("detection_scores", [k], model_config_pb2.TYPE_FP32), ("detection_classes", [k], model_config_pb2.TYPE_INT32)]
    assert metadata_of(config).output_format == "nms"

    with pytest.raises(UserError, match=r"batch profile ends at 16.*--batch 1,OPT,32"):
        build(["--target", "triton", "--engine", str(with_nms), "--max-batch", "32", "--output", str(repo)])
    with pytest.raises(UserError, match="runs on a GPU only"):
        build(["--target", "triton", "--engine", str(static), "--instance-kind", "cpu", "--output", str(repo)])


def test_bad_options_are_one_line_errors_and_write_nothing(onnx_files, tmp_path):
    _, dynamic = onnx_files
    with pytest.raises(UserError, match=r"--preferred-batch 12: .*within 1\.\.8"):
        build(["--target", "triton", "--onnx", str(dynamic), "--preferred-batch", "4,12", "--output", str(tmp_path)])
    with pytest.raises(UserError, match="one model"):
        build(["--target", "triton", "--onnx", str(dynamic), "--ir", "x.xml", "--output", str(tmp_path)])
    with pytest.raises(UserError, match="build it first"):
        build(["--target", "triton", "--int8", "--output", str(tmp_path)])
    assert list(tmp_path.iterdir()) == []


def test_a_failed_copy_keeps_the_previous_model_folder(onnx_files, tmp_path, monkeypatch):
    static, dynamic = onnx_files
    build(["--target", "triton", "--onnx", str(static), "--model-name", "ssd", "--output", str(tmp_path)])
    before = (tmp_path / "ssd" / "config.pbtxt").read_text()

    def broken_copy(src, dst, *args, **kwargs):
        Path(dst).write_bytes(b"half")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(shutil, "copyfile", broken_copy)
    with pytest.raises(OSError, match="No space left"):
        build(["--target", "triton", "--onnx", str(dynamic), "--model-name", "ssd", "--output", str(tmp_path)])
    monkeypatch.undo()
    assert (tmp_path / "ssd" / "config.pbtxt").read_text() == before
    assert (tmp_path / "ssd" / "1" / "model.onnx").read_bytes() == static.read_bytes()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ssd"]  # no staging folder left behind

    build(["--target", "triton", "--onnx", str(dynamic), "--model-name", "ssd", "--output", str(tmp_path)])
    assert parse(tmp_path / "ssd").max_batch_size == 8 and sorted(p.name for p in tmp_path.iterdir()) == ["ssd"]
