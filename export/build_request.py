"""What a build is asked for and what it gives back, as data: :class:`BuildRequest` and :class:`BuildResult`.

The command line (``export/build_engine.py``) and the benchmark (``benchmarking/plan.py``) both fill in a
request and hand it to ``export.build.build``; below them options travel as these dataclasses, never as
parsed command-line arguments.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import List, Optional, Sequence, Tuple

from export.triton_repo import TritonOptions
from runtimes.metadata import ModelMetadata

TARGETS = ("auto", "onnx", "openvino", "tensorrt", "triton")
DEFAULT_OUTPUT = Path(__file__).resolve().parents[1] / "outputs"


@dataclass
class SourceSpec:
    """What to build from: a PyTorch ``checkpoint`` of ``arch``, an exported ``onnx``, or (for a Triton
    repository) a ``built_model`` (.engine or .xml) this toolkit built; none of them: the embedded demo model."""

    checkpoint: Optional[Path] = None
    arch: Optional[str] = None
    num_classes: Optional[int] = None  # outputs incl. background (default: from the checkpoint)
    classes: Optional[Path] = None  # class names file (default: VOC's 20 for 21 outputs)
    onnx: Optional[Path] = None
    built_model: Optional[Path] = None
    allow_pickle: bool = False
    input_size: Optional[int] = None  # what a checkpoint of another codebase cannot tell (importers/cli.py)
    preset: Optional[str] = None
    config: Optional[Path] = None

    @property
    def is_demo(self) -> bool:
        return self.checkpoint is None and self.onnx is None and self.built_model is None

    def given(self) -> List[Path]:
        return [p for p in (self.built_model, self.onnx, self.checkpoint) if p is not None]


@dataclass
class CalibrationSpec:
    """INT8 calibration images: ``count`` drawn with ``seed`` from ``data`` (a VOC root's ``split``, default
    trainval, or a folder of images); for the demo model by default its data set's train split."""

    data: Optional[Path] = None
    count: int = 300
    seed: int = 0
    split: Optional[str] = None
    year: str = "2007"


@dataclass
class ValidationSpec:
    """Where reduced precision is judged against FP32: ``data`` (a VOC root; the demo model's data set by
    default), its ``split``. ``judge`` False skips the comparison (the benchmark measures mAP itself)."""

    data: Optional[Path] = None
    split: str = "val"
    year: str = "2007"
    judge: bool = True


@dataclass
class Int8Spec:
    """Accuracy-aware INT8 and its report: ``max_map_drop`` (VOC07 points; None: plain quantization),
    ``max_float_layers`` the Q/DQ gate may keep in float, ``report`` (per-layer sensitivity, into
    ``report_folder`` or OUTPUT/NAME_int8_report), the Q/DQ route's range estimator ``qdq_method``."""

    max_map_drop: Optional[float] = None
    max_float_layers: int = 8
    report: bool = False
    report_folder: Optional[Path] = None
    qdq_method: str = "minmax"


@dataclass
class TensorRTSpec:
    """The TensorRT builder's own choices (docs/tensorrt.md)."""

    int8_route: str = "auto"  # auto | implicit (calibrator, < 11) | explicit (Q/DQ ONNX, any version)
    calib_algorithm: str = "entropy"
    calib_batch: int = 8
    calib_cache: Optional[Path] = None  # default OUTPUT/NAME.calib.cache
    workspace_mib: int = 1024
    timing_cache: Optional[Path] = None  # default OUTPUT/timing-TRTVERSION-GPU.cache
    dla_core: Optional[int] = None


@dataclass
class BuildRequest:
    """One build: ``source`` -> ``target`` ("auto": TensorRT where TensorRT and a CUDA GPU are, else OpenVINO)
    at ``precision``, NMS on the host or inside the model (``nms``), a dynamic batch axis when ``batch``
    (TensorRT's profile MIN, OPT, MAX) is given, into the folder ``output``.

    ``reuse`` keeps an output whose record says it was made from the same inputs (export/build_outputs.py);
    ``progress`` shows progress bars; ``command`` is the command line that asked, recorded in engines as
    their rebuild command."""

    source: SourceSpec = field(default_factory=SourceSpec)
    target: str = "auto"
    precision: str = "fp32"
    calibration: CalibrationSpec = field(default_factory=CalibrationSpec)
    validation: ValidationSpec = field(default_factory=ValidationSpec)
    int8: Int8Spec = field(default_factory=Int8Spec)
    nms: str = "host"
    batch: Optional[Tuple[int, int, int]] = None
    output: Path = DEFAULT_OUTPUT
    tensorrt: TensorRTSpec = field(default_factory=TensorRTSpec)
    triton: TritonOptions = field(default_factory=lambda: TritonOptions(name=""))  # name "": the file's stem
    ovms: bool = False  # Triton: also OpenVINO Model Server's config.json
    reuse: bool = False
    progress: bool = True
    command: Sequence[str] = ()


@dataclass
class BuildResult:
    """What a build gave: ``path`` the model file (a Triton repository: the model's folder), every file
    written, the model's metadata, and whether it was ``built`` now or an earlier output was kept."""

    path: Path
    files: List[Path]
    metadata: Optional[ModelMetadata]
    built: bool
    target: str
