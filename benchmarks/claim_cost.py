"""What a claim costs as work waits: a job claimed and settled from queue ``live`` while
N jobs wait in queue ``backlog``, by a worker of every queue and by one of ``live`` only
(``nuvom runworker -Q live``), on SQLite and PostgreSQL.

    python benchmarks/claim_cost.py                       # N = 10,000 and 100,000
    python benchmarks/claim_cost.py --waiting 1000000 --engines postgres

PostgreSQL reads NUVOM_POSTGRES_DSN (default postgresql://postgres@127.0.0.1:5432/test), in
a schema of its own, dropped at the end. Medians of 50 claims each.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import bench_tasks
import profile_paths

from nuvom.job import Job, JobStatus
from nuvom.records import Outcome

ROUNDS = 50
TASK = bench_tasks.bench_add.name


def claim_ms(runtime: object, queues: list[str] | None) -> float:
    """Median ms of: submit one job to ``live``, claim it, settle it."""
    queue, results = runtime.queue, runtime.results  # type: ignore[attr-defined]
    took = []
    for n in range(ROUNDS):
        queue.submit([Job(TASK, args=(n, n), queue="live")], results)
        began = time.perf_counter()
        [job] = queue.claim(1, worker_id="bench", lease_secs=30, results=results, queues=queues)
        took.append(time.perf_counter() - began)
        queue.settle([Outcome(job, JobStatus.SUCCESS, result=n, worker_id="bench",
                              finished_at=time.time())], results)  # fmt: skip
    return statistics.median(took) * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--waiting", default="10000,100000")
    parser.add_argument("--engines", default="sqlite,postgres")
    args = parser.parse_args()
    print(f"{'engine':<9} {'waiting':>10}  {'claim, every queue':>20}  {'claim, -Q live':>16}")
    for engine in args.engines.split(","):
        for waiting in (int(n) for n in args.waiting.split(",")):
            runtime, drop = profile_paths.configure(engine, Path(tempfile.mkdtemp()))
            try:
                for start in range(0, waiting, 1_000):
                    runtime.queue.submit(
                        [Job(TASK, args=(i, i), queue="backlog")
                         for i in range(start, min(waiting, start + 1_000))],
                        runtime.results,
                    )  # fmt: skip
                every, live = claim_ms(runtime, None), claim_ms(runtime, ["live"])
                print(f"{engine:<9} {waiting:>10,}  {every:>17.2f} ms  {live:>13.2f} ms",
                      flush=True)  # fmt: skip
            finally:
                runtime.close()
                drop()


if __name__ == "__main__":
    main()
