"""Tasks the throughput benchmark enqueues, importable by its worker subprocesses.

Imported as the top-level module ``bench_tasks`` (the benchmarks directory is
put on ``sys.path``/``PYTHONPATH``), so the parent and the worker processes
register the same task names. Huey's versions are built per database file by
``make_huey``, because a Huey task belongs to one Huey instance.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from nuvom.task import task


@task
def bench_noop() -> None:
    """Does nothing: measures the queue, not the work."""


@task
def bench_add(x: int, y: int) -> int:
    return x + y


@task(store_result=False)
def bench_add_nostore(x: int, y: int) -> int:
    """``bench_add`` keeping no result, beside peers that store none (bench_servers.py)."""
    return x + y


@task
def bench_sum(values: list[int]) -> int:
    """A chord's body (benchmarks/workflows.py): the sum of its members' results."""
    return sum(values)


@task(rate_limit="5/s")
def bench_limited(x: int) -> int:
    """A rate-limited task sitting among unlimited ones (benchmarks/limits.py)."""
    return x


SLEEP_SECS = 0.010  # the "10 ms of I/O" task of the pool benchmark (--pool)


@task
def bench_sleep() -> None:
    time.sleep(SLEEP_SECS)


@task
async def bench_async_noop() -> None:
    """The no-op for the async pool."""


@task
async def bench_async_sleep() -> None:
    await asyncio.sleep(SLEEP_SECS)


@task
def bench_now() -> float:
    """The wall-clock time the job started, for enqueue→start latency."""
    return time.time()


def make_huey(path: str) -> tuple[Any, dict[str, Any]]:
    """A Huey on ``path`` with default settings, and its benchmark tasks.

    A path ending in ``.db`` is a ``SqliteHuey`` file; any other is a ``FileHuey`` folder.
    """
    from huey import FileHuey, SqliteHuey

    if path.endswith(".db"):
        huey = SqliteHuey("nuvom-bench", filename=path)
    else:
        huey = FileHuey("nuvom-bench", path=path)

    @huey.task(name="bench_noop")
    def noop() -> None:
        return None

    @huey.task(name="bench_add")
    def add(x: int, y: int) -> int:
        return x + y

    @huey.task(name="bench_now")
    def now() -> float:
        return time.time()

    # The pool benchmark counts stored results to see a drain end (signals fire
    # in Huey's worker processes, out of sight), so these return 1, not None.
    @huey.task(name="pool_noop")
    def pool_noop() -> int:
        return 1

    @huey.task(name="pool_sleep")
    def pool_sleep() -> int:
        time.sleep(SLEEP_SECS)
        return 1

    return huey, {
        "noop": noop,
        "add": add,
        "now": now,
        "pool_noop": pool_noop,
        "pool_sleep": pool_sleep,
    }
