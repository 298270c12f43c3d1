"""Whether a worker's memory grows with the jobs it has run: one process drains rounds of
jobs on one store (SQLite by default), a burst worker a round, its peak RSS printed after each.

    python benchmarks/worker_memory.py                    # 5 rounds of 200,000 (1M jobs)
    python benchmarks/worker_memory.py --engine postgres --rounds 3 --jobs 100000

A worker that keeps something per job shows it as a climb from round to round; the first
round carries the imports and the pool's start.
"""

from __future__ import annotations

import argparse
import resource
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import bench_tasks
import profile_paths

from nuvom.worker import Worker


def rss_mb() -> float:
    """This process's peak resident set so far (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--engine", default="sqlite")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--jobs", type=int, default=200_000)
    args = parser.parse_args()
    runtime, drop = profile_paths.configure(args.engine, Path(tempfile.mkdtemp()))
    add = bench_tasks.bench_add
    done = 0
    try:
        print(f"{'engine':<9} {'jobs run':>10} {'peak RSS':>10} {'round':>9}")
        for _ in range(args.rounds):
            for start in range(0, args.jobs, 1_000):
                add.map([(i, i) for i in range(start, min(args.jobs, start + 1_000))])
            began = time.perf_counter()
            Worker(workers=4).run(burst=True)  # a worker a round, in one process
            done += args.jobs
            took = time.perf_counter() - began
            print(f"{args.engine:<9} {done:>10,} {rss_mb():>7.1f} MB {took:>7.1f} s", flush=True)
    finally:
        runtime.close()
        drop()


if __name__ == "__main__":
    main()
