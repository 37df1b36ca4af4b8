"""``load_detector(location)``: the one entry point from a model file or URL to a :class:`Detector`.

Runtimes are found in a registry. Each declares what it opens, file suffixes (".onnx") or URL schemes
("http://"), and a factory ``factory(location, **options) -> Detector``:

* a module ``runtimes/NAME_runner.py`` that defines ``RUNTIME = Runtime(...)`` is found by itself, so a new
  runtime is one file (its heavy imports go inside the factory, so finding it costs nothing);
* a package installed elsewhere adds one through the entry point group :data:`ENTRY_POINT_GROUP`, naming a
  :class:`Runtime`;
* code calls :func:`register_runtime`.

A location is opened by the first runtime whose ``opens`` matches it, unless ``runtime=`` names one (which
may also open what it lists in ``also_opens``: OpenVINO runs ``.onnx`` files too).
"""

from __future__ import annotations

import importlib
import pkgutil
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, Iterable, List, Mapping, Optional, Tuple

from runtimes.detector import Detector
from runtimes.errors import UserError

ENTRY_POINT_GROUP = "ssd_edge.runtimes"


@dataclass(frozen=True)
class Runtime:
    """A runtime the loader can open models with.

    Args:
        name: what ``runtime=`` and ``--runtime`` call it.
        opens: file suffixes (".xml") and URL scheme prefixes ("grpc://") it opens by default.
        factory: ``factory(location, **options) -> Detector``; ``location`` is the path or URL as a string.
        also_opens: what it opens only when asked for by name.
        throughput_options: load options for a caller that keeps several requests in flight (OpenVINO's
            throughput hint), so that such callers need not know the runtime.
        static_batch_options: load options that, with ``max_batch=N``, compile a dynamic-batch model for
            exactly N images (calls padded to N) where a dynamic axis costs speed (OpenVINO on a CPU).
    """

    name: str
    opens: Tuple[str, ...]
    factory: Callable[..., Detector]
    also_opens: Tuple[str, ...] = ()
    throughput_options: Mapping[str, Any] = field(default_factory=dict)
    static_batch_options: Mapping[str, Any] = field(default_factory=dict)

    def matches(self, location: str, forced: bool = False) -> bool:
        patterns = self.opens + (self.also_opens if forced else ())
        lowered = location.lower()
        return any(lowered.startswith(p) if p.endswith("://") else lowered.endswith(p) for p in patterns)


_REGISTRY: Dict[str, Runtime] = {}
_discovered = False


def register_runtime(name: str, opens: Iterable[str], factory: Callable[..., Detector],
                     also_opens: Iterable[str] = (), throughput_options: Optional[Mapping[str, Any]] = None) -> Runtime:
    """Add (or replace) a runtime; returns its :class:`Runtime`."""
    runtime = Runtime(name, tuple(p.lower() for p in opens), factory, tuple(p.lower() for p in also_opens),
                      dict(throughput_options or {}))
    _discover()
    _REGISTRY[name] = runtime
    return runtime


def registered_runtimes() -> Dict[str, Runtime]:
    """Every runtime known here, by name: the built-in runner modules, entry points, registrations."""
    _discover()
    return dict(_REGISTRY)


def _discover() -> None:
    global _discovered
    if _discovered:
        return
    _discovered = True
    package = sys.modules["runtimes"]
    for module in sorted(m.name for m in pkgutil.iter_modules(package.__path__) if m.name.endswith("_runner")):
        runtime = getattr(importlib.import_module(f"runtimes.{module}"), "RUNTIME", None)
        if isinstance(runtime, Runtime):
            _REGISTRY.setdefault(runtime.name, runtime)
    for entry in _entry_points():
        try:
            runtime = entry.load()
        except Exception as exc:  # a broken plug-in must not break the built-in runtimes
            print(f"note: runtime plug-in {entry.name} ({entry.value}) failed to load: {exc}", file=sys.stderr)
            continue
        if isinstance(runtime, Runtime):
            _REGISTRY.setdefault(runtime.name, runtime)


def _entry_points() -> List[Any]:
    from importlib import metadata

    found = metadata.entry_points()
    if hasattr(found, "select"):  # Python 3.10+
        return list(found.select(group=ENTRY_POINT_GROUP))
    return list(found.get(ENTRY_POINT_GROUP, []))  # Python 3.8/3.9: a dict by group


def is_url(location: str) -> bool:
    return "://" in location


def runtime_for(location: "str | Path", runtime: Optional[str] = None) -> Runtime:
    """The runtime that opens ``location`` (named by ``runtime``, or the first whose ``opens`` matches)."""
    text = str(location)
    known = registered_runtimes()
    if runtime is not None:
        if runtime not in known:
            raise UserError(f"unknown runtime '{runtime}': choose one of {', '.join(sorted(known))}")
        chosen = known[runtime]
        if not chosen.matches(text, forced=True):
            raise UserError(f"{text}: the {runtime} runtime opens {', '.join(chosen.opens + chosen.also_opens)} only")
        return chosen
    for candidate in known.values():
        if candidate.matches(text):
            return candidate
    if is_url(text):
        schemes = sorted({p for r in known.values() for p in r.opens + r.also_opens if p.endswith("://")})
        raise UserError(f"{text}: no runtime opens '{text.split('://', 1)[0]}://' URLs; registered schemes: "
                        f"{', '.join(schemes) or 'none'}")
    suffixes = sorted({p for r in known.values() for p in r.opens if not p.endswith("://")})
    raise UserError(f"{text}: unknown model type '{Path(text).suffix}'; the runtimes here open "
                    f"{', '.join(suffixes)}")


def load_detector(location: "str | Path", runtime: Optional[str] = None, **options: Any) -> Detector:
    """A detector for the model file or URL at ``location``.

    Args:
        location: a ``.onnx``, OpenVINO ``.xml`` or TensorRT ``.engine`` written by this toolkit, or a URL
            a registered runtime opens (e.g. ``http://host:8000/model``).
        runtime: force a runtime by name ("onnxruntime", "openvino", "tensorrt", ...); an ``.onnx`` file can
            run on OpenVINO too.
        options: thresholds (``score_threshold``, ``iou_threshold``, ``topk_candidates``,
            ``max_detections``; ``default_score_threshold``: the caller's default in place of the model's,
            never below a threshold built into the model), ``max_batch`` and runtime options (e.g. OpenVINO's
            ``device``).
    """
    text = str(location)
    if not is_url(text):
        path = Path(text)
        if not path.is_file():
            raise UserError(f"{path}: no such model file; build one with python export/build_engine.py")
        if path.stat().st_size == 0:
            raise UserError(f"{path}: the model file is empty (an interrupted build?); rebuild it")
    return runtime_for(text, runtime).factory(text, **options)
