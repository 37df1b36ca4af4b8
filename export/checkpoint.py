"""Loading training checkpoints, which are untrusted input.

Accepted: a state_dict; a training checkpoint dict wrapping one under ``model``, ``state_dict``,
``model_state_dict`` or ``net`` (lufficc's SSD, MMDetection, NVIDIA's SSD300 and most training scripts), nested
or holding the module itself (with ``--allow-pickle``); keys prefixed ``module.`` by DataParallel/DDP;
safetensors files.
``torch.load`` runs with ``weights_only=True``: a file that needs pickle to load (it holds arbitrary Python
objects) is refused unless the caller passes ``allow_pickle=True`` (``--allow-pickle``). Only a file whose
pickle stream is well formed is called one that needs pickle; anything else that does not load (random
bytes, a truncated or bit-flipped file, with or without ``--allow-pickle``) is a corrupt checkpoint. Weights
of the wrong shape or dtype, or holding NaN or infinity, are refused by :func:`load_checkpoint`.
"""

from __future__ import annotations

import pickle
import pickletools
import warnings
import zipfile
from pathlib import Path
from typing import Dict, Optional

import torch

from export.architectures import ARCHITECTURES, build_model
from runtimes.errors import UserError

WRAPPER_KEYS = ("model", "state_dict", "model_state_dict", "net")
SAFETENSORS_SUFFIXES = (".safetensors", ".st")


def _corrupt(path: Path, exc: BaseException) -> UserError:
    text = str(exc).strip()
    reason = text.splitlines()[0] if text else type(exc).__name__
    return UserError(f"{path}: corrupt or truncated checkpoint, or not a PyTorch checkpoint ({reason[:160]}); "
                     "re-copy or re-save it")


def _pickle_stream(path: Path) -> Optional[bytes]:
    """The pickle ``torch.load`` reads first: ``data.pkl`` of a zip checkpoint, else the file itself (the
    legacy format begins with pickles); None when a zip file holds none."""
    if zipfile.is_zipfile(path):
        try:
            with zipfile.ZipFile(path) as archive:
                names = [n for n in archive.namelist() if n == "data.pkl" or n.endswith("/data.pkl")]
                return archive.read(names[0]) if names else None
        except Exception:  # a damaged archive: zipfile raises BadZipFile, zlib.error, EOFError, ...
            return None
    return path.read_bytes()


def is_pickle(path: Path) -> bool:
    """Whether ``path`` holds a well-formed pickle stream (a real pickle, unlike random or damaged bytes)."""
    data = _pickle_stream(path)
    if not data:
        return False
    try:
        with warnings.catch_warnings():  # pickletools warns about odd string escapes in random bytes
            warnings.simplefilter("ignore")
            ops = list(pickletools.genops(data))  # parses the opcodes only: runs nothing
    except Exception:  # pickletools raises ValueError, UnicodeDecodeError, ... on bytes that are not a pickle
        return False
    return bool(ops) and ops[-1][0].name == "STOP"


def _torch_load(path: Path, allow_pickle: bool) -> object:
    # The file is untrusted input, so any exception while parsing it is about the file: torch's weights-only
    # unpickler raises IndexError, KeyError, struct.error, UnicodeDecodeError, ... on damaged bytes.
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        if not is_pickle(path):  # torch's own message would be about pickle, or a bare KeyError: 101
            with open(path, "rb") as f:
                zipped = f.read(4) == b"PK\x03\x04"  # torch.save's format: a zip archive
            kind = "a truncated or damaged zip archive" if zipped else "neither a zip archive nor a pickle"
            raise UserError(f"{path}: corrupt or truncated checkpoint, or not a PyTorch checkpoint ({kind}); "
                            "re-copy or re-save it") from None
        if not isinstance(exc, pickle.UnpicklingError):
            raise _corrupt(path, exc) from None
        if not allow_pickle:
            raise UserError(
                f"{path}: this checkpoint needs pickle to load (it stores Python objects, not only tensors); "
                "re-save it with torch.save(model.state_dict(), ...), or pass --allow-pickle if you trust its source"
            ) from None
    try:
        return torch.load(path, map_location="cpu", weights_only=False)
    except Exception as exc:  # a trusted pickle that still fails: an object whose class is gone, damage
        raise _corrupt(path, exc) from None


def _load_safetensors(path: Path) -> Dict[str, torch.Tensor]:
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        return load_file(str(path))
    except (SafetensorError, OSError, ValueError, TypeError) as exc:
        reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise UserError(f"{path}: corrupt or truncated safetensors file ({reason[:160]}); re-copy or re-save it"
                        ) from None


def _unwrap(obj: object, path: Path) -> Dict[str, torch.Tensor]:
    if isinstance(obj, torch.nn.Module):
        obj = obj.state_dict()
    if isinstance(obj, dict):
        for key in WRAPPER_KEYS:
            if key in obj and isinstance(obj[key], (dict, torch.nn.Module)):
                return _unwrap(obj[key], path)
        tensors = {k: v for k, v in obj.items() if isinstance(k, str) and isinstance(v, torch.Tensor)}
        if tensors:
            prefix = "module."
            if all(k.startswith(prefix) for k in tensors):
                tensors = {k[len(prefix):]: v for k, v in tensors.items()}
            return tensors
    raise UserError(f"{path}: no state_dict found (expected tensors, or a dict with one of "
                    f"{', '.join(WRAPPER_KEYS)}); is this a model checkpoint?")


def load_state_dict(path: Path, allow_pickle: bool = False) -> Dict[str, torch.Tensor]:
    """The model weights in ``path`` as a flat state_dict; :class:`UserError` for unusable files."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: no such checkpoint file; check the path given to --checkpoint")
    if path.stat().st_size == 0:
        raise UserError(f"{path}: the checkpoint file is empty (0 bytes); re-copy or re-save it")
    with open(path, "rb") as f:
        head = f.read(16)
    # safetensors begins with an 8-byte header length followed by '{'.
    if path.suffix.lower() in SAFETENSORS_SUFFIXES or head[8:9] == b"{":
        return _load_safetensors(path)
    return _unwrap(_torch_load(path, allow_pickle), path)


def class_count(state: Dict[str, torch.Tensor], arch: str) -> Optional[int]:
    """Classes a checkpoint was trained for, read off its classification convs: their output channels
    are anchors x classes, found by comparing the architecture built for 2 and for 3 classes."""
    two, three = build_model(arch, 2).state_dict(), build_model(arch, 3).state_dict()
    for key, ref in two.items():
        anchors = three[key].shape[0] - ref.shape[0] if ref.dim() else 0
        if anchors > 0 and key in state and state[key].dim():
            return int(state[key].shape[0]) // anchors
    return None


def _guess_arch(state: Dict[str, torch.Tensor], exclude: str) -> Optional[str]:
    keys = set(state)
    best, best_overlap = None, 0.0
    for arch in ARCHITECTURES:
        if arch == exclude:
            continue
        theirs = set(build_model(arch, 2).state_dict())
        overlap = len(keys & theirs) / max(1, len(keys | theirs))
        if overlap > best_overlap:
            best, best_overlap = arch, overlap
    return best if best_overlap > 0.9 else None


def load_checkpoint(path: Path, arch: str, num_classes: int, allow_pickle: bool = False) -> torch.nn.Module:
    """``arch`` with ``num_classes`` classes and the checkpoint's weights, in eval mode."""
    try:
        build_model(arch, num_classes)
    except ValueError as exc:
        raise UserError(str(exc)) from None
    return model_from_state(load_state_dict(path, allow_pickle), arch, num_classes, str(path))


def _other_codebase(state: Dict[str, torch.Tensor]) -> str:
    """What the importers make of a checkpoint that fits no torchvision SSD."""
    from importers.registry import key_prefixes, recognise

    try:
        _, recognised = recognise(state)
    except UserError:
        return f"its keys ({key_prefixes(state, 3)}) fit no torchvision SSD nor any codebase docs/checkpoints.md lists"
    return f"it is a {recognised.codebase} {recognised.network} checkpoint: leave --arch out"


def model_from_state(state: Dict[str, torch.Tensor], arch: str, num_classes: int, origin: str) -> torch.nn.Module:
    """torchvision's ``arch`` with ``num_classes`` classes and the weights of ``state``, in eval mode."""
    model = build_model(arch, num_classes)
    expected = model.state_dict()
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    mismatched = [k for k in expected if k in state and tuple(state[k].shape) != tuple(expected[k].shape)]
    if missing or unexpected:
        guess = _guess_arch(state, arch)
        cause = f"it looks like a {guess} checkpoint: pass --arch {guess}" if guess else _other_codebase(state)
        keys = ", ".join((missing or unexpected)[:3])
        raise UserError(f"{origin}: does not fit {arch} ({len(missing)} missing, {len(unexpected)} unexpected "
                        f"keys, e.g. {keys}); likely cause: {cause}")
    if mismatched:
        trained = class_count(state, arch)
        cause = (f"wrong --num-classes: the checkpoint has {trained} classes (background included), "
                 f"not {num_classes}" if trained and trained != num_classes else "wrong --arch or --num-classes")
        first = mismatched[0]
        raise UserError(f"{origin}: shape mismatch for {arch} in {len(mismatched)} tensors, e.g. {first} "
                        f"{tuple(state[first].shape)} vs {tuple(expected[first].shape)}; likely cause: {cause}")
    check_values(state, expected, origin)
    model.load_state_dict({k: v.to(expected[k].dtype) for k, v in state.items()})
    return model.eval()


def check_values(state: Dict[str, torch.Tensor], expected: Dict[str, torch.Tensor], origin: str) -> None:
    """UserError for weights that cannot stand for the model's: an integer, boolean or complex tensor where
    the model holds floats (any float dtype is cast), or NaN/infinite values (a diverged training run, a
    damaged file)."""
    for key, ref in expected.items():
        value = state[key]
        if value.is_complex() or (ref.is_floating_point() and not value.is_floating_point()):
            raise UserError(f"{origin}: tensor {key} has dtype {value.dtype} where the model holds {ref.dtype}; "
                            "is this a model checkpoint?")
        if value.is_floating_point() and not bool(torch.isfinite(value).all()):
            bad = int((~torch.isfinite(value)).sum())
            raise UserError(f"{origin}: tensor {key} holds {bad} NaN or infinite values (a diverged training "
                            "run or a damaged file); use an earlier checkpoint")



def checkpoint_class_count(path: Path, arch: str, allow_pickle: bool = False) -> Optional[int]:
    """Classes (background included) of a checkpoint for ``arch``, for defaulting --num-classes."""
    return class_count(load_state_dict(path, allow_pickle), arch)
