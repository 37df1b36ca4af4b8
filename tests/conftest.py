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
        return cache[arch]

    return get
