"""Measuring one benchmark row, in a process of its own (so its peak memory is its own): latency per stage,
FPS, throughput with requests in flight, mAP, peak RSS, and OpenVINO rows beside benchmark_app.

    python -m benchmarking.measure      # the child side: a JSON job on stdin, the JSON result as the last line
"""

from __future__ import annotations

import json
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

from runtimes.errors import UserError

ROOT = Path(__file__).resolve().parents[1]


class TorchDetector:
    """PyTorch eager on the same pre- and post-processing: the baseline row."""

    @staticmethod
    def create(checkpoint: str, arch: Optional[str], class_names: List[str],
               import_options: Optional[Dict[str, Any]] = None):
        import torch

        from runtimes.detector import Detector

        net, meta = torch_model(Path(checkpoint), arch, class_names, import_options)

        class _Torch(Detector):
            backend = "pytorch"

            def infer(self, batch):
                with torch.no_grad():
                    reg, cls = net(torch.from_numpy(batch))
                return {"bbox_regression": reg.numpy(), "cls_logits": cls.numpy()}

        return _Torch(meta, checkpoint)


def torch_model(checkpoint: Path, arch: Optional[str], class_names: List[str],
                import_options: Optional[Dict[str, Any]] = None):
    """(module: images -> raw outputs, metadata) of ``checkpoint``: torchvision's ``arch``, or, without one of
    its names, the network its codebase's importer recognises (importers/registry.py) with ``import_options``
    (input_size, preset, config: what the checkpoint cannot tell), as exported."""
    from export.architectures import ARCHITECTURES, RawHeadOutputs, describe

    if arch in ARCHITECTURES:
        from export.checkpoint import load_checkpoint

        model = load_checkpoint(checkpoint, str(arch), len(class_names) + 1)
        return RawHeadOutputs(model).eval(), describe(model, str(arch), class_names)
    from export.checkpoint import load_state_dict
    from importers.base import ImportOptions
    from importers.registry import import_state_dict

    given = dict(import_options or {})
    config = given.get("config")
    options = ImportOptions(arch, given.get("input_size"), given.get("preset"),
                            Path(config) if config is not None else None)
    imported = import_state_dict(load_state_dict(checkpoint), options)  # as resolve_source exports it
    return imported.module.eval(), imported.meta.replace(class_names=["__background__"] + list(class_names))


def _file_size_mb(row: Dict[str, Any]) -> float:
    path = Path(row["model"])  # 0 for a server URL
    files = [path, path.with_suffix(".bin")] if path.suffix == ".xml" else [path]
    return sum(f.stat().st_size for f in files if f.is_file()) / 1e6


def measure_row(row: Dict[str, Any], settings: Dict[str, Any]) -> Dict[str, Any]:
    """Time one row; runs in a fresh process so that ru_maxrss is this row's peak memory."""
    from benchmarking.stats import fps, iterations_for, summarize
    from calibration.images import read_image
    from runtimes.loader import load_detector

    if row["runtime"] == "pytorch":
        import torch

        torch.set_num_threads(os.cpu_count() or 1)
        detector = TorchDetector.create(row["model"], row["arch"], row["class_names"], row.get("import_options"))
    else:
        detector = load_detector(row["model"], row["runtime"])
    frames = [read_image(Path(p))[0] for p in settings["frames"]]
    for i in range(settings["warmup"]):
        detector(frames[i % len(frames)])
    start = time.perf_counter()
    detector(frames[0])
    iterations = settings["iterations"] or iterations_for(1000 * (time.perf_counter() - start))
    stages: Dict[str, List[float]] = {"preprocess": [], "inference": [], "postprocess": [], "end_to_end": []}
    for i in range(iterations):
        t0 = time.perf_counter()
        detector(frames[i % len(frames)])
        stages["end_to_end"].append(time.perf_counter() - t0)
        for name, seconds in detector.last_timings.items():
            stages[name].append(seconds)
    result: Dict[str, Any] = dict(row, status="ok", device=detector.device, iterations=iterations,
                                  latency_ms={k: summarize(v) for k, v in stages.items()},
                                  raw_end_to_end_ms=[round(1000 * s, 4) for s in stages["end_to_end"]],
                                  size_mb=round(_file_size_mb(row), 2))
    result["fps"] = fps(result["latency_ms"]["end_to_end"]["mean"])
    result["throughput_fps"], result["throughput_note"] = _throughput(row, detector, frames, settings["batch"])
    if settings.get("voc_root"):
        from calibration.evaluation import evaluate_detector
        from calibration.voc import VOCDataset

        data = VOCDataset(Path(settings["voc_root"]), settings["year"], settings["split"],
                          list(detector.meta.class_names[1:]))
        result["map_voc07"] = evaluate_detector(detector, data, show_progress=False).map
    if row["runtime"] == "openvino" and settings.get("benchmark_app"):
        result.update(benchmark_app_cross_check(detector, row["model"], frames[0]))
    result["peak_rss_mb"] = peak_rss_mb()
    detector.close()
    return result


def benchmark_app_cross_check(detector, xml: str, frame, rounds: int = 3, calls: int = 100) -> Dict[str, Any]:
    """Our inference call against benchmark_app on the same IR, like with like: one prepared frame, calls
    back to back (as benchmark_app runs its requests), the two alternating ``rounds`` times, because on a
    shared machine the speed drifts over seconds and only runs side by side compare the harnesses. The
    pipeline's own inference median (frames that change, pre- and post-processing in between) is in the
    latency columns."""
    batch = detector.prepare(frame)
    on_disk = detector.preprocessor.resize(frame)[None]  # the same pixels, as the IR file takes them
    theirs, ours = [], []
    for _ in range(rounds):
        median = benchmark_app_median(xml, seconds=3, batches=[on_disk])
        if median is None:
            return {}
        theirs.append(median)
        detector.infer(batch)
        times = []
        for _ in range(calls):
            start = time.perf_counter()
            detector.infer(batch)
            times.append(time.perf_counter() - start)
        ours.append(1000 * statistics.median(times))
    ratio = statistics.median(ours) / statistics.median(theirs)
    return {"benchmark_app_ms": statistics.median(theirs), "benchmark_app_runs_ms": theirs,
            "inference_back_to_back_ms": statistics.median(ours), "inference_back_to_back_runs_ms": ours,
            "inference_vs_benchmark_app": round(ratio, 3), "inference_within_10pct_of_benchmark_app": ratio <= 1.10}


def peak_rss_mb() -> float:
    """This process's peak resident memory. /proc's VmHWM belongs to this address space; ru_maxrss
    would also count the parent's peak, which Linux carries across fork and exec."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _throughput(row: Dict[str, Any], detector, frames, depth: int):
    """Frames per second with ``depth`` requests in flight (the runtime's own kind: see runtimes/requests.py)."""
    if depth <= 1 or row["runtime"] == "pytorch":
        return None, "sequential calls: see FPS"
    from runtimes.loader import load_detector, runtime_for

    options = dict(runtime_for(row["model"], row["runtime"]).throughput_options)  # the runtime's own, if any
    async_detector = load_detector(row["model"], row["runtime"], **options)
    batch = (frames * (1 + 64 // len(frames)))[:64]
    for rounds in (batch[:depth], batch):  # the first round warms every request up
        start = time.perf_counter()
        with async_detector.requests(depth) as requests:
            for frame in rounds:
                requests.submit([frame])
                list(requests.results())
        rate = len(rounds) / (time.perf_counter() - start)
        kind = type(requests).__name__
    async_detector.close()
    shown = ", ".join(f"{key} {value}" for key, value in options.items())
    return rate, f"{kind}, {depth} requests" + (f", {shown}" if shown else "")


def benchmark_app_median(xml: str, seconds: int = 5, batches: Sequence[Any] = ()) -> Optional[float]:
    """benchmark_app's median latency for the IR (float input, FP32 compute, as our runner uses it), fed
    ``batches`` (our prepared inputs, cycled one per call) when given rather than its random data: an IR
    with NMS inside does as much work as the frame has candidate boxes. None when benchmark_app is missing
    or prints no median."""
    import re
    import shutil
    import subprocess
    import tempfile

    tool = shutil.which("benchmark_app") or str(Path(sys.executable).with_name("benchmark_app"))
    if not Path(tool).exists():
        return None
    cmd = [tool, "-m", str(xml), "-d", "CPU", "-hint", "latency", "-ip", "f32", "-infer_precision", "f32",
           "-t", str(seconds)]
    with tempfile.TemporaryDirectory() as folder:
        for i, batch in enumerate(batches):  # benchmark_app reads a .bin file as the raw tensor
            batch.astype("float32").tofile(Path(folder) / f"input{i:04d}.bin")
        if batches:
            cmd += ["-i", folder]
        if len(batches) > 1:
            # Its default for a static model fills each request once ("inference only"); "full mode" sets
            # the next file before every call (outside the latency it reports), as our loop changes frames.
            cmd += ["-inference_only", "false"]
        out = subprocess.run(cmd, capture_output=True, text=True).stdout
    match = re.search(r"Median:\s+([\d.]+)\s*ms", out)
    return float(match.group(1)) if match else None


def measure_in_child(row: Dict[str, Any], settings: Dict[str, Any]) -> Dict[str, Any]:
    """Run :func:`measure_row` in a fresh interpreter (its own peak RSS; no state shared between rows)."""
    import subprocess

    path = os.pathsep.join([str(ROOT)] + ([os.environ["PYTHONPATH"]] if os.environ.get("PYTHONPATH") else []))
    done = subprocess.run([sys.executable, "-m", "benchmarking.measure"], env=dict(os.environ, PYTHONPATH=path),
                          input=json.dumps({"row": row, "settings": settings}), capture_output=True, text=True)
    lines = done.stdout.strip().splitlines()
    if done.returncode == 0 and lines:
        return json.loads(lines[-1])
    reason = (done.stderr.strip().splitlines() or ["no output"])[-1]
    return dict(row, status=f"failed: {reason[:300]}")


def measure_row_main() -> None:
    """The child side of :func:`measure_in_child`: a JSON job on stdin, the JSON result as the last line."""
    job = json.loads(sys.stdin.read())
    try:
        result = measure_row(job["row"], job["settings"])
    except UserError as exc:
        result = dict(job["row"], status=f"failed: {exc}")
    print(json.dumps(result), flush=True)
    # Skip interpreter teardown: the result is out, and runtimes' thread pools can abort while unwinding.
    os._exit(0)


if __name__ == "__main__":
    measure_row_main()
