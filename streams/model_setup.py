"""A stream group's detector, loaded for the camera's use, and how its streams share it: one function for
the camera app (apps/camera.py) and the box (box/runner.py), taking a :class:`ModelSetup` instead of flags."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Dict, Optional, Tuple

from streams.schedule_probe import ModelToProbe, ProbeOptions, measured_schedule


@dataclass(frozen=True)
class ModelSetup:
    """What the detector is loaded with. ``track_low_score`` is set only when tracking (ByteTrack's second
    association needs detections below the camera's threshold); ``options`` are further
    :func:`runtimes.loader.load_detector` keywords (they win over the ones derived here)."""

    model: str
    runtime: Optional[str] = None
    batch_size: Optional[int] = None
    async_depth: Optional[int] = None
    score_threshold: Optional[float] = None
    track_low_score: Optional[float] = None
    options: Dict[str, Any] = field(default_factory=dict)


def load_options(setup: ModelSetup) -> Dict[str, Any]:
    """The :func:`runtimes.loader.load_detector` keywords of ``setup`` (the batch aside)."""
    from runtimes.loader import runtime_for
    from streams.scores import score_options

    options: Dict[str, Any] = dict(score_options(setup.score_threshold, setup.track_low_score))
    if setup.async_depth is None or setup.async_depth > 1:  # one request in flight runs fastest with the latency hint
        options.update(runtime_for(setup.model, setup.runtime).throughput_options)
    options.update(setup.options)
    return options


def probe_target(setup: ModelSetup) -> ModelToProbe:
    """What the schedule probe keys its cache on, and how it compiles the model for a batch (statically
    where the runtime can: its ``static_batch_options``)."""
    from dataclasses import replace

    from runtimes.loader import runtime_for

    runtime = runtime_for(setup.model, setup.runtime)
    static = replace(setup, options={**runtime.static_batch_options, **setup.options})
    return ModelToProbe(setup.model, runtime.name, load_options(setup), lambda batch: load(static, max_batch=batch))


def load(setup: ModelSetup, max_batch: Optional[int] = None):
    """The detector, with the runtime's options for several requests in flight unless ``async_depth`` is 0
    or 1, taking ``max_batch`` (or ``batch_size``) frames per call."""
    from runtimes.loader import load_detector

    options = load_options(setup)
    if max_batch or setup.batch_size:
        options["max_batch"] = max_batch or setup.batch_size
    detector = load_detector(setup.model, setup.runtime, **options)
    if detector.shares_cpu:
        from runtimes.preprocess import leave_cores_to_runtime

        leave_cores_to_runtime()  # OpenCV single-threaded beside a CPU runtime (process-wide)
    return detector


def scheduled_detector(setup: ModelSetup, streams: int, log: Callable[[str], None] = print,
                       probe: Optional[ProbeOptions] = ProbeOptions()) -> Tuple[Any, Any]:
    """The detector and how ``streams`` streams share it: on a CPU runtime with 2 or more streams and neither
    ``batch_size`` nor ``async_depth`` given, measured (streams/schedule_probe.py, ``probe``; None: the rule);
    otherwise streams/scheduler.plan_schedule. A dynamic-batch model is compiled again for the batch the
    schedule uses when that is smaller: a batch axis bounded to more ran slower at batch 1 on a CPU
    (docs/multistream.md)."""
    from streams.scheduler import plan_schedule

    depth = None if setup.async_depth is None else max(1, setup.async_depth)
    detector = load(setup)
    if (probe is not None and streams > 1 and detector.shares_cpu and setup.batch_size is None
            and setup.async_depth is None):
        return measured_schedule(probe_target(setup), detector, streams, probe, log)
    schedule = plan_schedule(detector, streams, setup.batch_size, depth)
    if schedule.batch < detector.max_batch and detector.meta.inputs.dynamic_batch:
        detector.close()
        detector = load(setup, max_batch=schedule.batch)
        log(f"model compiled again for {schedule.batch} frame{'s' if schedule.batch > 1 else ''} per call")
    return detector, schedule
