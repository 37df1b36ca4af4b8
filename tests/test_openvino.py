"""The OpenVINO target, end to end on real files: IR builds, parity with ONNX Runtime, accuracy by precision."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from calibration.evaluation import evaluate_detector
from calibration.images import read_image
from calibration.voc import VOCDataset
from runtimes.loader import load_detector
from runtimes.metadata import InputSpec
from runtimes.preprocess import Preprocessor
from tests.matching import assert_same_detections, matched
from tests.reference_models import voc_mini_images

ROOT = Path(__file__).resolve().parents[1]


def demo_test_images(data_root: Path, count: int = 60):
    return sorted((data_root / "VOCdevkit/VOC2007/JPEGImages").glob("*.jpg"))[-count:]


def test_fp32_ir_gives_the_same_detections_as_onnxruntime(demo_model, demo_irs, voc_mini):
    _, onnx_path, data = demo_model
    reference = load_detector(onnx_path)
    ir = load_detector(demo_irs["fp32"])
    hits = total = 0
    for path in voc_mini_images() + demo_test_images(data):
        image, _ = read_image(path)
        h, t = matched(reference(image), ir(image), min_score=0.05)
        hits, total = hits + h, total + t
    assert total > 100
    assert hits / total >= 0.99, f"{hits}/{total}"


def test_folded_preprocessing_equals_the_shared_one(demo_model, demo_irs):
    _, onnx_path, data = demo_model
    folded = load_detector(demo_irs["fp32"])
    host = load_detector(onnx_path, "openvino", fold_preprocessing=False)
    for path in demo_test_images(data, 10):
        image, _ = read_image(path)
        # Same arithmetic, different order of float operations: ties may swap, nothing else moves.
        assert_same_detections(folded(image), host(image), score_tol=1e-4, box_tol=0.05)


def test_ir_carries_metadata_and_what_it_was_built_from(demo_irs):
    meta = load_detector(demo_irs["int8"]).meta
    assert meta.arch == "ssdlite320_mobilenet_v3_large" and meta.class_names[1] == "ellipse"
    build = meta.extra["build"]
    assert (meta.precision, meta.quantization) == ("int8", "nncf") and build["runtime"].startswith("openvino ")
    assert build["calibration"]["images"] == 300 and len(build["calibration"]["image_list_sha256"]) == 64
    assert build["nncf"]["preset"] == "mixed"
    assert not list(demo_irs["int8"].parent.glob(".*"))  # no temporary files left beside the IR


def test_accuracy_by_precision_on_the_demo_test_split(demo_model, demo_irs):
    _, onnx_path, data = demo_model
    test = VOCDataset(data, "2007", "test")
    maps = {"onnxruntime fp32": evaluate_detector(load_detector(onnx_path), test, show_progress=False).map}
    for precision, xml in demo_irs.items():
        maps[f"openvino {precision}"] = evaluate_detector(load_detector(xml), test, show_progress=False).map
    print({k: round(100 * v, 2) for k, v in maps.items()})
    fp32 = maps["openvino fp32"]
    assert maps["onnxruntime fp32"] >= 0.85  # the demo model's promise (README)
    assert abs(fp32 - maps["onnxruntime fp32"]) <= 0.002
    assert abs(maps["openvino fp16"] - fp32) <= 0.002  # 0.2 mAP points
    assert fp32 - maps["openvino int8"] <= 0.005  # 0.5 points


@pytest.fixture(scope="module")
def nms_irs(demo_model, tmp_path_factory):
    """The demo model as IRs that decode and run NMS inside (``--nms engine``), FP32 and INT8, built from
    what ``demo_irs`` was built from (same calibration images)."""
    from calibration.stream import select_images
    from export.onnx_model import load_onnx, read_metadata
    from export.openvino_build import build_openvino

    _, onnx_path, data = demo_model
    meta = read_metadata(load_onnx(onnx_path), str(onnx_path))
    folder = tmp_path_factory.mktemp("nms_ir")
    calibration = select_images(data, 300, 0, split="train")
    return {p: build_openvino(onnx_path, meta, p, folder / f"demo_{p}_nms.xml", calibration if p == "int8" else None,
                              log=lambda _: None, in_graph_nms=True).path
            for p in ("fp32", "int8")}


@pytest.mark.parametrize("precision", ["fp32", "int8"])
def test_nms_inside_the_ir_gives_the_host_post_processors_detections(demo_model, demo_irs, nms_irs, precision):
    _, _, data = demo_model
    host, inside = load_detector(demo_irs[precision]), load_detector(nms_irs[precision])
    assert inside.meta.output_format == "nms" and host.meta.output_format == "raw"
    assert inside.meta.nms_in_model and inside.meta.extra["build"]["nms"] == "engine"
    full = 0
    for path in voc_mini_images() + demo_test_images(data, 20):
        image, _ = read_image(path)
        ours, reference = inside(image), host(image)
        # Every detection down to score 0.001, the same order (ties aside) and the same 300th box.
        assert_same_detections(ours, reference, score_tol=1e-5, box_tol=1e-3)
        full += len(reference) == host.meta.max_detections
    assert full >= 20  # most frames fill all 300 places: the final cut was exercised


def test_nms_inside_the_ir_takes_stricter_thresholds_only(demo_model, demo_irs, nms_irs):
    from runtimes.errors import UserError

    _, _, data = demo_model
    strict = {"score_threshold": 0.002, "max_detections": 20}
    inside, host = load_detector(nms_irs["fp32"], **strict), load_detector(demo_irs["fp32"], **strict)
    for path in demo_test_images(data, 5):
        image, _ = read_image(path)
        assert_same_detections(inside(image), host(image), score_tol=1e-5)
    with pytest.raises(UserError, match=r"iou_threshold 0.3 \(built with 0.55\).*--nms host"):
        load_detector(nms_irs["fp32"], iou_threshold=0.3)
    with pytest.raises(UserError, match=r"score_threshold 0.0001 \(built with 0.001\)"):
        load_detector(nms_irs["fp32"], score_threshold=0.0001)


def test_nms_inside_the_ir_refuses_a_dynamic_batch(demo_model):
    from export.onnx_model import load_onnx, read_metadata
    from export.openvino_nms import append_multiclass_nms, decoded_openvino_model
    from runtimes.errors import UserError

    _, onnx_path, _ = demo_model
    meta = read_metadata(load_onnx(onnx_path), str(onnx_path))
    model = decoded_openvino_model(onnx_path, meta)
    model.reshape([-1, 3, meta.input_height, meta.input_width])  # what an export with --batch gives
    # MulticlassNms concatenates every image's survivors; the "nms" outputs are per image.
    with pytest.raises(UserError, match="needs a batch-1 model: export it without --batch"):
        append_multiclass_nms(model, meta)


def test_build_cli_puts_nms_inside_an_fp16_ir(tmp_path, demo_model, nms_irs):
    _, onnx_path, data = demo_model
    result = run_build("--fp16", "--nms", "engine", "--onnx", onnx_path, "--output", tmp_path)
    assert result.returncode == 0, result.stderr
    assert "decoding and MulticlassNms inside (score > 0.001, IoU 0.55, 300 detections)" in result.stdout
    xml = tmp_path / f"{onnx_path.stem}_fp16_nms.xml"
    fp16, fp32 = load_detector(xml), load_detector(nms_irs["fp32"])
    assert fp16.meta.output_format == "nms" and fp16.meta.precision == "fp16"
    hits = total = 0
    for path in demo_test_images(data, 20):
        image, _ = read_image(path)
        h, t = matched(fp32(image), fp16(image), min_score=0.05, iou=0.98)  # FP16 weights and anchors
        hits, total = hits + h, total + t
    assert total > 20 and hits / total >= 0.99, f"{hits}/{total}"


def run_build(*args: str):
    return subprocess.run([sys.executable, "export/build_engine.py", "--target", "openvino", *map(str, args)],
                          cwd=ROOT, capture_output=True, text=True, timeout=600)


def test_build_bad_calibration_input(tmp_path, demo_model):
    _, onnx_path, _ = demo_model
    (tmp_path / "empty").mkdir()
    out = tmp_path / "out"
    cases = [
        (["--calib-data", tmp_path / "empty"], "no images found"),
        (["--calib-data", tmp_path / "missing"], "no such calibration folder"),
        (["--calib-data", ROOT.parent / "shared/data/voc-mini", "--calib-split", "val"], "no split 'val'"),
    ]
    for extra, phrase in cases:
        result = run_build("--int8", "--onnx", onnx_path, "--output", out, *extra)
        assert result.returncode == 2, result.stderr
        assert result.stderr.strip().splitlines() == [result.stderr.strip().splitlines()[-1]]
        assert phrase in result.stderr and "Traceback" not in result.stderr
        assert not list(out.glob("*.xml")) and not list(out.glob("*.bin"))
    (tmp_path / "a_file").write_text("x")
    bad_outputs = [(tmp_path / "a_file", "must be a folder"), (tmp_path / "a_file" / "sub", "cannot create")]
    for bad_output, phrase in bad_outputs:
        result = run_build("--onnx", onnx_path, "--output", bad_output)
        assert result.returncode == 2 and phrase in result.stderr, result.stderr


def test_build_with_fewer_images_than_requested_warns_and_records_the_count(tmp_path, demo_model, voc_mini):
    _, onnx_path, _ = demo_model
    result = run_build("--int8", "--onnx", onnx_path, "--output", tmp_path, "--calib-data", voc_mini,
                       "--calib-split", "test", "--calib-images", "500")
    assert result.returncode == 0, result.stderr
    assert "only 21 usable calibration images (asked for 500)" in result.stdout
    meta = load_detector(tmp_path / f"{onnx_path.stem}_int8.xml").meta
    assert meta.extra["build"]["calibration"]["images"] == 21


def test_built_ir_normalises_in_its_graph_and_says_so(demo_irs):
    from runtimes.errors import UserError

    detector = load_detector(demo_irs["int8"])
    assert detector.meta.input == InputSpec(layout="NHWC", channel_order="RGB", normalisation_in_graph=True)
    assert list(detector.compiled.inputs[0].shape) == [1, 320, 320, 3]  # resized pixels, NHWC
    with pytest.raises(UserError, match="normalises inside its graph"):
        load_detector(demo_irs["int8"], fold_preprocessing=False)


def test_runner_swaps_channels_in_the_graph_and_gets_the_irs_own_outputs(demo_model, demo_irs):
    """The IR file takes RGB pixels (its metadata's order, what INT8 calibration saw); the runner compiles it
    taking BGR frames. Same pixels in, the INT8 outputs must be bit-identical, FP32 within float rounding."""
    import openvino as ov

    _, _, data = demo_model
    frames = [read_image(p)[0] for p in demo_test_images(data, 4)]
    for precision, tolerance in (("int8", 0.0), ("fp32", 1e-4)):
        detector = load_detector(demo_irs[precision])
        plain = ov.Core().compile_model(str(demo_irs[precision]), "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
        for frame in frames:
            rgb = Preprocessor(detector.meta)(frame)  # what the IR file takes, as its metadata says
            np.testing.assert_array_equal(detector.prepare(frame)[..., ::-1], rgb)  # the runner feeds BGR
            ours = detector.infer(detector.prepare(frame))
            theirs = plain({0: rgb})
            for i, name in enumerate(detector.output_names):
                np.testing.assert_allclose(ours[name], theirs[plain.outputs[i]], rtol=0, atol=tolerance)
