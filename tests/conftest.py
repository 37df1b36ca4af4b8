from __future__ import annotations

from pathlib import Path

import pytest

from tests.reference_models import VOC_MINI

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def voc_mini() -> Path:
    if not (VOC_MINI / "VOCdevkit").is_dir():
        pytest.skip(f"the shared VOC sample is not at {VOC_MINI}")
    return VOC_MINI


@pytest.fixture(scope="session")
def exported(tmp_path_factory):
    """exported(arch) -> (torch model, checkpoint path, onnx path), built once per session."""
    from export.export_onnx import export_checkpoint
    from tests.reference_models import decisive_model, save_state_dict

    cache = {}
    folder = tmp_path_factory.mktemp("exported")

    def get(arch: str):
        if arch not in cache:
            model = decisive_model(arch)
            ckpt = save_state_dict(model, folder / f"{arch}.pth")
            onnx_path = folder / f"{arch}.onnx"
            export_checkpoint(ckpt, arch, onnx_path, num_classes=21)
            cache[arch] = (model, ckpt, onnx_path)
        cache[arch][0].eval()  # a test may have switched the shared model's mode
        return cache[arch]

    return get


@pytest.fixture(scope="session")
def demo_data() -> Path:
    """The synthetic demo data set (generated into the cache on first use)."""
    from calibration.synthetic import ensure_demo_dataset

    return ensure_demo_dataset(verbose=False)


@pytest.fixture(scope="session")
def demo_model(demo_data):
    """(torch model, ONNX path, data root) of the embedded demo model."""
    from export.checkpoint import load_checkpoint
    from export.demo_model import DEMO_ARCH, DEMO_CHECKPOINT, DEMO_NUM_CLASSES, demo_onnx

    model = load_checkpoint(DEMO_CHECKPOINT, DEMO_ARCH, DEMO_NUM_CLASSES)
    return model, demo_onnx(verbose=False), demo_data


@pytest.fixture(scope="session")
def demo_irs(demo_model, tmp_path_factory):
    """The demo model as OpenVINO IR, by precision: {"fp32": xml, "fp16": xml, "int8": xml}."""
    from calibration.stream import select_images
    from export.onnx_model import load_onnx, read_metadata
    from export.openvino_build import build_openvino

    _, onnx_path, data = demo_model
    meta = read_metadata(load_onnx(onnx_path), str(onnx_path))
    folder = tmp_path_factory.mktemp("ir")
    calibration = select_images(data, 300, 0, split="train")
    return {p: build_openvino(onnx_path, meta, p, folder / f"demo_{p}.xml", calibration if p == "int8" else None,
                              log=lambda _: None).path
            for p in ("fp32", "fp16", "int8")}
