"""Serving through Triton (apps/serve.py on 127.0.0.1) against the local detector, same model, same run.

    bash .ci/triton_env.sh && python benchmarks/serving_throughput.py [--streams 1,4,8] [--seconds 4] [--rounds 3]

For 1, 4 and 8 concurrent streams (threads, each with its own detector, one frame per call, as a camera
stream would), measures the aggregate images/s of (a) the local ONNX Runtime detector (one session shared by
the streams; also with one intra-op thread), (b) the KServe runtime against apps/serve.py with dynamic
batching on, (c) the same with it off; the configurations alternate within each round. Prints medians over
the rounds, the ratios against local, and the per-request cost of the hop on loopback: the client's request
time minus the time Triton's statistics say the request spent inside the server.
The server runs the same ONNX file (the demo model with a dynamic batch axis by default) with ONNX Runtime.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import threading
import time
from pathlib import Path
from typing import Callable, Dict, List

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.pop(1)

import cv2
import numpy as np

from runtimes.cli import run_cli
from runtimes.loader import load_detector
from runtimes.preprocess import leave_cores_to_runtime
from serving.process import ServerProcess

VOC_MINI = Path(__file__).resolve().parents[2] / "shared" / "data" / "voc-mini" / "VOCdevkit" / "VOC2007"


def frames() -> List[np.ndarray]:
    paths = sorted((VOC_MINI / "JPEGImages").glob("*.jpg"))
    if not paths:
        from calibration.synthetic import ensure_demo_dataset

        paths = sorted((ensure_demo_dataset(verbose=False) / "VOCdevkit/VOC2007/JPEGImages").glob("*.jpg"))[:24]
    images = [cv2.imread(str(p)) for p in paths]
    return [image for image in images if image is not None]


def run_streams(make: Callable[[], Callable[[np.ndarray], object]], streams: int, images: List[np.ndarray],
                seconds: float) -> Dict[str, float]:
    """``streams`` threads calling their own ``make()`` on frame after frame for ``seconds``: aggregate
    images/s and the median seconds per call."""
    calls = [make() for _ in range(streams)]
    latencies: List[List[float]] = [[] for _ in range(streams)]
    network: List[List[float]] = [[] for _ in range(streams)]  # each call's network stage (the request)
    barrier = threading.Barrier(streams + 1)
    stop = time.monotonic()  # replaced once all threads are ready

    def work(k: int) -> None:
        barrier.wait()
        i = k
        while time.monotonic() < stop:
            t0 = time.perf_counter()
            calls[k](images[i % len(images)])
            latencies[k].append(time.perf_counter() - t0)
            network[k].append(getattr(calls[k], "last_timings", {}).get("inference", 0.0))
            i += streams

    threads = [threading.Thread(target=work, args=(k,)) for k in range(streams)]
    for t in threads:
        t.start()
    calls[0](images[0])  # warm-up of one connection before the clock starts
    start = time.monotonic()
    stop = start + seconds
    barrier.wait()
    for t in threads:
        t.join()
    elapsed = time.monotonic() - start
    done = sum(len(x) for x in latencies)
    return {"images_per_s": done / elapsed, "median_call_s": statistics.median(v for x in latencies for v in x),
            "mean_network_s": statistics.fmean(v for x in network for v in x), "calls": done}


def server_seconds(server: ServerProcess) -> Dict[str, float]:
    """Triton's own totals for the model: successful requests and the seconds they spent inside the server
    (queue, input, the network call in the Python backend, output)."""
    import tritonclient.http as client

    stats = client.InferenceServerClient(f"127.0.0.1:{server.http_port}").get_inference_statistics(server.name)
    success = stats["model_stats"][0]["inference_stats"]["success"]
    return {"count": float(success["count"]), "seconds": float(success["ns"]) / 1e9}


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", type=Path, help="an .onnx to serve and run locally (default: the demo model, "
                                              "dynamic batch)")
    p.add_argument("--streams", default="1,4,8", help="concurrent streams (default: %(default)s)")
    p.add_argument("--seconds", type=float, default=4.0, help="per measurement (default: %(default)s)")
    p.add_argument("--rounds", type=int, default=3, help="alternations (default: %(default)s)")
    p.add_argument("--protocol", choices=("grpc", "http"), default="grpc", help="(default: %(default)s)")
    p.add_argument("--queue-delay-us", type=int, default=500,
                   help="dynamic batching's queue delay (default: %(default)s)")
    return p


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    from export.demo_model import demo_onnx

    model = args.model or demo_onnx(verbose=False, dynamic_batch=True)
    counts = [int(s) for s in args.streams.split(",")]
    images = frames()
    leave_cores_to_runtime()  # as the apps do when the network shares the CPU (local, or a server on loopback)
    local_detector = load_detector(model)
    single_thread = load_detector(model, threads=1)
    print(f"model {model.name}, {len(images)} frames, {args.protocol}, {args.seconds:g} s per measurement, "
          f"{args.rounds} rounds")
    batching = ServerProcess(model, args=["--max-batch", "8", "--queue-delay-us", str(args.queue_delay_us)])
    plain = ServerProcess(model, args=["--max-batch", "8", "--no-dynamic-batching"])
    try:
        configs: Dict[str, Callable[[], Callable[[np.ndarray], object]]] = {
            "local": lambda: local_detector,
            # ONNX Runtime's two intra-op threads lose most to other load on this 2-core VM: one thread too
            "local, 1 ORT thread": lambda: single_thread,
            "server, dynamic batching": lambda: load_detector(batching.url(args.protocol), max_batch=1),
            "server, no batching": lambda: load_detector(plain.url(args.protocol), max_batch=1),
        }
        results: Dict[tuple, List[Dict[str, float]]] = {}
        for round_index in range(args.rounds):
            for streams in counts:
                order = list(configs) if round_index % 2 == 0 else list(reversed(configs))
                for name in order:
                    server = {"server, dynamic batching": batching, "server, no batching": plain}.get(name)
                    before = server_seconds(server) if server is not None else None
                    result = run_streams(configs[name], streams, images, args.seconds)
                    if server is not None and before is not None:
                        after = server_seconds(server)
                        requests = after["count"] - before["count"]
                        inside = (after["seconds"] - before["seconds"]) / max(requests, 1)
                        result["hop_s"] = result["mean_network_s"] - inside  # seen by the client, not the server
                    results.setdefault((name, streams), []).append(result)
    finally:
        batching.stop()
        plain.stop()

    def median(name: str, streams: int, key: str) -> float:
        return statistics.median(r[key] for r in results[(name, streams)])

    print(f"\n{'streams':>7}  {'configuration':<26}{'images/s':>10}{'vs local':>10}{'median call ms':>16}"
          f"{'hop ms':>9}")
    for streams in counts:
        base = median("local", streams, "images_per_s")
        for name in configs:
            rate = median(name, streams, "images_per_s")
            hop = f"{1000 * median(name, streams, 'hop_s'):>9.2f}" if name.startswith("server") else f"{'':>9}"
            print(f"{streams:>7}  {name:<26}{rate:>10.1f}{rate / base:>9.2f}x"
                  f"{1000 * median(name, streams, 'median_call_s'):>16.2f}{hop}")
    print("\nhop ms: per request, the client's request time minus the time Triton reports the request spent "
          "inside it (queue and network call): serialisation, the loopback transport and Triton's front end")
    if 1 in counts:
        local_ms = 1000 * median("local", 1, "median_call_s")
        served_ms = 1000 * median("server, no batching", 1, "median_call_s")
        print(f"one stream, batching off, end to end: {served_ms:.2f} ms a frame through the server, "
              f"{local_ms:.2f} ms local ({served_ms - local_ms:+.2f} ms)")
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main))
