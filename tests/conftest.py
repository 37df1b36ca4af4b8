from __future__ import annotations

import types
from pathlib import Path
from typing import Iterator, Set

import pytest

import tests.reference_models as reference_models

ROOT = Path(__file__).resolve().parents[1]

# Names whose use means a test reads the shared VOC sample: the fixture, the path and the helpers built on it
# (decisive_model re-estimates BatchNorm statistics and scales logits on its images; `exported` builds on it).
_VOC_MINI_FIXTURES = frozenset({"voc_mini", "exported"})
_VOC_MINI_NAMES = frozenset({"VOC_MINI", "voc_mini_images", "decisive_model"})


def _voc_mini_missing() -> str:
    """The one-line failure for a test that needs the shared VOC sample when it is absent, or ''."""
    folder = reference_models.VOC_MINI  # read at call time (a test of this hook points it elsewhere)
    if (folder / "VOCdevkit").is_dir():
        return ""
    return (f"this test needs the shared VOC sample and {folder / 'VOCdevkit'} does not exist: put voc-mini "
            "(VOCdevkit/VOC2007 with 25 images) at ../shared/data/voc-mini beside the repository")


def _code_objects(code: types.CodeType) -> Iterator[types.CodeType]:
    yield code
    for const in code.co_consts:
        if isinstance(const, types.CodeType):
            yield from _code_objects(const)


def _uses_voc_mini(func: object, seen: Set[int], depth: int = 3) -> bool:
    """Whether ``func`` (or a module-level function it calls, ``depth`` levels down) names the VOC sample."""
    code = getattr(func, "__code__", None)
    if code is None or id(code) in seen:
        return False
    seen.add(id(code))
    scope = getattr(func, "__globals__", {})
    for part in _code_objects(code):
        if set(part.co_names) & _VOC_MINI_NAMES or "voc_mini" in part.co_varnames:
            return True
        helpers = [scope.get(n) for n in part.co_names]  # the test suite's own helpers, not the library's
        if depth > 0 and any(_uses_voc_mini(f, seen, depth - 1) for f in helpers
                             if isinstance(f, types.FunctionType) and f.__module__.startswith("tests")):
            return True
    return False


def _needs_voc_mini(item: pytest.Item) -> bool:
    if set(getattr(item, "fixturenames", ())) & _VOC_MINI_FIXTURES:
        return True
    seen: Set[int] = set()
    funcs = [getattr(item, "function", None)]
    info = getattr(item, "_fixtureinfo", None)
    for defs in (info.name2fixturedefs.values() if info is not None else ()):
        funcs.extend(d.func for d in defs)
    return any(_uses_voc_mini(f, seen) for f in funcs if f is not None)


@pytest.hookimpl(tryfirst=True)  # before any fixture is set up
def pytest_runtest_setup(item: pytest.Item) -> None:
    """Fail a test that needs ../shared/data/voc-mini at once, in one line, when the folder is missing
    (rather than deep inside it, e.g. torch's "stack expects a non-empty TensorList")."""
    missing = _voc_mini_missing()
    if missing and _needs_voc_mini(item):
        pytest.fail(missing, pytrace=False)


@pytest.fixture(scope="session", autouse=True)
def _cache_home_of_the_run(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Caches the code under test keeps in the user's ``$XDG_CACHE_HOME`` (the camera's measured schedules,
    streams/schedule_probe.py) go to a folder of this run's, for it and the processes it starts: a test run
    leaves nothing in ~/.cache and finds nothing an earlier run left there."""
    patch = pytest.MonkeyPatch()
    patch.setenv("XDG_CACHE_HOME", str(tmp_path_factory.mktemp("xdg-cache")))
    yield
    patch.undo()


@pytest.fixture(scope="session")
def voc_mini() -> Path:
    missing = _voc_mini_missing()
    if missing:
        pytest.fail(missing, pytrace=False)
    return reference_models.VOC_MINI


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
