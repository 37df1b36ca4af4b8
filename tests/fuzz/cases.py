"""The fuzz cases: for each parser of untrusted input, a seeded generator of inputs and the check of a result.

Case ``(parser, index)`` is made from ``random.Random(f"{parser}:{index}")`` and the shared test files in
ASSETS (the demo model as .pth, .safetensors, ONNX and OpenVINO IR, a TensorRT engine record, images, a VOC
annotation), so it is the same input on every run. ``run_case`` runs one in a fresh folder and classifies it:
``error`` (a one-line :class:`UserError`), ``valid`` (the parser's check passed), ``mishandled``.

``expect="error"`` marks inputs that must be refused (a damaged IR pair, a tampered engine plan, a
decompression bomb): accepting one is a silently wrong result, hence mishandled.
"""

from __future__ import annotations

import contextlib
import json
import random
import shutil
import struct
import tempfile
import traceback
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional

import numpy as np

from runtimes.errors import UserError

ROOT = Path(__file__).resolve().parents[2]
Check = Callable[[Any], Optional[str]]  # a result -> what is wrong with it, or None


@dataclass
class Case:
    description: str
    run: Callable[[], Any]
    check: Check
    expect: str = "any"  # any: a clean error or a valid result; error: must be refused
    owner: str = ""  # the file that must refuse it (for expect="error" cases that were accepted)


@dataclass
class Parser:
    name: str
    make: Callable[[random.Random, int, Path, Path], Case]
    timeout_s: float = 20.0
    ci_count: int = 100  # cases in the pytest run; the script runs more (see tests/fuzz/run.py)
    full_count: int = 300


# -- byte mutations ------------------------------------------------------------------------------------

def mutate(data: bytes, rng: random.Random, header: int = 0) -> "tuple[str, bytes]":
    """A damaged copy of ``data``; ``header``: bytes at the start that bit flips favour (half of them)."""
    how = rng.choice(["truncate", "flip", "flip", "overwrite", "insert", "delete", "zero_tail"])
    if how == "truncate":
        cut = rng.randrange(0, len(data)) if rng.random() < 0.7 else rng.randrange(0, min(len(data), 4096))
        return f"truncated at {cut} of {len(data)} bytes", data[:cut]
    buf = bytearray(data)
    if how == "flip":
        flips = rng.randint(1, 16)
        for _ in range(flips):
            span = header if header and rng.random() < 0.5 else len(buf)
            pos = rng.randrange(span)
            buf[pos] ^= 1 << rng.randrange(8)
        return f"{flips} bit flips", bytes(buf)
    pos = rng.randrange(len(buf))
    size = rng.randint(1, 4096)
    if how == "overwrite":
        buf[pos:pos + size] = bytes(rng.getrandbits(8) for _ in range(min(size, len(buf) - pos)))
        return f"{size} bytes overwritten at {pos}", bytes(buf)
    if how == "insert":
        return f"{size} random bytes inserted at {pos}", bytes(buf[:pos]) + rng.randbytes(size) + bytes(buf[pos:])
    if how == "delete":
        return f"{size} bytes deleted at {pos}", bytes(buf[:pos]) + bytes(buf[pos + size:])
    return f"zeroed from {pos}", bytes(buf[:pos]) + bytes(len(buf) - pos)


def random_bytes(rng: random.Random) -> "tuple[str, bytes]":
    size = rng.choice([1, 2, 7, 8, 16, 100, 1000, 50_000])
    prefix = rng.choice([b"", b"", b"PK\x03\x04", b"\x80\x02", b"\x80\x04\x95", b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff",
                         b"{", b"\x08\x00\x00\x00\x00\x00\x00\x00{", b"<?xml version='1.0'?>"])
    return f"{size} random bytes after {prefix!r}", prefix + rng.randbytes(size)


def random_json_value(rng: random.Random, depth: int = 0) -> Any:
    choice = rng.randrange(11 if depth < 2 else 9)
    if choice == 9:
        return {"k": random_json_value(rng, depth + 1)}
    if choice == 10:
        return [random_json_value(rng, depth + 1) for _ in range(rng.randint(0, 3))]
    return [None, True, -1, 0, 1e308, "x" * rng.randint(0, 5), float("nan"), [], {}][choice]


def mutate_json(value: Any, rng: random.Random) -> "tuple[str, Any]":
    """Replace, delete or retype one field somewhere in a JSON document (or the whole document)."""
    if rng.random() < 0.15 or not isinstance(value, (dict, list)) or not value:
        return "whole document replaced", random_json_value(rng)
    path: List[Any] = []
    node = value
    while isinstance(node, (dict, list)) and node and rng.random() < 0.6:
        key = rng.choice(list(node)) if isinstance(node, dict) else rng.randrange(len(node))
        if not isinstance(node[key], (dict, list)) or not node[key]:
            break
        path.append(key)
        node = node[key]
    key = rng.choice(list(node)) if isinstance(node, dict) else rng.randrange(len(node))
    if isinstance(node, dict) and rng.random() < 0.3:
        del node[key]
        return f"{'/'.join(map(str, path + [key]))} deleted", value
    node[key] = random_json_value(rng)
    return f"{'/'.join(map(str, path + [key]))} = {json.dumps(node[key], default=str)[:40]}", value


# -- shared test files -----------------------------------------------------------------------------------

def asset(assets: Path, name: str, build: Callable[[Path], None]) -> Path:
    """``assets/name``, built once (atomically) by ``build(path)``."""
    path = assets / name
    if not path.exists():
        assets.mkdir(parents=True, exist_ok=True)
        tmp = assets / f".{name}.building"
        if tmp.exists():
            shutil.rmtree(tmp) if tmp.is_dir() else tmp.unlink()
        build(tmp)
        tmp.rename(path)
    return path


def demo_pth(assets: Path) -> Path:
    def build(path: Path) -> None:
        import torch
        from safetensors.torch import load_file

        from export.demo_model import DEMO_CHECKPOINT

        torch.save(load_file(str(DEMO_CHECKPOINT)), path)
    return asset(assets, "demo.pth", build)


def pickled_pth(assets: Path) -> Path:
    def build(path: Path) -> None:
        import torch

        torch.save({"model": torch.nn.Linear(3, 2), "epoch": 3}, path)  # a Python object inside: needs pickle
    return asset(assets, "pickled.pth", build)


def demo_onnx_path() -> Path:
    from export.demo_model import demo_onnx

    return demo_onnx(verbose=False)


def demo_meta() -> Any:
    from export.onnx_model import require_metadata

    return require_metadata(demo_onnx_path())


def demo_ir(assets: Path, precision: str) -> Path:
    def build(folder: Path) -> None:
        from export.openvino_build import build_openvino

        folder.mkdir()
        build_openvino(demo_onnx_path(), demo_meta(), precision, folder / "model.xml", log=lambda _: None)
    return asset(assets, f"ir_{precision}", build) / "model.xml"


FRAME = np.random.default_rng(0).integers(0, 256, (48, 64, 3), dtype=np.uint8)


def check_detections(dets: Any) -> Optional[str]:
    from runtimes.detections import Detections

    if not isinstance(dets, Detections):
        return f"returned {type(dets).__name__}, not Detections"
    if not (np.isfinite(dets.boxes).all() and np.isfinite(dets.scores).all()):
        return "detections with NaN or infinite boxes or scores"
    if len(dets) and not ((dets.labels >= 1) & (dets.labels < len(dets.class_names))).all():
        return "detections with labels outside the class list"
    return None


def detect_once(path: Path, runtime: Optional[str] = None) -> Any:
    from runtimes.loader import load_detector

    detector = load_detector(path, runtime)
    try:
        return detector(FRAME)
    finally:
        detector.close()


# -- checkpoints -----------------------------------------------------------------------------------------

def _check_state(state: Any) -> Optional[str]:
    import torch

    if not isinstance(state, dict) or not state or not all(isinstance(v, torch.Tensor) for v in state.values()):
        return "not a non-empty dict of tensors"
    return None


def make_pth(rng: random.Random, index: int, folder: Path, assets: Path) -> Case:
    from export.checkpoint import load_state_dict

    allow = index % 2 == 1
    kind = index % 10
    if kind in (0, 1):
        what, data = random_bytes(rng)
    elif kind == 2:
        what, data = "a genuine pickle holding a Python object", pickled_pth(assets).read_bytes()
    elif kind == 3:
        what, data = rng.choice([("a text file", b"epoch 3, loss 0.2\n" * 20), ("a JPEG", _jpeg(rng)),
                                 ("an ONNX file", demo_onnx_path().read_bytes()[:20000])])
    else:
        what, data = mutate(demo_pth(assets).read_bytes(), rng, header=600)
    path = folder / "model.pth"
    path.write_bytes(data)
    return Case(f"{what}{' --allow-pickle' if allow else ''}", lambda: load_state_dict(path, allow), _check_state)


def make_safetensors(rng: random.Random, index: int, folder: Path, assets: Path) -> Case:
    from export.checkpoint import load_state_dict
    from export.demo_model import DEMO_CHECKPOINT

    data = DEMO_CHECKPOINT.read_bytes()
    (length,) = struct.unpack("<Q", data[:8])
    kind = index % 4
    if kind == 0:
        what, data = random_bytes(rng)
    elif kind == 1:  # the JSON header edited: dtypes, shapes, offsets, metadata
        header = json.loads(data[8:8 + length])
        what, header = mutate_json(header, rng)
        text = json.dumps(header).encode()
        declared = len(text) if rng.random() < 0.8 else rng.choice([0, 1, 2**40, 2**63, len(text) + 100])
        data = struct.pack("<Q", declared) + text + data[8 + length:]
        what = f"header: {what}, length {declared}"
    else:
        what, data = mutate(data, rng, header=8 + length)
    path = folder / "model.safetensors"
    path.write_bytes(data)
    return Case(what, lambda: load_state_dict(path), _check_state)


def make_checkpoint_tensors(rng: random.Random, index: int, folder: Path, assets: Path) -> Case:
    """Loadable files whose tensors are wrong: shapes, dtypes, NaN/inf, keys, wrappers."""
    import torch
    from safetensors.torch import load_file, save_file

    from export.checkpoint import load_checkpoint
    from export.demo_model import DEMO_ARCH, DEMO_CHECKPOINT, DEMO_NUM_CLASSES

    state = load_file(str(DEMO_CHECKPOINT))
    key = rng.choice(sorted(k for k, v in state.items() if v.is_floating_point() and v.numel() > 1))
    kind = index % 9
    obj: Any = state
    if kind == 0:
        state[key] = state[key].reshape(-1)[: max(1, state[key].numel() // 2)].clone()
        what = f"{key} of the wrong shape"
    elif kind == 1:
        dtype = rng.choice([torch.int8, torch.uint8, torch.bool, torch.int64, torch.complex64])
        state[key] = state[key].to(dtype)
        what = f"{key} as {dtype}"
    elif kind == 2:
        flat = state[key].float().reshape(-1).clone()
        flat[rng.randrange(flat.numel())] = rng.choice([float("nan"), float("inf"), float("-inf")])
        state[key] = flat.reshape(state[key].shape).to(state[key].dtype)
        what = f"{key} holding a NaN or infinity"
    elif kind == 3:
        del state[key]
        what = f"{key} missing"
    elif kind == 4:
        state["extra.weight"] = torch.zeros(3)
        what = "an unexpected key"
    elif kind == 5:
        obj = {rng.choice(["model", "state_dict", "model_state_dict"]): {f"module.{k}": v for k, v in state.items()}}
        what = "wrapped, with DataParallel's module. prefix"
    elif kind == 6:
        state[key] = state[key].to(rng.choice([torch.float64, torch.bfloat16, torch.float32]))
        what = f"{key} in another float dtype"
    elif kind == 7:
        obj = rng.choice([{}, {"model": {}}, {"epoch": 3}, [state[key]], {"model": [1, 2]}])
        what = f"no tensors: {type(obj).__name__}"
    else:
        what = "the demo checkpoint as is"
    if kind != 1 and kind != 7 and rng.random() < 0.5 and isinstance(obj, dict) and obj is state:
        path = folder / "model.safetensors"
        save_file({k: v.contiguous() for k, v in state.items()}, str(path))
    else:
        path = folder / "model.pth"
        torch.save(obj, path)

    def check(model: Any) -> Optional[str]:
        if not all(bool(torch.isfinite(p).all()) for p in model.state_dict().values() if p.is_floating_point()):
            return "a model with NaN or infinite weights"
        return None
    return Case(f"{what} ({path.suffix})", lambda: load_checkpoint(path, DEMO_ARCH, DEMO_NUM_CLASSES), check)


# -- ONNX ------------------------------------------------------------------------------------------------

def _tiny_graph(outputs: Dict[str, "tuple[int, ...]"], metadata: Optional[str]) -> bytes:
    """An ONNX model taking ``images`` (1, 3, 320, 320) and returning constant-ish tensors of the given
    shapes (random values plus the input's mean, so the graph depends on its input)."""
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(len(outputs))
    nodes = [helper.make_node("ReduceMean", ["images"], ["mean"], keepdims=0)]
    inits, outs = [], []
    for i, (name, shape) in enumerate(outputs.items()):
        const = numpy_helper.from_array(rng.normal(0, 1, shape).astype(np.float32), f"c{i}")
        inits.append(const)
        nodes.append(helper.make_node("Add", [f"c{i}", "mean"], [name]))
        outs.append(helper.make_tensor_value_info(name, TensorProto.FLOAT, list(shape)))
    graph = helper.make_graph(nodes, "fuzz", [helper.make_tensor_value_info("images", TensorProto.FLOAT,
                                                                            [1, 3, 320, 320])], outs, inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    if metadata is not None:
        entry = model.metadata_props.add()
        entry.key, entry.value = "ssd_edge.metadata", metadata
    return model.SerializeToString()


def _metadata_variant(rng: random.Random) -> "tuple[str, Optional[str]]":
    meta = json.loads(demo_meta().to_json())
    kind = rng.randrange(6)
    if kind == 0:
        return "metadata missing", None
    if kind == 1:
        text = demo_meta().to_json()
        cut = rng.randrange(len(text))
        return f"metadata JSON cut at {cut}", text[:cut]
    if kind == 2:
        value = rng.choice(["[]", "null", "3", '"ssd"', "[1, 2]", "true", "{}", "{\"anchors\": 5}"])
        return f"metadata {value}", value
    if kind == 3:  # sizes that are numbers but not sizes
        field = rng.choice(["input_height", "input_width", "max_detections", "topk_candidates"])
        meta[field] = rng.choice([-1, 0, 10**9, 1.5, 2**31])
        return f"metadata {field} = {meta[field]}", json.dumps(meta)
    what, meta = mutate_json(meta, rng)
    return f"metadata {what}", json.dumps(meta)


def _onnx_input(rng: random.Random, index: int, assets: Path) -> "tuple[str, bytes, str]":
    """(what, bytes, kind) of an ONNX input: random, damaged demo model, non-SSD graph, wrong output
    shapes, metadata variants."""
    meta_json = demo_meta().to_json()
    n, c = 3234, 6
    kind = index % 8
    if kind == 0:
        what, data = random_bytes(rng)
        return what, data, "random"
    if kind == 1:
        what, data = mutate(demo_onnx_path().read_bytes(), rng, header=2000)
        return f"demo ONNX {what}", data, "damaged"
    if kind == 2:
        return "a non-SSD graph without metadata", _tiny_graph({"y": (1, 10)}, None), "non-ssd"
    if kind == 3:
        return "a non-SSD graph with SSD metadata", _tiny_graph({"y": (1, 10)}, meta_json), "non-ssd"
    if kind == 4:
        shapes = rng.choice([{"bbox_regression": (1, n - 1, 4), "cls_logits": (1, n - 1, c)},
                             {"bbox_regression": (1, n, 4), "cls_logits": (1, n, c + 3)},
                             {"bbox_regression": (1, n, 5), "cls_logits": (1, n, c)},
                             {"bbox_regression": (n, 4), "cls_logits": (n, c)},
                             {"boxes": (1, n, 4), "scores": (1, n, c)}])
        return f"outputs {shapes}", _tiny_graph(shapes, meta_json), "wrong-shape"
    what, metadata = _metadata_variant(rng)
    good = {"bbox_regression": (1, n, 4), "cls_logits": (1, n, c)}
    return what, _tiny_graph(good, metadata), "metadata"


def make_onnx_runtime(rng: random.Random, index: int, folder: Path, assets: Path) -> Case:
    what, data, _ = _onnx_input(rng, index, assets)
    path = folder / "model.onnx"
    path.write_bytes(data)
    return Case(what, lambda: detect_once(path), check_detections)


def make_onnx_metadata(rng: random.Random, index: int, folder: Path, assets: Path) -> Case:
    from export.onnx_model import require_metadata
    from runtimes.metadata import ModelMetadata

    what, data, _ = _onnx_input(rng, index, assets)
    path = folder / "model.onnx"
    path.write_bytes(data)

    def check(meta: Any) -> Optional[str]:
        return None if isinstance(meta, ModelMetadata) else f"returned {type(meta).__name__}"
    return Case(what, lambda: require_metadata(path), check)


# -- OpenVINO IR -----------------------------------------------------------------------------------------

PAIR_CHECK = "export/openvino_build.py save_ir + runtimes/openvino_runner.py (the .xml must record its .bin)"


def make_openvino_ir(rng: random.Random, index: int, folder: Path, assets: Path) -> Case:
    xml_a, xml_b = demo_ir(assets, "fp32"), demo_ir(assets, "fp16")
    xml_text, bin_data = xml_a.read_text(), xml_a.with_suffix(".bin").read_bytes()
    expect, owner = "any", ""
    kind = index % 8
    if kind == 0:
        what = "the pair as built"
    elif kind == 1:
        cut = rng.randrange(len(bin_data))
        what, bin_data, expect = f".bin truncated at {cut} of {len(bin_data)}", bin_data[:cut], "error"
    elif kind == 2:
        buf = bytearray(bin_data)
        for _ in range(rng.randint(1, 8)):
            buf[rng.randrange(len(buf))] ^= 1 << rng.randrange(8)
        what, bin_data, expect = ".bin bit-flipped", bytes(buf), "error"
    elif kind == 3:
        what, bin_data, expect = ".bin of another build (FP16) beside the FP32 .xml", \
            xml_b.with_suffix(".bin").read_bytes(), "error"
    elif kind == 4:
        what, bin_data, expect = ".bin missing", b"", "error"
    elif kind == 5:
        what, data = mutate(xml_text.encode(), rng, header=3000)
        xml_text = data.decode("utf-8", "replace")
        what = f".xml {what}"
    else:  # the metadata in rt_info tampered
        from xml.sax.saxutils import escape, quoteattr

        start = xml_text.index("<ssd_edge.metadata value=") + len("<ssd_edge.metadata value=")
        end = xml_text.index(" />", start)
        what, metadata = _metadata_variant(rng)
        value = metadata if metadata is not None else ""
        xml_text = xml_text[:start] + quoteattr(escape(value)) + xml_text[end:]
        what = f"rt_info {what}"
    if expect == "error":
        owner = PAIR_CHECK
    xml = folder / "model.xml"
    xml.write_text(xml_text)
    if kind != 4:
        xml.with_suffix(".bin").write_bytes(bin_data)
    return Case(what, lambda: detect_once(xml), check_detections, expect, owner)


# -- TensorRT engine records and calibration caches ---------------------------------------------------------

def make_engine_record(rng: random.Random, index: int, folder: Path, assets: Path) -> Case:
    from runtimes.tensorrt_engine_file import EngineRecord, check_compatible, read_engine, record_path, write_engine
    from runtimes.tensorrt_support import GPUIdentity

    gpu = GPUIdentity("Orin", "8.7")
    record = EngineRecord(demo_meta(), "8.6.2", gpu, {"precision": "int8"}, "python export/build_engine.py --int8")
    engine = folder / "model.engine"
    plan = rng.randbytes(5000)
    write_engine(engine, plan, record)
    side = record_path(engine)
    text = side.read_text()
    expect, owner = "any", ""
    kind = index % 6
    if kind == 0:
        what, data = mutate(text.encode(), rng, header=len(text))
        side.write_bytes(data)
    elif kind in (1, 2, 3):
        what, doc = mutate_json(json.loads(text), rng)
        side.write_text(json.dumps(doc))
        what = f"record {what}"
    elif kind == 4:
        what, data = mutate(plan, rng)
        engine.write_bytes(data)
        what, expect, owner = f"plan {what}", "error", "runtimes/tensorrt_engine_file.py"
    else:
        side.unlink()
        what, expect = "record missing", "error"

    def run() -> Any:
        _, found = read_engine(engine)
        check_compatible(found, "8.6.2", gpu, str(engine))
        return found

    def check(found: Any) -> Optional[str]:
        return None if isinstance(found, EngineRecord) else f"returned {type(found).__name__}"
    return Case(what, run, check, expect, owner)


def make_calibration_cache(rng: random.Random, index: int, folder: Path, assets: Path) -> Case:
    from calibration.tensorrt_calibrator import CACHE_MAGIC, CalibrationCache

    record = {"model_sha256": "ab" * 32, "images": ["a.jpg", "b.jpg"], "algorithm": "entropy",
              "preprocessing": {"input": [320, 320], "mean": [127.5] * 3}}
    table = b"TRT-8602-EntropyCalibration2\ninput: 3c010a14\n" + rng.randbytes(200)
    good = CACHE_MAGIC + json.dumps(record, sort_keys=True).encode() + b"\n" + table
    kind = index % 5
    if kind == 0:
        what, data = mutate(good, rng, header=len(good) - len(table))
    elif kind in (1, 2):
        what, doc = mutate_json(json.loads(json.dumps(record)), rng)
        data = CACHE_MAGIC + json.dumps(doc).encode() + b"\n" + table
        what = f"header {what}"
    elif kind == 3:
        what, data = random_bytes(rng)
    else:
        what, data = rng.choice([("TensorRT's own cache, no header", table), ("header only", good.split(b"\n")[0]),
                                 ("magic and not UTF-8", CACHE_MAGIC + b"\xff\xfe{\n" + table)])
    path = folder / "model.calib.cache"
    path.write_bytes(data)

    def check(found: Any) -> Optional[str]:
        return None if found is None or isinstance(found, bytes) else f"returned {type(found).__name__}"
    return Case(what, lambda: CalibrationCache(path, record).load(), check)


# -- images ---------------------------------------------------------------------------------------------

def _jpeg(rng: random.Random, gray: bool = False) -> bytes:
    import cv2

    shape = (rng.randint(1, 120), rng.randint(1, 160)) + (() if gray else (3,))
    ok, buf = cv2.imencode(".jpg", np.random.default_rng(rng.randrange(1000)).integers(0, 256, shape, np.uint8))
    return buf.tobytes()


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def png_bomb(width: int = 30000, height: int = 30000) -> bytes:
    """A valid 1-bit grayscale PNG of ``width`` x ``height`` zeros: ~110 kB on disk, 900 MB decoded to 8 bits."""
    row = b"\0" * (1 + (width + 7) // 8)
    comp = zlib.compressobj(9)
    body = b"".join(comp.compress(row) for _ in range(height)) + comp.flush()
    header = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", header) + _png_chunk(b"IDAT", body) + _png_chunk(b"IEND", b"")


def _image_file(rng: random.Random, kind: int, assets: Path) -> "tuple[str, bytes, str, str]":
    """(what, bytes, suffix, expect) of an image of one of the awkward kinds."""
    import cv2

    rng_np = np.random.default_rng(rng.randrange(10**6))
    h, w = rng.randint(1, 90), rng.randint(1, 120)
    if kind == 0:
        return "JPEG", _jpeg(rng), ".jpg", "any"
    if kind == 1:
        return "JPEG grayscale", _jpeg(rng, gray=True), ".jpg", "any"
    if kind == 2:
        return "PNG", cv2.imencode(".png", rng_np.integers(0, 256, (h, w, 3), np.uint8))[1].tobytes(), ".png", "any"
    if kind == 3:
        return "PNG 16-bit", cv2.imencode(".png", rng_np.integers(0, 65536, (h, w, 3), np.uint16))[1].tobytes(), \
            ".png", "any"
    if kind == 4:
        gray16 = rng_np.integers(0, 65536, (h, w), np.uint16)
        return "PNG 16-bit grayscale", cv2.imencode(".png", gray16)[1].tobytes(), ".png", "any"
    if kind == 5:
        return "PNG with alpha", cv2.imencode(".png", rng_np.integers(0, 256, (h, w, 4), np.uint8))[1].tobytes(), \
            ".png", "any"
    if kind == 6:
        return "PNG grayscale", cv2.imencode(".png", rng_np.integers(0, 256, (h, w), np.uint8))[1].tobytes(), ".png", \
            "any"
    if kind == 7:
        return "PNG 1x1", cv2.imencode(".png", np.zeros((1, 1, 3), np.uint8))[1].tobytes(), ".png", "any"
    if kind == 8:
        return "BMP", cv2.imencode(".bmp", rng_np.integers(0, 256, (h, w, 3), np.uint8))[1].tobytes(), ".bmp", "any"
    if kind == 9:
        return "WEBP", cv2.imencode(".webp", rng_np.integers(0, 256, (h, w, 3), np.uint8))[1].tobytes(), ".webp", "any"
    if kind == 10:
        return "zero bytes", b"", ".jpg", "error"
    if kind == 11:
        bomb = asset(assets, "bomb.png", lambda p: p.write_bytes(png_bomb()))
        return "PNG bomb declaring 30000 x 30000", bomb.read_bytes(), ".png", "error"
    if kind == 12:  # a JPEG whose frame header says 30000 x 30000 (the scan data is a small image's)
        data = bytearray(_jpeg(rng))
        sof = data.index(b"\xff\xc0")
        data[sof + 5:sof + 9] = struct.pack(">HH", 30000, 30000)
        return "JPEG declaring 30000 x 30000", bytes(data), ".jpg", "error"
    bmp = bytearray(cv2.imencode(".bmp", np.zeros((2, 2, 3), np.uint8))[1].tobytes())
    bmp[18:26] = struct.pack("<ii", 30000, -30000)
    return "BMP declaring 30000 x 30000", bytes(bmp), ".bmp", "error"


def make_image(rng: random.Random, index: int, folder: Path, assets: Path) -> Case:
    from calibration.images import MAX_PIXELS, read_image

    what, data, suffix, expect = _image_file(rng, index % 14, assets)
    if index % 3 and data and expect == "any":  # two thirds damaged
        damage, data = mutate(data, rng, header=min(len(data), 200))
        what = f"{what}, {damage}"
    path = folder / f"image{suffix}"
    path.write_bytes(data)

    def check(result: Any) -> Optional[str]:
        image, note = result
        if not (isinstance(image, np.ndarray) and image.dtype == np.uint8 and image.ndim == 3
                and image.shape[2] == 3 and min(image.shape[:2]) >= 1):
            return f"not an (H, W, 3) uint8 image: {getattr(image, 'shape', None)} {getattr(image, 'dtype', None)}"
        if image.shape[0] * image.shape[1] > MAX_PIXELS:
            return "an image larger than the limit"
        return None
    return Case(what, lambda: read_image(path), check, expect, "calibration/images.py" if expect == "error" else "")


# -- VOC annotations ------------------------------------------------------------------------------------

VOC_XML = """<annotation>
  <folder>VOC2007</folder><filename>000001.jpg</filename>
  <size><width>{width}</width><height>{height}</height><depth>3</depth></size>
  <object><name>dog</name><pose>Left</pose><truncated>0</truncated><difficult>0</difficult>
    <bndbox><xmin>{x1}</xmin><ymin>{y1}</ymin><xmax>{x2}</xmax><ymax>{y2}</ymax></bndbox></object>
  <object><name>person</name><difficult>1</difficult>
    <bndbox><xmin>8</xmin><ymin>12</ymin><xmax>352</xmax><ymax>498</ymax></bndbox></object>
</annotation>
"""
BAD_NUMBERS = ["nan", "inf", "-inf", "1e400", "-5", "abc", "", "0", "99999", "12.5", "0x10", "-0"]


def _voc_xml(rng: random.Random, index: int) -> "tuple[str, bytes]":
    fields = {"width": "353", "height": "500", "x1": "48", "y1": "240", "x2": "195", "y2": "371"}
    kind = index % 6
    if kind == 0:
        name = rng.choice(list(fields))
        fields[name] = rng.choice(BAD_NUMBERS)
        return f"{name} = {fields[name]!r}", VOC_XML.format(**fields).encode()
    if kind == 1:  # boxes outside the image, inverted (negative sizes), empty
        x1, x2 = rng.choice([(-50, 100), (300, 900), (200, 100), (150, 150), (-900, -800), (400, 500)])
        fields.update(x1=str(x1), x2=str(x2))
        return f"box x {x1}..{x2} in a 353-wide image", VOC_XML.format(**fields).encode()
    if kind == 2:
        what, data = mutate(VOC_XML.format(**fields).encode(), rng, header=400)
        return f"XML {what}", data
    if kind == 3:
        return rng.choice([
            ("billion laughs", b'<?xml version="1.0"?><!DOCTYPE a [<!ENTITY l "lol">' + b"".join(
                b'<!ENTITY l%d "%s">' % (i + 1, b"&l%d;" % i * 10 if i else b"&l;" * 10) for i in range(9))
             + b"]><annotation><filename>&l9;</filename></annotation>"),
            ("nesting 100000 deep", b"<annotation>" + b"<a>" * 100000 + b"</a>" * 100000 + b"</annotation>"),
            ("unknown encoding", b'<?xml version="1.0" encoding="no-such-codec"?><annotation/>'),
            ("external entity", b'<?xml version="1.0"?><!DOCTYPE a [<!ENTITY x SYSTEM "file:///etc/passwd">]>'
                                b"<annotation><filename>&x;</filename></annotation>"),
            ("UTF-16 without a declaration", VOC_XML.format(**fields).encode("utf-16")),
            ("no size", VOC_XML.format(**fields).replace("<size>", "<nosize>").replace("</size>", "</nosize>")
             .encode()),
            ("no bndbox fields", VOC_XML.format(**fields).replace("<xmin>48</xmin>", "").encode()),
        ])
    if kind == 4:
        what, data = random_bytes(rng)
        return f"random: {what}", data
    return "as written", VOC_XML.format(**fields).encode()


def make_voc(rng: random.Random, index: int, folder: Path, assets: Path) -> Case:
    import cv2

    from calibration.voc import VOCDataset

    what, xml = _voc_xml(rng, index)
    year = folder / "VOCdevkit" / "VOC2007"
    for sub in ("Annotations", "JPEGImages", "ImageSets/Main"):
        (year / sub).mkdir(parents=True)
    cv2.imwrite(str(year / "JPEGImages" / "000001.jpg"), np.zeros((500, 353, 3), np.uint8))
    (year / "Annotations" / "000001.xml").write_bytes(xml)
    split = b"000001\n" if index % 7 else rng.choice([b"000001\n\xff\xfe\n", b"\x00\x00\n", b" \n000001 1\n"])
    (year / "ImageSets" / "Main" / "test.txt").write_bytes(split)

    def check(data: Any) -> Optional[str]:
        for sample in data.samples:
            for obj in sample.objects:
                x1, y1, x2, y2 = obj.box
                if not all(np.isfinite(obj.box)) or x2 <= x1 or y2 <= y1:
                    return f"object {obj.name} with box {obj.box}"
                if sample.width > 0 and sample.height > 0 and (x1 < 0 or x2 > sample.width or y1 < 0
                                                               or y2 > sample.height):
                    return f"object {obj.name} with box {obj.box} outside {sample.width} x {sample.height}"
        return None
    def run() -> Any:
        data = VOCDataset(folder, "2007", "test")
        if not data.samples:  # the reader reports, not raises: its one-line report is the clean error here
            raise UserError("; ".join(data.skipped.lines()) or "no samples")
        return data
    return Case(what, run, check)


PARSERS: Dict[str, Parser] = {p.name: p for p in [
    Parser("checkpoint .pth", make_pth, ci_count=120, full_count=400),
    Parser("checkpoint .safetensors", make_safetensors, ci_count=150, full_count=400),
    Parser("checkpoint tensors", make_checkpoint_tensors, timeout_s=60, ci_count=9, full_count=36),
    Parser("onnx (runtime)", make_onnx_runtime, ci_count=64, full_count=200),
    Parser("onnx (metadata)", make_onnx_metadata, ci_count=80, full_count=240),
    Parser("openvino ir", make_openvino_ir, timeout_s=60, ci_count=40, full_count=160),
    Parser("tensorrt engine record", make_engine_record, ci_count=150, full_count=300),
    Parser("calibration cache", make_calibration_cache, ci_count=100, full_count=300),
    Parser("image", make_image, ci_count=200, full_count=420),
    Parser("voc annotation", make_voc, ci_count=120, full_count=300),
]}


def _surface_parsers() -> List[Parser]:
    """The parsers of the modules in tests/fuzz/surfaces/ (imported here, after Case and Parser exist)."""
    import importlib
    import pkgutil

    from tests.fuzz import surfaces

    found: List[Parser] = []
    for module in sorted(pkgutil.iter_modules(surfaces.__path__), key=lambda m: m.name):
        found.extend(importlib.import_module(f"tests.fuzz.surfaces.{module.name}").PARSERS)
    return found


PARSERS.update((p.name, p) for p in _surface_parsers())


def _where(exc: BaseException) -> str:
    """The innermost frame of the repository's own code (not a library's, not the harness's)."""
    found = ""
    for frame in traceback.extract_tb(exc.__traceback__):
        if frame.filename.startswith("<"):  # <frozen codecs> and the like
            continue
        path = Path(frame.filename)
        with contextlib.suppress(ValueError):
            rel = path.resolve().relative_to(ROOT)
            if not str(rel).startswith(("tests/", ".venv/", ".cache/")):
                found = f"{rel}:{frame.lineno}"
    return found


def _files(folder: Path) -> "set[str]":
    return {str(p.relative_to(folder)) for p in folder.rglob("*")}


def run_case(parser: Parser, index: int, assets: Path) -> Dict[str, Any]:
    """Make and run case ``index`` of ``parser`` in a fresh folder; the report (see tests/fuzz/harness.py)."""
    rng = random.Random(f"{parser.name}:{index}")
    folder = Path(tempfile.mkdtemp(prefix="ssd-edge-fuzz-"))
    report: Dict[str, Any] = {"case": f"case {index}"}
    try:
        try:
            case = parser.make(rng, index, folder, assets)
        except Exception as exc:  # the generator itself: a bug in the harness, reported as such
            return {"kind": "mishandled", "case": f"case {index}", "detail": f"generator failed: {exc!r}",
                    "where": "tests/fuzz/cases.py"}
        report["case"] = case.description
        before = _files(folder)
        try:
            result = case.run()
        except UserError as exc:
            message = str(exc)
            if message.strip() and "\n" not in message:
                report.update(kind="error", detail=message[:300])
            else:
                report.update(kind="mishandled", detail=f"UserError not on one line: {message[:300]!r}",
                              where=_where(exc))
        except Exception as exc:
            report.update(kind="mishandled", detail=f"{type(exc).__name__}: {str(exc)[:300]}", where=_where(exc))
        else:
            problem = case.check(result)
            if problem is not None:
                report.update(kind="mishandled", detail=f"invalid result: {problem}")
            elif case.expect == "error":
                report.update(kind="mishandled", detail="accepted an input it must refuse", where=case.owner)
            else:
                report.update(kind="valid")
        left = sorted(_files(folder) - before)
        if left:
            report.update(kind="mishandled", detail=f"left files behind: {', '.join(left[:3])}")
        return report
    finally:
        shutil.rmtree(folder, ignore_errors=True)
