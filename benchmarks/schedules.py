"""Schedules at scale: 1,000 schedules due in the same second, and an idle worker holding them.

    python benchmarks/schedules.py                 # SQLite, PostgreSQL and Redis
    python benchmarks/schedules.py --n 5000 --engines sqlite

For each engine: (1) 1,000 interval schedules all due at one tick; two schedulers race
through them (threads, each with its own queue object) and the time from the tick to the
last job enqueued is reported, with how many jobs there are (it must be exactly 1,000);
(2) a real ``nuvom runworker`` process with 1,000 schedules whose next tick is an hour
away: its CPU time over 10 s of idling, as a share of one core.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))

from bench_servers import POSTGRES_DSN, REDIS_URL, drop_namespace  # noqa: E402  # beside this file

IDLE_SECS = 10.0


def _queue(kind: str, where: str) -> Any:
    if kind == "sqlite":
        from nuvom.backends.sqlite.queue import SQLiteJobQueue

        return SQLiteJobQueue(Path(where) / "nuvom.db")
    if kind == "redis":
        from nuvom.backends.redis.queue import RedisJobQueue

        return RedisJobQueue(REDIS_URL, prefix=where)
    from nuvom.backends.postgres.queue import PostgresJobQueue

    return PostgresJobQueue(POSTGRES_DSN, schema=where)


def _env(kind: str, where: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("NUVOM_")}
    if kind == "sqlite":
        env["NUVOM_SQLITE_DB_PATH"] = str(Path(where) / "nuvom.db")
    elif kind == "redis":
        env.update(NUVOM_QUEUE_BACKEND="redis", NUVOM_RESULT_BACKEND="redis",
                   NUVOM_REDIS_URL=REDIS_URL, NUVOM_REDIS_PREFIX=where)  # fmt: skip
    else:
        env.update(NUVOM_QUEUE_BACKEND="postgres", NUVOM_RESULT_BACKEND="postgres",
                   NUVOM_POSTGRES_DSN=POSTGRES_DSN, NUVOM_POSTGRES_SCHEMA=where)  # fmt: skip
    return env


def fire_burst(kind: str, where: str, n: int) -> tuple[float, int]:
    from nuvom.clock import SystemClock
    from nuvom.result_backends.memory_backend import MemoryResultBackend
    from nuvom.scheduler import Scheduler, new_schedule

    clock = SystemClock()
    tick = float(int(time.time()) + 2)
    queues = [_queue(kind, where) for _ in range(2)]
    for i in range(n):
        schedule = new_schedule("bench_noop", args=[i], interval=3600.0, now=tick - 3600.0)
        queues[0].save_schedule(schedule)
    results = MemoryResultBackend()
    schedulers = [Scheduler(q, results, clock) for q in queues]
    time.sleep(max(0.0, tick - time.time()))  # the benchmark waits for the tick it set up
    done: list[float] = []

    def run(scheduler: Scheduler) -> None:
        while scheduler.run_once():
            pass
        done.append(time.time())

    threads = [threading.Thread(target=run, args=(s,)) for s in schedulers]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    jobs = queues[0].qsize()
    for queue in queues:
        queue.close()
    return max(done) - tick, jobs


def idle_cpu(kind: str, where: str, n: int) -> float:
    from nuvom.scheduler import new_schedule

    queue = _queue(kind, where)
    now = time.time()
    for i in range(n):
        queue.save_schedule(new_schedule("bench_noop", args=[i], interval=3600.0, now=now))
    queue.close()
    env = _env(kind, where)
    worker = subprocess.Popen([sys.executable, "-m", "nuvom", "runworker"], cwd=HERE, env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    try:
        time.sleep(3.0)  # start-up is not idling
        before = _cpu(worker.pid)
        time.sleep(IDLE_SECS)
        return (_cpu(worker.pid) - before) / IDLE_SECS
    finally:
        worker.terminate()
        worker.wait(30)


def _cpu(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=1000)
    parser.add_argument("--engines", default="sqlite,postgres,redis")
    options = parser.parse_args()
    print(f"{'engine':<10} {'schedules':>9} {'last job after tick':>20} {'jobs':>6} "
          f"{'idle worker CPU':>16}")  # fmt: skip
    for kind in options.engines.split(","):
        runs = []
        for _ in range(2):
            if kind == "sqlite":
                runs.append(tempfile.mkdtemp(prefix="nuvom-sched-"))
            else:
                runs.append(f"nuvom_bench_{uuid.uuid4().hex[:8]}")  # a schema or a key prefix
        try:
            took, jobs = fire_burst(kind, runs[0], options.n)
            share = idle_cpu(kind, runs[1], options.n)
        finally:
            if kind in ("postgres", "redis"):
                for namespace in runs:
                    drop_namespace(kind, namespace)
        print(f"{kind:<10} {options.n:>9} {took:>18.3f} s {jobs:>6} {share:>15.2%}")


if __name__ == "__main__":
    main()
