"""The schedule chosen by measurement: for a loaded detector and N streams, time the candidate (frames per
call, requests in flight) pairs on synthetic frames for a bounded time, take the best, and remember it.

A rule tuned on one CPU picks the wrong batch on another (issue #28: the best batch differed between an
Intel and an AMD box, docs/multistream.md), so the camera measures at start. Candidates: batches 1, 2, 4, 8 up
to the stream count and the model's batch (a static-batch model: its own batch only), each with 2 and 4
requests in flight. A dynamic-batch model is compiled for each batch measured with the runtime's
``static_batch_options`` (OpenVINO: exactly that batch, partial calls padded), which is how it then runs.
Each pair is timed twice in alternating order (drift hits every pair alike) within ``seconds`` of
inference in all, compiling not counted; a pair within ``tie`` of the best loses to a smaller batch (less
latency), then to more requests in flight: the probe's frames cost the host nothing, a stream's frames do
(decoding, resizing, handing results on), and a request queued behind each running one keeps the runtime busy
while the host prepares the next (docs/multistream.md, "The schedule measured at start").

The choice is cached in a JSON file (default ``$XDG_CACHE_HOME/ssd-edge/schedules.json``, else
``~/.cache/ssd-edge/``), keyed by the model's content hash (an IR's ``.bin`` too), the runtime and its load
options (thresholds aside), the stream count and the machine (CPU model, cores, the runtime's version):
any change measures again. The file is data, written atomically; one that cannot be read is measured over.
"""

from __future__ import annotations

import json
import os
import platform
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Tuple

import numpy as np

from runtimes.detector import Detector
from streams.scheduler import Schedule

CACHE_VERSION = 2  # 2: ties go to more requests in flight (version 1 chose fewer): older choices measured again
CACHE_ENTRIES = 64  # entries kept (the newest): one per model, runtime, options, stream count and machine
CACHE_MAX_BYTES = 1 << 20  # 64 entries take ~60 kB; a larger file is not ours
# Load options that change what is kept, not how fast the network runs: not part of the key.
THRESHOLD_OPTIONS = ("score_threshold", "default_score_threshold", "iou_threshold", "topk_candidates",
                     "max_detections", "max_batch")
Pair = Tuple[int, int]  # (frames per call, requests in flight)
PASSES = 2  # windows per pair, in opposite orders: drift hits every pair alike
MAX_WINDOW = 20  # a window given up after this many times its length without a result after the first


def default_cache_path() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "ssd-edge" / "schedules.json"


@dataclass(frozen=True)
class ProbeOptions:
    """At most ``seconds`` of inference to measure in all, ``seconds_per_pair`` each (compiling aside);
    ``cache`` (None: the default path); pairs within ``tie`` (a fraction) of the best count as equal."""

    seconds: float = 3.0
    seconds_per_pair: float = 0.5
    cache: Optional[Path] = None
    batches: Tuple[int, ...] = (1, 2, 4, 8)
    depths: Tuple[int, ...] = (2, 4)
    tie: float = 0.01  # about the windows' noise; a wider tie gave away a faster batch for latency (0.89x, not 0.94x)


@dataclass(frozen=True)
class ModelToProbe:
    """What the key is made of and how to get the detector for a batch: ``load(batch)`` compiles the model
    for ``batch`` frames per call (statically where the runtime can)."""

    location: str
    runtime: str
    options: Mapping[str, Any]
    load: Callable[[int], Detector]


def cpu_model() -> str:
    """The CPU's model name (/proc/cpuinfo on Linux; the platform's string elsewhere)."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            for line in f:
                if line.lower().startswith(("model name", "hardware")):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def runtime_version(backend: str) -> str:
    from importlib import metadata  # Python 3.8+

    try:
        return metadata.version(backend)
    except Exception:  # not an installed distribution (a server, a runtime of another name)
        return "unknown"


def load_average() -> str:
    """The 1-minute load average beside the cores (a measurement on a busy machine says so), or "unknown"."""
    try:
        return f"{os.getloadavg()[0]:.1f} on {os.cpu_count() or 1} cores"
    except (AttributeError, OSError):  # not on every platform
        return "unknown"


def content_hash(location: str) -> str:
    """The model file's SHA-256 (an OpenVINO IR's ``.xml`` and ``.bin`` together); a URL as it is."""
    from runtimes.hashing import sha256_file

    path = Path(location)
    if not path.is_file():
        return location
    digest = sha256_file(path)
    weights = path.with_suffix(".bin")
    if path.suffix.lower() == ".xml" and weights.is_file():
        digest += ":" + sha256_file(weights)
    return digest


def schedule_key(model: ModelToProbe, backend: str, streams: int) -> Dict[str, Any]:
    options = {k: v for k, v in sorted(model.options.items()) if k not in THRESHOLD_OPTIONS}
    return {"model": content_hash(model.location), "runtime": model.runtime,
            "options": json.loads(json.dumps(options, default=str)), "streams": streams,
            "cpu": cpu_model(), "cores": os.cpu_count() or 1, "version": f"{backend} {runtime_version(backend)}"}


def candidates(streams: int, capacity: int, dynamic: bool, options: ProbeOptions) -> List[Pair]:
    batches = [b for b in options.batches if b <= min(streams, capacity)] if dynamic else [capacity]
    return [(b, d) for b in (batches or [1]) for d in options.depths]


def choose(measured: Mapping[Pair, float], tie: float) -> Pair:
    """The pair of the highest throughput; one within ``tie`` of it with a smaller batch (then more in
    flight) wins."""
    best = max(measured.values())
    return min((pair for pair, fps in measured.items() if fps >= best * (1 - tie)),
               key=lambda pair: (pair[0], -pair[1]))


def throughput(detector: Detector, batch: int, depth: int, seconds: float) -> float:
    """Frames/s of ``detector`` with ``depth`` requests of ``batch`` synthetic frames of the model's size in
    flight: the frames finished over about ``seconds`` from the first result (the queue full), at least one
    request's; 0.0 when none finishes in ``MAX_WINDOW`` windows."""
    rng = np.random.default_rng(0)
    size = (detector.meta.input_height, detector.meta.input_width, 3)
    frames = [rng.integers(0, 256, size, dtype=np.uint8) for _ in range(batch)]
    first: Optional[float] = None
    done, last = 0, 0.0
    requests = detector.requests(depth)
    give_up = time.perf_counter() + MAX_WINDOW * seconds
    try:
        while time.perf_counter() < give_up:
            requests.submit(frames)  # blocks while ``depth`` are busy
            finished = sum(1 for _ in requests.results())
            now = time.perf_counter()
            if finished and first is None:
                first, finished = now, finished - 1
            if finished:
                done, last = done + batch * finished, now
            if done and last - first >= seconds:  # type: ignore[operator]
                break
    finally:
        requests.close()  # (the requests still in flight are not counted)
    return done / (last - first) if done and first is not None and last > first else 0.0


def measure(detectors: Mapping[int, Detector], pairs: Sequence[Pair], seconds: float,
            passes: int = PASSES) -> Dict[Pair, float]:
    """Each pair's frames/s: the median of ``passes`` windows, the pairs' order reversed every pass."""
    window = seconds / (passes * len(pairs))
    runs: Dict[Pair, List[float]] = {pair: [] for pair in pairs}
    for p in range(passes):
        for batch, depth in (pairs if p % 2 == 0 else pairs[::-1]):
            runs[(batch, depth)].append(throughput(detectors[batch], batch, depth, window))
    return {pair: float(np.median(v)) for pair, v in runs.items()}


def read_cache(path: Path, log: Callable[[str], None]) -> List[Dict[str, Any]]:
    try:
        if path.stat().st_size > CACHE_MAX_BYTES:
            raise ValueError(f"more than {CACHE_MAX_BYTES} bytes")
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return []
    except (OSError, ValueError) as exc:
        log(f"schedule cache {path}: unreadable ({exc}); measuring again and rewriting it")
        return []
    entries = data.get("entries") if isinstance(data, dict) and data.get("version") == CACHE_VERSION else None
    return [e for e in entries if isinstance(e, dict)] if isinstance(entries, list) else []


def write_cache(path: Path, entries: List[Dict[str, Any]], log: Callable[[str], None]) -> None:
    from runtimes.atomic import atomic_write_text
    from runtimes.errors import UserError

    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(path, json.dumps({"version": CACHE_VERSION, "entries": entries[-CACHE_ENTRIES:]},
                                           indent=1) + "\n")
    except (OSError, UserError) as exc:  # a read-only home: the run goes on, measuring again next time
        log(f"schedule cache {path}: not written ({exc})")


def cached_pair(entry: Optional[Mapping[str, Any]], pairs: Sequence[Pair]) -> Optional[Pair]:
    """The entry's pair when it is still a candidate (an entry edited by hand into another is measured over)."""
    if entry is None:
        return None
    return next((pair for pair in pairs if pair == (entry.get("batch"), entry.get("depth"))), None)


def measured_schedule(model: ModelToProbe, first: Detector, streams: int, options: ProbeOptions = ProbeOptions(),
                      log: Callable[[str], None] = print) -> Tuple[Detector, Schedule]:
    """The detector to run (compiled for the chosen batch) and the schedule, measured or from the cache.
    ``first`` is the detector as loaded with the model's default batch; it is closed when another is kept."""
    dynamic = first.meta.inputs.dynamic_batch
    pairs = candidates(streams, first.max_batch, dynamic, options)
    path = options.cache or default_cache_path()
    key = schedule_key(model, first.backend, streams)
    entries = read_cache(path, log)
    hit = next((e for e in entries if e.get("key") == key), None)
    pair = cached_pair(hit, pairs)
    detectors: Dict[int, Detector] = {} if dynamic else {first.max_batch: first}
    try:
        if pair is not None and hit is not None:
            how = f"from {path} (measured {hit.get('at', '?')})"
        else:
            for batch in sorted({b for b, _ in pairs}):
                detectors.setdefault(batch, model.load(batch))
            started = time.monotonic()
            budget = min(options.seconds, options.seconds_per_pair * len(pairs))
            measured = measure(detectors, pairs, budget)
            pair = choose(measured, options.tie)
            figures = ", ".join(f"{b}x{d} {fps:.0f}" for (b, d), fps in sorted(measured.items()))
            load = load_average()
            how = (f"measured in {time.monotonic() - started:.1f} s ({budget:g} s of inference; frames "
                   f"per call x in flight: FPS {figures}; load average {load}), cached in {path}")
            entries = [e for e in entries if e.get("key") != key] + [
                {"key": key, "batch": pair[0], "depth": pair[1], "at": time.strftime("%Y-%m-%dT%H:%M:%S"),
                 "load": load, "fps": {f"{b}x{d}": round(fps, 1) for (b, d), fps in measured.items()}}]
            write_cache(path, entries, log)
        batch, depth = pair
        chosen = detectors.pop(batch, None) or (first if not dynamic else model.load(batch))
    finally:
        for other in detectors.values():
            if other is not first:
                other.close()
    if chosen is not first:
        first.close()
    notes = f"{batch} frame{'s' if batch > 1 else ''} per call, {depth} request{'s' if depth > 1 else ''} in flight"
    if streams > batch:
        notes = f"{streams} streams served round-robin; {notes}"
    return chosen, Schedule(batch, depth, f"{notes} (schedule {how})")
