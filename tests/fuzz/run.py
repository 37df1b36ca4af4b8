"""Feed every parser of untrusted input its generated cases and print the counts.

    python tests/fuzz/run.py                 # the full run (3,000 inputs, a few minutes on 2 cores)
    python tests/fuzz/run.py --ci            # the smaller run pytest makes (tests/fuzz/test_fuzz.py)
    python tests/fuzz/run.py --only image --count 1000

Cases are seeded by (parser, index): every run tries the same inputs. Each runs in a worker process with a
time and a memory limit (tests/fuzz/harness.py); the table gives, per parser, inputs tried, clean errors
(the toolkit's one-line UserError), valid results, mishandled (anything else) and seconds; then every
mishandled case with the file that raised.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
sys.path.pop(1)  # the script's folder must not shadow a library (see apps/camera.py)

from tests.fuzz.cases import PARSERS
from tests.fuzz.harness import format_table, run_cases


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--ci", action="store_true", help="the pytest run's counts (default: the full counts)")
    parser.add_argument("--only", action="append", choices=sorted(PARSERS), help="these parsers only")
    parser.add_argument("--count", type=int, help="cases per parser (default: each parser's full count)")
    parser.add_argument("--assets", type=Path, help="folder for the shared test files (default: a new temporary "
                        "folder; reuse one to skip building the IRs)")
    args = parser.parse_args()
    names = args.only or list(PARSERS)
    plan = [(n, args.count or (PARSERS[n].ci_count if args.ci else PARSERS[n].full_count)) for n in names]
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="ssd-edge-fuzz-assets-") as tmp:
        tallies = run_cases(args.assets or Path(tmp), plan, {}, progress=True)
    print("\n".join(format_table(tallies)))
    print(f"wall time {time.monotonic() - started:.1f} s")
    failures = [f for t in tallies.values() for f in t.failures]
    for f in failures:
        print(f"mishandled: {f.parser} #{f.index} {f.case}: {f.detail} [{f.where or '?'}]")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
