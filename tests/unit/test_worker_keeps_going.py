"""One bad job never stops a worker: whatever goes wrong with one job (or one claim) is
that job's failure, recorded, and the worker runs the jobs behind it."""

from __future__ import annotations

from typing import Any

import pytest

import nuvom
from nuvom import worker as worker_module
from nuvom.execution import policies
from nuvom.job import JobStatus
from nuvom.queue_backends.memory_queue import MemoryJobQueue
from nuvom.registry import TaskRegistry
from nuvom.result_backends.memory_backend import MemoryResultBackend
from nuvom.task import task
from nuvom.worker import Worker


@pytest.fixture
def backends(monkeypatch: pytest.MonkeyPatch) -> tuple[MemoryJobQueue, MemoryResultBackend]:
    monkeypatch.setattr(worker_module, "BACKEND_RETRY_SECS", 0.01)
    queue, results = MemoryJobQueue(), MemoryResultBackend()
    nuvom.configure(queue_backend=queue, result_backend=results, registry=TaskRegistry())
    return queue, results


def _add() -> Any:
    @task
    def add(x: int, y: int) -> int:
        return x + y

    return add


def test_a_claim_that_raises_a_bug_is_retried_and_the_jobs_still_run(backends, monkeypatch):
    queue, _ = backends
    add = _add()
    handles = add.map([(n, n) for n in range(5)])
    real_claim, calls = queue.claim, []

    def claim(*args: Any, **kwargs: Any) -> Any:
        calls.append(1)
        if len(calls) == 1:
            raise RuntimeError("a backend bug")
        return real_claim(*args, **kwargs)

    monkeypatch.setattr(queue, "claim", claim)

    Worker(workers=1).run(burst=True)

    assert [h.get(timeout=5) for h in handles] == [0, 2, 4, 6, 8]
    assert len(calls) >= 2


def test_an_error_preparing_one_job_fails_that_job_alone(backends, monkeypatch):
    _, results = backends
    add = _add()
    poison = add.delay(0, 0)
    good = add.map([(n, 1) for n in range(10)])
    real = policies.too_many_lost_attempts

    def lost(job: Any, opts: Any) -> Any:
        if job.id == poison.id:
            raise ValueError("options went bad")
        return real(job, opts)

    monkeypatch.setattr(policies, "too_many_lost_attempts", lost)

    Worker(workers=1).run(burst=True)

    assert [h.get(timeout=5) for h in good] == [n + 1 for n in range(10)]
    record = results.get_full(poison.id)
    assert record is not None
    assert (record.status, record.error_type) == (JobStatus.FAILED, "JobNotRunnable")
    assert "options went bad" in (record.error_message or "")


def test_an_outcome_the_backend_refuses_is_stored_as_that_jobs_failure(backends, monkeypatch):
    queue, results = backends
    add = _add()
    poison = add.delay(0, 0)
    good = add.map([(n, 1) for n in range(10)])
    real_settle = queue.settle

    def settle(outcomes: Any, res: Any) -> Any:
        if any(o.job.id == poison.id and o.status is JobStatus.SUCCESS for o in outcomes):
            raise TypeError("cannot store this result")
        return real_settle(outcomes, res)

    monkeypatch.setattr(queue, "settle", settle)

    Worker(workers=1).run(burst=True)

    assert [h.get(timeout=5) for h in good] == [n + 1 for n in range(10)]
    record = results.get_full(poison.id)
    assert record is not None
    assert (record.status, record.error_type) == (JobStatus.FAILED, "OutcomeNotStored")
    assert queue.qsize() == 0
