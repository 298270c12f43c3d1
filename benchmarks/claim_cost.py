"""What a claim and its settle cost as work grows: a job claimed and settled from queue
``live`` while N jobs wait in queue ``backlog`` (``--waiting``) and H jobs have already run
(``--history``: their records and attempts stored), by a worker of every queue and by one of
``live`` only (``nuvom runworker -Q live``), on SQLite and PostgreSQL.

    python benchmarks/claim_cost.py                       # N = 10,000 and 100,000
    python benchmarks/claim_cost.py --waiting 1000000 --engines postgres
    python benchmarks/claim_cost.py --waiting 10000 --history 0,100000

PostgreSQL reads NUVOM_POSTGRES_DSN (default postgresql://postgres@127.0.0.1:5432/test), in
a schema of its own, vacuumed after the fill (as autovacuum would) and dropped at the end.
Medians of 50 claims and settles each.
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


def claim_ms(runtime: object, queues: list[str] | None) -> tuple[float, float]:
    """Median ms of claiming one job just submitted to ``live``, and of settling it."""
    queue, results = runtime.queue, runtime.results  # type: ignore[attr-defined]
    claims, settles = [], []
    for n in range(ROUNDS):
        queue.submit([Job(TASK, args=(n, n), queue="live")], results)
        began = time.perf_counter()
        [job] = queue.claim(1, worker_id="bench", lease_secs=30, results=results, queues=queues)
        claimed = time.perf_counter()
        queue.settle([Outcome(job, JobStatus.SUCCESS, result=n, worker_id="bench",
                              finished_at=time.time())], results)  # fmt: skip
        claims.append(claimed - began)
        settles.append(time.perf_counter() - claimed)
    return statistics.median(claims) * 1000, statistics.median(settles) * 1000


def run_history(runtime: object, jobs: int) -> None:
    """``jobs`` jobs of queue ``done`` submitted, claimed and settled, 1,000 at a time."""
    queue, results = runtime.queue, runtime.results  # type: ignore[attr-defined]
    for start in range(0, jobs, 1_000):
        batch = [
            Job(TASK, args=(i, i), queue="done") for i in range(start, min(jobs, start + 1_000))
        ]
        queue.submit(batch, results)
        claimed = queue.claim(len(batch), worker_id="history", lease_secs=30, results=results,
                              queues=["done"])  # fmt: skip
        now = time.time()
        queue.settle([Outcome(job, JobStatus.SUCCESS, result=1, worker_id="history",
                              finished_at=now) for job in claimed], results)  # fmt: skip


def steady(runtime: object, engine: str) -> None:
    """What autovacuum does (it is off on this machine's server): the fill's dead rows gone,
    the planner's statistics read, as a store in its steady state has them."""
    if engine != "postgres":
        return
    import psycopg

    schema = runtime.settings.postgres_schema  # type: ignore[attr-defined]
    with psycopg.connect(profile_paths.DSN, autocommit=True) as conn:
        for table in ("nuvom_queue", "nuvom_jobs", "nuvom_attempts"):
            conn.execute(f'VACUUM ANALYZE "{schema}".{table}')


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--waiting", default="10000,100000")
    parser.add_argument("--history", default="0", help="jobs already run, e.g. 0,100000")
    parser.add_argument("--engines", default="sqlite,postgres")
    args = parser.parse_args()
    print(f"{'engine':<9} {'waiting':>10} {'run before':>10}  {'claim / settle, every queue':>28}"
          f"  {'claim / settle, -Q live':>24}")  # fmt: skip
    sizes = [(int(w), int(h)) for w in args.waiting.split(",") for h in args.history.split(",")]
    for engine in args.engines.split(","):
        for waiting, history in sizes:
            runtime, drop = profile_paths.configure(engine, Path(tempfile.mkdtemp()))
            try:
                run_history(runtime, history)
                for start in range(0, waiting, 1_000):
                    runtime.queue.submit(
                        [Job(TASK, args=(i, i), queue="backlog")
                         for i in range(start, min(waiting, start + 1_000))],
                        runtime.results,
                    )  # fmt: skip
                steady(runtime, engine)
                every, live = claim_ms(runtime, None), claim_ms(runtime, ["live"])
                print(f"{engine:<9} {waiting:>10,} {history:>10,}  "
                      f"{every[0]:>14.2f} / {every[1]:.2f} ms  {live[0]:>11.2f} / {live[1]:.2f} ms",
                      flush=True)  # fmt: skip
            finally:
                runtime.close()
                drop()


if __name__ == "__main__":
    main()
