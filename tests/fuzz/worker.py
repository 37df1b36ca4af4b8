"""The fuzz worker: ``python -m tests.fuzz.worker ASSETS`` reads ``{"parser", "index"}`` lines on stdin and
answers each with one JSON report line (see :mod:`tests.fuzz.harness`). Whatever the code under test prints
goes to /dev/null, so that only reports reach the parent."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path


def main() -> int:
    reports = os.fdopen(os.dup(1), "w", buffering=1)
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 1)  # C libraries' prints too
    sys.stdout = open(os.devnull, "w")
    from tests.fuzz.cases import PARSERS, run_case

    assets = Path(sys.argv[1])
    for line in sys.stdin:
        request = json.loads(line)
        report = run_case(PARSERS[request["parser"]], int(request["index"]), assets)
        reports.write(json.dumps(report) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
