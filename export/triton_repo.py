"""A Triton model repository for one detector: ``REPO/NAME/config.pbtxt`` + ``REPO/NAME/1/model.{onnx,plan,xml}``.

The configuration is read off the model itself: backend or platform from the file type, ``max_batch_size``
from its batch axis (a static batch is served as ``max_batch_size: 0`` with the batch in the dims; a dynamic
axis as ``max_batch_size: N`` and dims without it), input and output names, types and dims from the graph
(ONNX, OpenVINO IR) or from the engine record (TensorRT plan), and the toolkit's :class:`ModelMetadata` JSON
in ``parameters`` under :data:`PARAMETER_KEY`, describing the input the served graph takes, so that a client
(``runtimes/kserve_runner.py``) needs nothing but the URL. ``ovms_config`` adds OpenVINO Model Server's
``config.json``, which points at the same folder (OVMS ignores ``config.pbtxt``; it serves the IR as is).

What a served model is (its tensors, batch and metadata) is read by ``runtimes/served_model.py``, which the
server (``serving/``, ``apps/serve.py``) reads too: it serves a model under the same name, tensor names and
metadata parameter.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

from runtimes.atomic import replace_folder
from runtimes.errors import UserError
from runtimes.served_model import PARAMETER_KEY, ServedModel, TensorSpec

METADATA_FILE = "metadata.json"  # the same JSON beside config.pbtxt, for servers without config parameters (OVMS)
KINDS = {"auto": "KIND_AUTO", "cpu": "KIND_CPU", "gpu": "KIND_GPU"}
DEFAULT_MAX_BATCH = 8  # max_batch_size for a dynamic batch axis unless max_batch says otherwise
DEFAULT_QUEUE_DELAY_US = 100


@dataclass
class TritonOptions:
    """The choices a repository leaves to its user (``export/build_engine.py --target triton`` options).

    ``max_batch``: ``max_batch_size`` for a dynamic batch axis (default: the TensorRT profile's largest, or
    :data:`DEFAULT_MAX_BATCH`); ``dynamic_batching`` with ``preferred_batch_sizes`` and ``queue_delay_us``
    (microseconds a request may wait for others to join its batch); ``instance_count`` model instances of
    ``instance_kind`` ("auto", "cpu", "gpu"; default: GPU for a plan, CPU for an IR, Triton's choice for ONNX).
    """

    name: str
    max_batch: Optional[int] = None
    dynamic_batching: bool = True
    preferred_batch_sizes: Sequence[int] = field(default_factory=tuple)
    queue_delay_us: int = DEFAULT_QUEUE_DELAY_US
    instance_count: int = 1
    instance_kind: Optional[str] = None


# -- the configuration ---------------------------------------------------------------------------------------


def served_max_batch(model: ServedModel, requested: Optional[int]) -> int:
    """``max_batch_size``: 0 for a static graph batch (the batch stays in the dims), else ``requested`` or
    the default, checked against a TensorRT profile's largest batch."""
    if model.graph_batch is not None:
        return 0
    limit = model.max_batch_limit
    if requested is None:
        return limit or DEFAULT_MAX_BATCH
    if requested < 1:
        raise UserError(f"--max-batch must be at least 1, got {requested}")
    if limit is not None and requested > limit:
        raise UserError(f"--max-batch {requested}: the engine's batch profile ends at {limit}; rebuild it with "
                        f"python export/build_engine.py --target tensorrt --batch 1,OPT,{requested}")
    return requested


def _kind(model: ServedModel, requested: Optional[str]) -> str:
    if requested is None:
        return {"tensorrt": "KIND_GPU", "openvino": "KIND_CPU"}.get(model.kind, "KIND_AUTO")
    if requested not in KINDS:
        raise UserError(f"unknown instance kind '{requested}': choose one of {', '.join(KINDS)}")
    if model.kind == "openvino" and requested == "gpu":
        raise UserError("Triton's OpenVINO backend runs on the CPU: use --instance-kind cpu (or serve the ONNX "
                        "file for a GPU)")
    if model.kind == "tensorrt" and requested == "cpu":
        raise UserError("a TensorRT plan runs on a GPU only: use --instance-kind gpu")
    return KINDS[requested]


def _quote(text: str) -> str:
    """A protobuf text-format string literal."""
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


def _tensor_block(field_name: str, tensors: List[TensorSpec], batched: bool) -> List[str]:
    lines = []
    for tensor in tensors:
        dims = tensor.dims[1:] if batched else tensor.dims
        lines += [f"{field_name} {{", f"  name: {_quote(tensor.name)}", f"  data_type: {tensor.data_type}",
                  f"  dims: [ {', '.join(str(d) for d in dims)} ]", "}"]
    return lines


BACKENDS = {"onnx": ("backend", "onnxruntime", "model.onnx"), "openvino": ("backend", "openvino", "model.xml"),
            "tensorrt": ("platform", "tensorrt_plan", "model.plan")}


def config_pbtxt(model: ServedModel, options: TritonOptions) -> str:
    """Triton's ``config.pbtxt`` for ``model`` (text format of ``inference.ModelConfig``)."""
    max_batch = served_max_batch(model, options.max_batch)
    key, value, filename = BACKENDS[model.kind]
    lines = [f"name: {_quote(options.name)}", f"{key}: {_quote(value)}", f"default_model_filename: {_quote(filename)}",
             f"max_batch_size: {max_batch}"]
    lines += _tensor_block("input", model.inputs, max_batch > 0)
    lines += _tensor_block("output", model.outputs, max_batch > 0)
    if options.dynamic_batching and max_batch > 0:
        preferred = list(options.preferred_batch_sizes)
        too_large = [size for size in preferred if not 1 <= size <= max_batch]
        if too_large:
            raise UserError(f"--preferred-batch {','.join(map(str, too_large))}: preferred batch sizes must be "
                            f"within 1..{max_batch} (the max_batch_size)")
        if options.queue_delay_us < 0:
            raise UserError(f"--queue-delay-us must be 0 or more, got {options.queue_delay_us}")
        lines += ["dynamic_batching {"] + [f"  preferred_batch_size: {size}" for size in preferred] + \
                 [f"  max_queue_delay_microseconds: {options.queue_delay_us}", "}"]
    if options.instance_count < 1:
        raise UserError(f"--instance-count must be at least 1, got {options.instance_count}")
    lines += ["instance_group {", f"  count: {options.instance_count}",
              f"  kind: {_kind(model, options.instance_kind)}", "}"]
    lines += ["parameters {", f"  key: {_quote(PARAMETER_KEY)}",
              f"  value {{ string_value: {_quote(model.metadata_json)} }}", "}"]
    return "\n".join(lines) + "\n"


def ovms_entry(name: str, device: str = "CPU") -> Dict[str, Any]:
    """One ``model_config_list`` entry of OpenVINO Model Server's ``config.json`` (``base_path`` relative to
    the file: OVMS resolves it from the config's folder)."""
    return {"config": {"name": name, "base_path": name, "target_device": device}}


def merged_ovms_config(existing: Optional[str], name: str) -> str:
    """``config.json`` with ``name``'s entry added or replaced, the other models' entries kept."""
    data: Dict[str, Any] = {"model_config_list": []}
    if existing:
        try:
            data = json.loads(existing)
            if not isinstance(data.get("model_config_list"), list):
                raise ValueError("no model_config_list")
        except (ValueError, AttributeError) as exc:
            raise UserError(f"the repository's config.json is not an OVMS configuration ({exc}); move it away "
                            "or choose another --output") from None
    kept = [e for e in data["model_config_list"] if e.get("config", {}).get("name") != name]
    data["model_config_list"] = [*kept, ovms_entry(name)]
    return json.dumps(data, indent=2) + "\n"


# -- writing the repository -----------------------------------------------------------------------------------


@dataclass
class WrittenRepository:
    folder: Path  # REPO/NAME
    config: Path
    model_files: List[Path]
    ovms_config: Optional[Path] = None


def _model_files(model: ServedModel) -> List[Path]:
    if model.kind == "openvino":
        return [model.path, model.path.with_suffix(".bin")]
    return [model.path]


def write_repository(model: ServedModel, repo: "str | Path", options: TritonOptions,
                     ovms: bool = False) -> WrittenRepository:
    """Write ``REPO/NAME/{config.pbtxt, metadata.json, 1/model.*}`` (and with ``ovms`` ``REPO/config.json``).

    The model folder is assembled under a temporary name in ``REPO`` and renamed into place whole: a crash
    leaves the previous folder or none, never a half-copied model.
    """
    from runtimes.atomic import atomic_write_text

    repo = Path(repo)
    name = options.name
    if not name or "/" in name or name.startswith(".") or name.strip() != name:
        raise UserError(f"model name {name!r}: use letters, digits, '.', '_' or '-' (it becomes a folder and a URL)")
    if ovms and model.kind != "openvino":
        raise UserError("--ovms serves OpenVINO IR: pass --ir M.xml (OpenVINO Model Server reads .xml + .bin)")
    text = config_pbtxt(model, options)  # validated before anything is written
    try:
        repo.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UserError(f"{repo}: cannot create the repository folder ({exc.strerror}); "
                        "choose another --output") from None
    _, _, filename = BACKENDS[model.kind]
    staging = Path(tempfile.mkdtemp(prefix=f".{name}.", dir=repo))
    try:
        (staging / "1").mkdir()
        targets = [staging / "1" / filename]
        if model.kind == "openvino":
            targets.append(targets[0].with_suffix(".bin"))
        for source, target in zip(_model_files(model), targets):
            shutil.copyfile(source, target)
        (staging / "config.pbtxt").write_text(text, encoding="utf-8")
        (staging / METADATA_FILE).write_text(model.metadata_json + "\n", encoding="utf-8")
        for path in [staging, staging / "1"]:
            os.chmod(path, 0o755)  # mkdtemp makes 0700; a server in a container runs as another user
        final = repo / name
        replace_folder(staging, final)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    written = WrittenRepository(final, final / "config.pbtxt", [final / "1" / t.name for t in targets])
    if ovms:
        config = repo / "config.json"
        existing = config.read_text(encoding="utf-8") if config.is_file() else None
        atomic_write_text(config, merged_ovms_config(existing, name))
        written.ovms_config = config
    return written


def server_commands(written: WrittenRepository) -> List[str]:
    """The commands that serve the repository (printed by the build)."""
    repo = written.folder.parent.resolve()
    lines = [f"tritonserver --model-repository {repo}",
             f"docker run --rm -p 8000:8000 -p 8001:8001 -v {repo}:/models nvcr.io/nvidia/tritonserver:<xx.yy>-py3 "
             "tritonserver --model-repository /models"]
    if written.ovms_config is not None:
        lines.append(f"docker run --rm -p 9000:9000 -p 8000:8000 -v {repo}:/models openvino/model_server:latest "
                     "--config_path /models/config.json --port 9000 --rest_port 8000")
    return lines
