"""``Worker(...).run(burst=True)`` on the memory backends: outcomes, retries, hooks, timeouts.

Threads the tests block are released through ``threading.Event``; nothing sleeps
to wait for something to happen.
"""

from __future__ import annotations

import asyncio
import logging
import threading

import pytest

import nuvom
from nuvom.errors import JobFailed, ResultTimeout
from nuvom.job import Job, JobStatus
from nuvom.queue import enqueue
from nuvom.records import Outcome
from nuvom.registry import TaskRegistry
from nuvom.sdk import get_job
from nuvom.task import task
from nuvom.worker import Worker

EVENT_WAIT_SECS = 10.0  # upper bound for a released thread to reach its next step


def burst(workers: int = 2, **options: object) -> Worker:
    worker = Worker(workers=workers, **options)  # type: ignore[arg-type]
    worker.run(burst=True)
    return worker


def statuses(job_id: str) -> list[str]:
    return [attempt.status for attempt in get_job(job_id).history]


def test_success_stores_the_result(runtime):
    @task
    def add(x: int, y: int) -> int:
        return x + y

    jobs = add.map([(1, 2), (3, 4), (5, 6)])

    worker = burst()

    assert [job.get(timeout=5) for job in jobs] == [3, 7, 11]
    assert (worker.stats.processed, worker.stats.succeeded) == (3, 3)
    record = get_job(jobs[0].id)
    assert record.status is JobStatus.SUCCESS
    assert record.attempts == 1
    assert statuses(jobs[0].id) == ["SUCCESS"]
    assert runtime.queue.qsize() == 0


def test_retries_then_fails_keeping_each_attempt(runtime):
    calls: list[int] = []

    @task(retries=2, retry_delay_secs=0)
    def flaky() -> None:
        calls.append(1)
        raise ValueError(f"boom {len(calls)}")

    job = flaky.delay()

    worker = burst()

    assert len(calls) == 3
    record = get_job(job.id)
    assert record.status is JobStatus.FAILED
    assert record.error_type == "ValueError"
    assert record.error_message == "boom 3"
    assert [(a.status, a.error_message) for a in record.history] == [
        ("RETRYING", "boom 1"),
        ("RETRYING", "boom 2"),
        ("FAILED", "boom 3"),
    ]
    assert all("ValueError" in (a.traceback or "") for a in record.history)
    assert (worker.stats.retried, worker.stats.failed) == (2, 1)
    with pytest.raises(JobFailed) as caught:
        job.get(timeout=5)
    assert caught.value.error_type == "ValueError"
    assert "boom 3" in str(caught.value)


def test_a_retry_that_succeeds_ends_success(runtime):
    calls: list[int] = []

    @task(retries=3, retry_delay_secs=0)
    def second_time_lucky() -> str:
        calls.append(1)
        if len(calls) < 2:
            raise ConnectionError("flaky network")
        return "done"

    job = second_time_lucky.delay()

    burst()

    assert job.get(timeout=5) == "done"
    assert statuses(job.id) == ["RETRYING", "SUCCESS"]


def test_hooks_run_in_order(runtime):
    events: list[tuple[str, object]] = []

    @task(
        before_job=lambda job: events.append(("before_job", job.args[0])),
        after_job=lambda job, result: events.append(("after_job", result)),
        on_error=lambda job, exc: events.append(("on_error", type(exc).__name__)),
    )
    def maybe(value: int) -> int:
        events.append(("run", value))
        if value < 0:
            raise ArithmeticError("negative")
        return value * 10

    ok = maybe.delay(1)
    burst(workers=1)
    bad = maybe.delay(-1)
    burst(workers=1)

    assert events == [
        ("before_job", 1),
        ("run", 1),
        ("after_job", 10),
        ("before_job", -1),
        ("run", -1),
        ("on_error", "ArithmeticError"),
    ]
    assert ok.get(timeout=5) == 10
    assert get_job(bad.id).status is JobStatus.FAILED


def test_a_failing_hook_does_not_change_the_outcome(runtime, caplog):
    def explode(*_: object) -> None:
        raise RuntimeError("hook broke")

    @task(before_job=explode, after_job=explode)
    def fine() -> str:
        return "still fine"

    @task(on_error=explode)
    def broken() -> None:
        raise KeyError("the real error")

    ok, bad = fine.delay(), broken.delay()

    with caplog.at_level(logging.ERROR, logger="nuvom"):
        burst()

    assert ok.get(timeout=5) == "still fine"
    record = get_job(bad.id)
    assert record.status is JobStatus.FAILED
    assert record.error_type == "KeyError", "the hook's error does not replace the job's"
    assert "before_job hook" in caplog.text
    assert "after_job hook" in caplog.text
    assert "on_error hook" in caplog.text


def test_unknown_task_fails_and_the_worker_keeps_going(runtime):
    @task
    def known() -> str:
        return "ran"

    stray = enqueue(Job("nobody.declared.this"))
    good = known.delay()

    burst(workers=1)

    record = get_job(stray.id)
    assert record.status is JobStatus.FAILED
    assert record.error_type == "TaskNotFound"
    assert "nobody.declared.this" in (record.error_message or "")
    assert good.get(timeout=5) == "ran"


def test_an_unstorable_result_fails_without_retrying(runtime):
    calls: list[int] = []

    @task(retries=3, retry_delay_secs=0)
    def returns_a_lock() -> object:
        calls.append(1)
        return threading.Lock()

    job = returns_a_lock.delay()

    burst()

    record = get_job(job.id)
    assert record.status is JobStatus.FAILED
    assert record.error_type == "SerializationError"
    assert "returns_a_lock" in (record.error_message or "")
    assert len(calls) == 1
    assert statuses(job.id) == ["FAILED"]


def test_store_result_false_keeps_no_result(runtime):
    @task(store_result=False)
    def side_effect() -> object:
        return threading.Lock()  # never encoded, so never a problem

    job = side_effect.delay()

    burst()

    record = get_job(job.id)
    assert record.status is JobStatus.SUCCESS
    assert record.has_result is False
    assert job.get(timeout=5) is None


def test_a_task_returning_none_succeeds_with_none(runtime):
    @task
    def nothing() -> None:
        return None

    job = nothing.delay()

    burst()

    assert job.get(timeout=5) is None
    record = get_job(job.id)
    assert record.status is JobStatus.SUCCESS
    assert record.has_result is True


def test_async_task_runs(runtime):
    @task
    async def double(x: int) -> int:
        await asyncio.sleep(0)
        return x * 2

    job = double.delay(21)

    burst()

    assert job.get(timeout=5) == 42


def test_async_task_past_its_timeout_is_cancelled(runtime):
    cleaned_up = threading.Event()

    @task(timeout_secs=0.2)
    async def slow() -> None:
        try:
            await asyncio.sleep(5)
        finally:
            cleaned_up.set()

    job = slow.delay()

    burst(workers=1)

    record = get_job(job.id)
    assert record.status is JobStatus.FAILED
    assert record.error_type == "JobTimeout"
    assert cleaned_up.wait(EVENT_WAIT_SECS), "cancelling the coroutine ran its finally block"


def test_sync_timeout_is_reported_while_the_thread_still_runs(runtime):
    started, release, finished = threading.Event(), threading.Event(), threading.Event()

    @task(timeout_secs=0.2, timeout_policy="fail", retries=2)
    def stuck() -> str:
        started.set()
        release.wait(60)
        finished.set()
        return "too late"

    job = stuck.delay()
    try:
        burst(workers=1)

        assert started.is_set()
        assert not finished.is_set(), "the outcome was reported before the thread finished"
        record = get_job(job.id)
        assert record.status is JobStatus.FAILED
        assert record.error_type == "JobTimeout"
        assert statuses(job.id) == ["FAILED"], "policy fail: no retry despite retries=2"
    finally:
        release.set()
    assert finished.wait(EVENT_WAIT_SECS)
    assert get_job(job.id).status is JobStatus.FAILED, "the late result is dropped"


def test_sync_timeout_with_retry_policy_runs_the_next_attempt(runtime):
    release = threading.Event()
    calls: list[int] = []

    @task(timeout_secs=0.2, timeout_policy="retry", retries=1, retry_delay_secs=0)
    def first_attempt_hangs() -> str:
        calls.append(1)
        if len(calls) == 1:
            release.wait(60)
            return "first"
        return "second"

    job = first_attempt_hangs.delay()
    outcomes: list[Outcome] = []
    try:
        burst(workers=1, on_outcome=outcomes.append)
    finally:
        release.set()

    assert [o.status for o in outcomes] == [JobStatus.RETRYING, JobStatus.SUCCESS]
    assert job.get(timeout=5) == "second"
    record = get_job(job.id)
    assert [(a.status, a.error_type) for a in record.history] == [
        ("RETRYING", "JobTimeout"),
        ("SUCCESS", None),
    ]


def test_get_with_a_timeout_on_an_unfinished_job_raises_result_timeout(runtime):
    @task
    def never_run() -> None: ...

    job = never_run.delay()

    with pytest.raises(ResultTimeout) as caught:
        job.get(timeout=0.05)

    assert caught.value.job_id == job.id
    assert caught.value.status == "PENDING"


def test_poison_job_that_keeps_losing_its_lease_ends_failed(fake_runtime, fake_clock):
    calls: list[int] = []

    @task(retries=1)
    def poison() -> None:
        calls.append(1)

    job = poison.delay()
    queue, results = fake_runtime.queue, fake_runtime.results
    # retries=1 allows 2 attempts, plus 2 deliveries lost with their worker; a 5th is refused.
    for dead in ("dead-1", "dead-2", "dead-3", "dead-4"):  # each claims, then dies silently
        claimed = queue.claim(1, worker_id=dead, lease_secs=10, results=results)
        assert [j.id for j in claimed] == [job.id]
        fake_clock.advance(10)

    burst(workers=1, lease_secs=10)

    record = get_job(job.id)
    assert record.status is JobStatus.FAILED
    assert record.error_type == "LostAttempts"
    assert calls == [], "a poison job is not run again"
    assert statuses(job.id) == ["LOST", "LOST", "LOST", "LOST", "FAILED"]
    assert queue.qsize() == 0


def test_burst_on_the_default_sqlite_backends(isolated_nuvom):
    nuvom.configure(registry=TaskRegistry())

    @task(retries=1, retry_delay_secs=0)
    def shout(word: str) -> str:
        if word == "fail":
            raise ValueError(word)
        return word.upper()

    ok, bad = shout.delay("hi"), shout.delay("fail")

    burst()

    assert (isolated_nuvom / ".nuvom" / "nuvom.db").is_file()
    assert ok.get(timeout=5) == "HI"
    assert statuses(bad.id) == ["RETRYING", "FAILED"]
    with pytest.raises(JobFailed, match="ValueError"):
        bad.get(timeout=5)
