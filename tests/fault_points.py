"""Test-only: run a script or ``-c`` code with a SIGKILL planted at one of its file renames.

    SSD_EDGE_FAULT=before-replace:1 SSD_EDGE_FAULT_DIR=outputs python tests/fault_points.py export/build_engine.py ...

``before-replace:N`` kills the process just before the Nth ``os.replace`` onto a file in SSD_EDGE_FAULT_DIR
(every output is written to a temporary name and renamed into place: runtimes/atomic.py), ``after-replace:N``
just after it. Without SSD_EDGE_FAULT the script runs untouched. tests/test_fault_injection.py uses it; it
also kills builds at a moment chosen by time (while a temporary file is being written).
"""

from __future__ import annotations

import os
import runpy
import signal
import sys
from pathlib import Path

FAULT = "SSD_EDGE_FAULT"
FAULT_DIR = "SSD_EDGE_FAULT_DIR"


def install() -> None:
    spec = os.environ.get(FAULT)
    if not spec:
        return
    when, nth = spec.split(":")
    if when not in ("before-replace", "after-replace"):
        raise SystemExit(f"{FAULT}: unknown point {when!r}")
    target_dir = Path(os.environ[FAULT_DIR]).resolve()
    real_replace = os.replace
    seen = [0]

    def replace(src, dst, *args, **kwargs):  # type: ignore[no-untyped-def]
        ours = Path(dst).resolve().parent == target_dir
        if ours:
            seen[0] += 1
        if ours and seen[0] == int(nth) and when == "before-replace":
            os.kill(os.getpid(), signal.SIGKILL)
        real_replace(src, dst, *args, **kwargs)
        if ours and seen[0] == int(nth) and when == "after-replace":
            os.kill(os.getpid(), signal.SIGKILL)

    os.replace = replace  # type: ignore[assignment]


def main() -> None:
    install()
    root = str(Path(__file__).resolve().parents[1])
    if sys.argv[1] == "-c":  # python tests/fault_points.py -c CODE
        code = sys.argv[2]
        sys.argv = ["-c", *sys.argv[3:]]
        sys.path.insert(0, root)
        exec(compile(code, "<fault>", "exec"), {"__name__": "__main__"})
        return
    script = sys.argv[1]
    sys.argv = [script, *sys.argv[2:]]
    sys.path.insert(0, root)
    runpy.run_path(script, run_name="__main__")


if __name__ == "__main__":
    main()
