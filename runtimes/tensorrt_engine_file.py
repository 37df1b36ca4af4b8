"""A TensorRT engine on disk: the plan ``NAME.engine`` plus its record ``NAME.engine.json``.

The plan stays a bare TensorRT plan, so ``trtexec --loadEngine=NAME.engine`` and other tools still read
it; the record beside it carries the model metadata, what the engine was built from and with (TensorRT
version, GPU name and compute capability, precision, calibration) and the plan's sha256, so a record
that does not belong to its plan is caught. Both files are written together, atomically.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Dict, Tuple

from runtimes.atomic import atomic_outputs
from runtimes.errors import UserError
from runtimes.metadata import ModelMetadata
from runtimes.tensorrt_support import GPUIdentity

RECORD_SUFFIX = ".json"
RECORD_FORMAT = "ssd-edge tensorrt engine record 1"


def record_path(engine: "str | Path") -> Path:
    engine = Path(engine)
    return engine.with_name(engine.name + RECORD_SUFFIX)


@dataclass
class EngineRecord:
    """What an engine was made from and for."""

    metadata: ModelMetadata
    tensorrt_version: str
    gpu: GPUIdentity
    build: Dict[str, Any] = field(default_factory=dict)  # precision, INT8 route, calibration, options
    rebuild_command: str = "python export/build_engine.py --target tensorrt"
    plan_sha256: str = ""

    def to_json(self) -> str:
        data = {"format": RECORD_FORMAT, "metadata": json.loads(self.metadata.to_json()),
                "tensorrt_version": self.tensorrt_version, "gpu": asdict(self.gpu), "build": self.build,
                "rebuild_command": self.rebuild_command, "plan_sha256": self.plan_sha256}
        return json.dumps(data, indent=1, sort_keys=True)

    @classmethod
    def from_json(cls, text: str, origin: str) -> "EngineRecord":
        try:
            data = json.loads(text)
            if not isinstance(data, dict):
                raise ValueError(f"a JSON object was expected, not {type(data).__name__}")
            if data.get("format") != RECORD_FORMAT:
                raise ValueError(f"format {data.get('format')!r}")
            meta = ModelMetadata.from_json(json.dumps(data["metadata"]), origin)
            return cls(meta, str(data["tensorrt_version"]), GPUIdentity(**data["gpu"]), dict(data["build"]),
                       str(data["rebuild_command"]), str(data["plan_sha256"]))
        except (ValueError, KeyError, TypeError) as exc:
            raise UserError(f"{origin}: unreadable engine record ({exc}); rebuild the engine with "
                            "python export/build_engine.py --target tensorrt") from None


def write_engine(path: "str | Path", plan: bytes, record: EngineRecord) -> None:
    """Write the plan and its record; neither appears unless both are complete."""
    record.plan_sha256 = hashlib.sha256(plan).hexdigest()
    with atomic_outputs(path, record_path(path)) as (plan_tmp, record_tmp):
        plan_tmp.write_bytes(plan)
        record_tmp.write_text(record.to_json(), encoding="utf-8")


def read_engine(path: "str | Path") -> Tuple[bytes, EngineRecord]:
    """The plan and its record, checked to belong together (UserError otherwise)."""
    path = Path(path)
    side = record_path(path)
    if not side.is_file():
        raise UserError(f"{path}: no engine record {side.name} beside it (a plan built outside this toolkit, "
                        "e.g. by trtexec, lacks the model metadata); build it with python export/build_engine.py "
                        "--target tensorrt")
    try:
        text = side.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise UserError(f"{side}: unreadable engine record (not UTF-8 text); rebuild the engine with "
                        "python export/build_engine.py --target tensorrt") from None
    record = EngineRecord.from_json(text, str(side))
    plan = path.read_bytes()
    if hashlib.sha256(plan).hexdigest() != record.plan_sha256:
        raise UserError(f"{path}: the plan does not match its record {side.name} (replaced or half-copied?); "
                        f"rebuild it: {record.rebuild_command}")
    return plan, record


def check_compatible(record: EngineRecord, tensorrt_version: str, gpu: GPUIdentity, origin: str) -> None:
    """UserError unless the engine was built by this TensorRT version for this GPU model."""
    problems = []
    if record.tensorrt_version != tensorrt_version:
        problems.append(f"built by TensorRT {record.tensorrt_version}, this is TensorRT {tensorrt_version}")
    if record.gpu.compute_capability != gpu.compute_capability or record.gpu.name != gpu.name:
        problems.append(f"built for {record.gpu.name} (compute {record.gpu.compute_capability}), this is "
                        f"{gpu.name} (compute {gpu.compute_capability})")
    if problems:
        raise UserError(f"{origin}: {'; '.join(problems)}. TensorRT engines run only where they were built: "
                        f"rebuild it here with {record.rebuild_command}")
