"""What handing an item to a waiting Python thread costs on this machine: a queue ping-pong between two threads.

    python benchmarks/thread_wakeup.py [--round-trips 20000] [--rounds 3]

Each round trip wakes the other thread twice (one put each way, each taken by a thread blocked in get), so
CPU per wake-up is the process's CPU time over twice the round trips. It sizes the hand-offs between the
camera app's threads (docs/multistream.md, "Where the CPU goes in the app").
"""

from __future__ import annotations

import argparse
import queue
import statistics
import threading
import time
from typing import Tuple


def ping_pong(round_trips: int) -> Tuple[float, float]:
    """(wall, CPU) microseconds per wake-up."""
    there: "queue.Queue[object]" = queue.Queue()
    back: "queue.Queue[object]" = queue.Queue()

    def echo() -> None:
        while True:
            item = there.get()
            if item is None:
                return
            back.put(item)

    worker = threading.Thread(target=echo)
    worker.start()
    cpu, wall = time.process_time(), time.perf_counter()
    for i in range(round_trips):
        there.put(i)
        back.get()
    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    there.put(None)
    worker.join()
    return 1e6 * wall / (2 * round_trips), 1e6 * cpu / (2 * round_trips)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--round-trips", type=int, default=20000, help="default: %(default)s")
    parser.add_argument("--rounds", type=int, default=3, help="default: %(default)s")
    args = parser.parse_args()
    runs = [ping_pong(args.round_trips) for _ in range(args.rounds)]
    for wall, cpu in runs:
        print(f"wake-up: {wall:.1f} us wall, {cpu:.1f} us CPU")
    print(f"median: {statistics.median(w for w, _ in runs):.1f} us wall, "
          f"{statistics.median(c for _, c in runs):.1f} us CPU per wake-up")


if __name__ == "__main__":
    main()
