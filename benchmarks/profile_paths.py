"""Where the time of nuvom's hot paths goes, by pyinstrument: a ``.delay()`` loop, a ``.map()``
of batches, and an in-process drain (claim, run, settle), on one engine.

    python benchmarks/profile_paths.py --engine postgres            # all three paths
    python benchmarks/profile_paths.py --engine redis --path delay --jobs 5000

PostgreSQL reads NUVOM_POSTGRES_DSN (default postgresql://postgres@127.0.0.1:5432/test) and
uses a schema of its own, dropped at the end; Redis uses 127.0.0.1:6379 under a prefix of its
own. The top of each profile (frames over 2% of the time) is printed; numbers are wall time
in one process, for finding the cost, not for comparing with peers (throughput.py does that).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import bench_tasks

import nuvom
from nuvom.worker import Worker

DSN = os.environ.get("NUVOM_POSTGRES_DSN", "postgresql://postgres@127.0.0.1:5432/test")


def configure(engine: str, folder: Path) -> tuple[Any, Callable[[], None]]:
    """A runtime on ``engine`` with a store of its own, and what drops it afterwards."""
    if engine == "postgres":
        schema = f"nuvom_prof_{uuid.uuid4().hex[:8]}"
        runtime = nuvom.configure(queue_backend="postgres", result_backend="postgres",
                                  postgres_dsn=DSN, postgres_schema=schema)  # fmt: skip

        def drop() -> None:
            import psycopg

            with psycopg.connect(DSN, autocommit=True) as conn:
                conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')

        return runtime, drop
    if engine == "redis":
        prefix = f"nuvom-prof-{uuid.uuid4().hex[:8]}"
        runtime = nuvom.configure(queue_backend="redis", result_backend="redis",
                                  redis_url="redis://127.0.0.1:6379/0",
                                  redis_prefix=prefix)  # fmt: skip

        def drop_keys() -> None:
            client = runtime.queue.client
            for key in client.scan_iter(f"{prefix}*", count=1000):
                client.delete(key)

        return runtime, drop_keys
    runtime = nuvom.configure(queue_backend=engine, result_backend=engine,
                              sqlite_db_path=str(folder / "nuvom.db"))  # fmt: skip
    return runtime, lambda: None


def profiled(label: str, run: Callable[[], None], jobs: int) -> None:
    from pyinstrument import Profiler

    profiler = Profiler(interval=0.0005)
    profiler.start()
    run()
    session = profiler.stop()
    secs = session.duration
    print(f"\n=== {label}: {jobs:,} jobs in {secs:.2f} s = {jobs / secs:,.0f}/s "
          f"({secs / jobs * 1e6:.0f} µs a job)")  # fmt: skip
    print(profiler.output_text(unicode=True, color=False, show_all=False, time="percent_of_total",
                               flat=True, flat_time="self")[:3000])  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--engine", default="postgres")
    parser.add_argument("--path", choices=["delay", "map", "drain", "all"], default="all")
    parser.add_argument("--jobs", type=int, default=5_000)
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="nuvom-prof-"))
    runtime, drop = configure(args.engine, folder)
    add, n = bench_tasks.bench_add, args.jobs
    try:
        add.map([(0, 0)] * 20)  # warm: imports, the pool, the schema, out of the profiles
        add.delay(0, 0)
        if args.path in ("delay", "all"):
            profiled(f"{args.engine} .delay()", lambda: [add.delay(i, i) for i in range(n)], n)
        if args.path in ("map", "all"):

            def map_all() -> None:
                for start in range(0, n * 4, 1_000):
                    add.map([(i, i) for i in range(start, start + 1_000)])

            profiled(f"{args.engine} .map() of 1,000", map_all, n * 4)
        if args.path in ("drain", "all"):
            for start in range(0, n, 1_000):
                add.map([(i, i) for i in range(start, min(n, start + 1_000))])
            waiting = runtime.queue.qsize()
            worker = Worker(workers=4)
            profiled(f"{args.engine} drain, 4 threads", lambda: worker.run(burst=True), waiting)
    finally:
        runtime.close()
        drop()


if __name__ == "__main__":
    main()
