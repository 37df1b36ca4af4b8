"""Serve a model over KServe v2 (HTTP and gRPC) through Triton, with dynamic batching, on a CPU box.

    bash .ci/triton_env.sh                                  # once: the server's environment (.cache/triton-venv)
    .cache/triton-venv/bin/python apps/serve.py --model outputs/ssdlite320_shapes_int8.xml
    # clients: load_detector("http://127.0.0.1:8000/ssdlite320_shapes_int8"), python apps/camera.py --model URL

The network runs in the toolkit's OpenVINO (.xml) or ONNX Runtime (.onnx) runner inside Triton; the model
is served under the name, tensor names and metadata parameter a model repository from
``python export/build_engine.py --target triton`` has. It binds 127.0.0.1 unless --host says otherwise.
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from pathlib import Path
from typing import List, Optional, Sequence

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.pop(1)

from runtimes.cli import run_cli
from runtimes.errors import UserError


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", type=Path, required=True, help="an .onnx or OpenVINO .xml built by this toolkit")
    p.add_argument("--name", help="the served model's name (default: the file's stem)")
    p.add_argument("--runtime", help="force the runner (default: by file type)")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default: %(default)s, this machine only)")
    p.add_argument("--http-port", type=int, default=8000, help="KServe v2 HTTP port (default: %(default)s)")
    p.add_argument("--grpc-port", type=int, default=8001, help="KServe v2 gRPC port (default: %(default)s)")
    p.add_argument("--max-batch", type=int, default=8, help="images per network call (default: %(default)s)")
    p.add_argument("--queue-delay-us", type=int, default=100,
                   help="dynamic batching: how long a request waits for others to join (default: %(default)s)")
    p.add_argument("--preferred-batch", default="", help="dynamic batching's preferred sizes, comma-separated "
                   "(default: none)")
    p.add_argument("--no-dynamic-batching", dest="dynamic_batching", action="store_false",
                   help="one request per network call (default: dynamic batching on)")
    p.add_argument("--no-metadata-parameter", dest="metadata_parameter", action="store_false",
                   help="serve without the ssd_edge.metadata parameter, as a hand-written config would "
                        "(clients then need metadata=FILE)")
    return p


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    from serving.pytriton_server import ServeOptions, serve

    try:
        preferred = [int(s) for s in args.preferred_batch.split(",") if s.strip()]
    except ValueError:
        raise UserError(f"--preferred-batch {args.preferred_batch}: give batch sizes as integers, e.g. 4,8") from None
    options = ServeOptions(args.name, args.host, args.http_port, args.grpc_port, args.max_batch,
                           args.dynamic_batching, args.queue_delay_us, preferred, args.runtime,
                           args.metadata_parameter)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())

    def ready(urls: List[str]) -> None:
        print("serving " + " and ".join(urls) + " (Ctrl-C stops)", flush=True)

    try:
        serve(args.model, options, on_ready=ready, stop=stop)
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main))
