"""Runs fuzz cases in a worker process, each with a time limit and a memory limit, and counts the outcomes.

A case is named by (parser, index) and regenerated from that name in the worker (seeded, so every run tries
the same inputs). The worker runs one case at a time in a fresh folder and reports one JSON line; the parent
watches the worker's resident memory from /proc while it waits, and kills it (then starts a new one) when a
case overruns its time or memory: such a case is mishandled ("hang", "memory"), as is a worker that dies.

Outcomes: ``error`` (the toolkit's one-line :class:`UserError`), ``valid`` (a result that passed the parser's
checks), ``mishandled`` (anything else: another exception, an invalid or silently wrong result, a message on
several lines, a file left behind, a hang, unbounded memory, a crash).
"""

from __future__ import annotations

import json
import os
import select
import subprocess
import sys
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, Iterable, List, Optional, Tuple

ROOT = Path(__file__).resolve().parents[2]
MEMORY_LIMIT_MB = 3072  # growth over the worker's resident memory before the case
POLL_S = 0.02


@dataclass
class Outcome:
    parser: str
    index: int
    kind: str  # error | valid | mishandled
    case: str  # what the input was
    detail: str = ""  # the error line, or what went wrong
    where: str = ""  # for mishandled exceptions: the innermost file:line of the repository
    seconds: float = 0.0


@dataclass
class Tally:
    tried: int = 0
    error: int = 0
    valid: int = 0
    mishandled: int = 0
    seconds: float = 0.0
    failures: List[Outcome] = field(default_factory=list)


class Worker:
    """One ``python -m tests.fuzz.worker`` process fed case names on stdin."""

    def __init__(self, assets: Path) -> None:
        self.assets = assets
        self.proc: Optional[subprocess.Popen] = None

    def _start(self) -> subprocess.Popen:
        env = dict(os.environ, PYTHONPATH=str(ROOT), OPENCV_LOG_LEVEL="ERROR", PYTHONWARNINGS="ignore",
                   OMP_NUM_THREADS="1")
        self.proc = subprocess.Popen([sys.executable, "-m", "tests.fuzz.worker", str(self.assets)], cwd=ROOT,
                                     env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=subprocess.DEVNULL, text=True, bufsize=1)
        return self.proc

    def stop(self) -> None:
        if self.proc is not None:
            if self.proc.poll() is None:
                self.proc.kill()
            self.proc.wait()
            self.proc = None

    def run(self, parser: str, index: int, timeout_s: float) -> Tuple[Dict, float]:
        """The worker's report for one case, or a report of the hang, memory overrun or crash."""
        proc = self.proc if self.proc is not None and self.proc.poll() is None else self._start()
        assert proc.stdin is not None and proc.stdout is not None
        base = _rss_mb(proc.pid)
        started = time.monotonic()
        proc.stdin.write(json.dumps({"parser": parser, "index": index}) + "\n")
        proc.stdin.flush()
        # The first case of a fresh worker also pays for its imports and the shared test files.
        deadline = started + timeout_s + (120 if base < 200 else 0)
        while True:
            ready, _, _ = select.select([proc.stdout], [], [], POLL_S)
            if ready:
                line = proc.stdout.readline()
                if not line:
                    code = proc.wait()
                    self.proc = None
                    died = {"kind": "mishandled", "detail": f"the worker died (exit {code})"}
                    return died, time.monotonic() - started
                report = json.loads(line)
                return report, time.monotonic() - started
            rss = _rss_mb(proc.pid)
            if rss - base > MEMORY_LIMIT_MB and base >= 200:
                self.stop()
                return ({"kind": "mishandled", "detail": f"memory: resident {rss:.0f} MB, {rss - base:.0f} MB more "
                         "than before the case"}, time.monotonic() - started)
            if time.monotonic() > deadline:
                self.stop()
                hang = {"kind": "mishandled", "detail": f"hang: no answer in {timeout_s:.0f} s"}
                return hang, time.monotonic() - started


def _rss_mb(pid: int) -> float:
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def run_cases(assets: Path, plan: Iterable[Tuple[str, int]], timeout_s: Dict[str, float],
              progress: bool = False) -> "OrderedDict[str, Tally]":
    """Run every (parser, count) of ``plan``: cases 0..count-1 of each; the tallies by parser."""
    from tests.fuzz.cases import PARSERS

    tallies: "OrderedDict[str, Tally]" = OrderedDict()
    worker = Worker(assets)
    try:
        for parser, count in plan:
            tally = tallies.setdefault(parser, Tally())
            started = time.monotonic()
            for index in range(count):
                report, seconds = worker.run(parser, index, timeout_s.get(parser, PARSERS[parser].timeout_s))
                outcome = Outcome(parser, index, report["kind"], report.get("case", f"case {index}"),
                                  report.get("detail", ""), report.get("where", ""), seconds)
                tally.tried += 1
                setattr(tally, outcome.kind, getattr(tally, outcome.kind) + 1)
                if outcome.kind == "mishandled":
                    tally.failures.append(outcome)
                if progress and index % 50 == 49:
                    print(f"  {parser}: {index + 1}/{count}", file=sys.stderr, flush=True)
            tally.seconds += time.monotonic() - started
    finally:
        worker.stop()
    return tallies


def format_table(tallies: "OrderedDict[str, Tally]") -> List[str]:
    lines = [f"{'parser':<26}{'tried':>7}{'clean errors':>14}{'valid':>7}{'mishandled':>12}{'seconds':>9}"]
    total = Tally()
    for name, t in tallies.items():
        lines.append(f"{name:<26}{t.tried:>7}{t.error:>14}{t.valid:>7}{t.mishandled:>12}{t.seconds:>9.1f}")
        for attr in ("tried", "error", "valid", "mishandled", "seconds"):
            setattr(total, attr, getattr(total, attr) + getattr(t, attr))
    lines.append(f"{'all':<26}{total.tried:>7}{total.error:>14}{total.valid:>7}{total.mishandled:>12}"
                 f"{total.seconds:>9.1f}")
    return lines
