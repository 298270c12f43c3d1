"""The async pool (one event loop, a concurrency limit) and what every pool shares.

Coroutines are cancelled for real at their timeout; sync tasks run beside them
on threads; the worker records itself in the backend while it runs.
"""

from __future__ import annotations

import asyncio
import threading

import pytest

from nuvom.errors import ConfigError
from nuvom.job import JobStatus
from nuvom.sdk import get_job
from nuvom.task import task
from nuvom.worker import Worker

EVENT_WAIT_SECS = 10.0  # upper bound for a step another thread or the loop must reach


def test_an_async_timeout_cancels_the_coroutine_and_its_finally_runs(runtime):
    cleaned_up = threading.Event()
    never = threading.Event()

    @task(timeout_secs=0.2)
    async def stuck() -> None:
        try:
            await asyncio.sleep(EVENT_WAIT_SECS * 10)
            never.set()
        finally:
            cleaned_up.set()

    job = stuck.delay()
    worker = Worker(workers=2, pool="async")
    worker.run(burst=True)

    assert cleaned_up.is_set()
    assert not never.is_set()
    record = get_job(job.id)
    assert record.status is JobStatus.FAILED
    assert record.error_type == "JobTimeout"
    assert worker.stats.failed == 1


def test_sync_and_async_tasks_mix_and_sync_ones_stay_off_the_loop(runtime):
    threads: dict[str, str] = {}

    @task
    async def double(x: int) -> int:
        threads["async"] = threading.current_thread().name
        await asyncio.sleep(0)
        return x * 2

    @task
    def square(x: int) -> int:
        threads["sync"] = threading.current_thread().name
        return x * x

    jobs = [double.delay(3), square.delay(4), double.delay(5), square.delay(6)]
    Worker(workers=2, pool="async").run(burst=True)

    assert [job.get(timeout=5) for job in jobs] == [6, 16, 10, 36]
    assert threads["async"] == "nuvom-async-loop"
    assert threads["sync"] != "nuvom-async-loop"


def test_the_async_pool_runs_at_most_its_concurrency_at_once(runtime):
    limit = 3
    running = 0
    peak = 0
    all_in = asyncio.Event()

    @task
    async def hold(n: int) -> int:
        nonlocal running, peak
        running += 1
        peak = max(peak, running)
        if running == limit:
            all_in.set()
        await asyncio.wait_for(all_in.wait(), EVENT_WAIT_SECS)
        running -= 1
        return n

    jobs = hold.map(range(10))
    Worker(workers=limit, pool="async").run(burst=True)

    assert [job.get(timeout=5) for job in jobs] == list(range(10))
    assert peak == limit


def test_async_tasks_run_in_the_thread_pool_too(runtime):
    @task
    async def hello(name: str) -> str:
        await asyncio.sleep(0)
        return f"hello {name}"

    job = hello.delay("pool")
    Worker(workers=1, pool="thread").run(burst=True)
    assert job.get(timeout=5) == "hello pool"


def test_a_sync_job_past_its_timeout_in_the_async_pool_frees_its_slot(runtime):
    release = threading.Event()

    @task(timeout_secs=0.2)
    def stuck() -> str:
        release.wait(EVENT_WAIT_SECS)
        return "late"

    @task
    async def after() -> str:
        return "ran"

    stuck_job = stuck.delay()
    after_job = after.delay()
    try:
        Worker(workers=1, pool="async").run(burst=True)
    finally:
        release.set()

    assert get_job(stuck_job.id).error_type == "JobTimeout"
    assert after_job.get(timeout=5) == "ran"


def test_unknown_pools_and_child_limits_outside_the_process_pool_are_refused(runtime):
    with pytest.raises(ConfigError, match="unknown worker pool 'fork'"):
        Worker(pool="fork")
    with pytest.raises(ConfigError, match="process pool only"):
        Worker(pool="async", max_tasks_per_child=10)


def test_the_pool_comes_from_settings_by_default(monkeypatch):
    import nuvom
    from nuvom.registry import TaskRegistry

    monkeypatch.setenv("NUVOM_WORKER_POOL", "ASYNC")
    nuvom.configure(queue_backend="memory", result_backend="memory", registry=TaskRegistry())
    assert Worker().pool == "async"


def test_a_running_worker_is_listed_and_forgotten_when_it_stops(runtime):
    seen: list[list[str]] = []

    @task
    def look() -> None:
        seen.append([w.id for w in runtime.queue.list_workers()])

    look.delay()
    worker = Worker(workers=1, pool="async")
    worker.run(burst=True)

    assert seen == [[worker.worker_id]]
    assert runtime.queue.list_workers() == []
