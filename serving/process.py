"""``apps/serve.py`` as a child process, for benchmarks and scripts: started on free 127.0.0.1 ports in the
server environment (``.ci/triton_env.sh``), ready when it prints its URLs, stopped (with tritonserver and
the Python backend's stub, which live in its process group) on :meth:`ServerProcess.stop`."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Sequence

from runtimes.errors import UserError

ROOT = Path(__file__).resolve().parents[1]
SERVER_PYTHON = ROOT / ".cache" / "triton-venv" / "bin" / "python"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class ServerProcess:
    """``apps/serve.py --model MODEL --name NAME ARGS`` on 127.0.0.1; ``url("grpc")`` once started."""

    def __init__(self, model: "str | Path", name: str = "ssd", args: Sequence[str] = (),
                 python: Path = SERVER_PYTHON, start_timeout_s: float = 90.0) -> None:
        if not Path(python).is_file():
            raise UserError(f"{python}: no server environment; create it with bash .ci/triton_env.sh")
        self.name = name
        self.http_port, self.grpc_port = free_port(), free_port()
        fd, log = tempfile.mkstemp(prefix="ssd-edge-serve-", suffix=".log")
        os.close(fd)
        self.log = Path(log)
        command = [str(python), str(ROOT / "apps" / "serve.py"), "--model", str(model), "--name", name,
                   "--http-port", str(self.http_port), "--grpc-port", str(self.grpc_port), *args]
        with open(self.log, "w") as out:
            # A process group of its own (stop() kills tritonserver and the stub with it) in the caller's
            # session: with the kernel's autogroup scheduling a new session would get a CPU share of its own
            # on a busy machine, and a benchmark would credit the server with CPU the client never had.
            self.process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, cwd=ROOT,
                                            process_group=0)
        deadline = time.monotonic() + start_timeout_s
        while "serving http://" not in self.log.read_text():
            if self.process.poll() is not None or time.monotonic() > deadline:
                tail = " | ".join(self.log.read_text().splitlines()[-5:])
                self.stop()
                raise UserError(f"apps/serve.py did not start (log {self.log}): {tail}")
            time.sleep(0.2)

    def url(self, scheme: str = "grpc") -> str:
        port = self.grpc_port if scheme == "grpc" else self.http_port
        return f"{scheme}://127.0.0.1:{port}/{self.name}"

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(30)
                return
            except subprocess.TimeoutExpired:
                pass
        try:
            os.killpg(self.process.pid, signal.SIGKILL)  # its group: tritonserver and the stub
        except ProcessLookupError:
            pass
        self.process.wait(10)

    def __enter__(self) -> "ServerProcess":
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

