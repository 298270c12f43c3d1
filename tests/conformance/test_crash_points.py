"""Fault injection: a worker that dies at a chosen point loses no job, on every backend.

The worker's queue and result backend are wrapped so that, at the chosen
point, the "process" dies: an exception no handler catches, after which every
call it makes is ignored (a dead process releases nothing). A second worker
then runs the job to SUCCESS once the lease runs out, and the attempt count
shows the lost attempt. Time moves by ``FakeClock``.
"""

from __future__ import annotations

from typing import Any

import pytest

import nuvom
from nuvom.job import Job, JobStatus
from nuvom.registry import TaskRegistry
from nuvom.task import task
from nuvom.worker import Worker

LEASE_SECS = 10.0


class Crash(BaseException):
    """The simulated death of the worker process (no ``except Exception`` catches it)."""


class Dying:
    """A backend that dies at ``crash_on``: that call raises ``Crash``, later calls do nothing."""

    def __init__(self, real: Any, crash_on: str | None = None) -> None:
        self._real = real
        self._crash_on = crash_on
        self.dead = False
        self.partner: Dying | None = None  # the other backend of the same "process"

    def die(self) -> None:
        self.dead = True
        if self.partner is not None:
            self.partner.dead = True

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._real, name)
        if not callable(attr):
            return attr

        def call(*args: Any, **kwargs: Any) -> Any:
            if self.dead:
                return []  # a dead process's calls never reach the store
            if name == self._crash_on:
                if name == "claim":
                    attr(*args, **kwargs)  # the claim happened; the jobs never ran
                self.die()
                raise Crash(name)
            return attr(*args, **kwargs)

        return call


@pytest.mark.parametrize("crash_on", ["claim", "settle"], ids=["after-claim", "after-run"])
def test_a_worker_dying_at_a_fault_point_loses_nothing(backends, crash_on):
    nuvom.configure(
        queue_backend=backends.queue,
        result_backend=backends.results,
        registry=TaskRegistry(),
        clock=backends.clock,
    )
    runs: list[int] = []

    @task
    def work(x: int) -> int:
        runs.append(x)
        return x * 2

    job = work.delay(21)
    queue, results = Dying(backends.queue, crash_on), Dying(backends.results)
    queue.partner = results
    doomed = Worker(
        workers=1, queue=queue, results=results, lease_secs=LEASE_SECS, worker_id="doomed"
    )

    with pytest.raises(Crash):
        doomed.run(burst=True)

    assert runs == ([] if crash_on == "claim" else [21])
    record = backends.results.get_full(job.id)
    assert record is not None
    assert record.status is JobStatus.RUNNING, "nothing was stored or released by the dead worker"
    Worker(workers=1, lease_secs=LEASE_SECS, worker_id="early").run(burst=True)
    assert backends.results.get_full(job.id).status is JobStatus.RUNNING, "held until the lease"

    backends.clock.advance(LEASE_SECS)
    Worker(workers=1, lease_secs=LEASE_SECS, worker_id="survivor").run(burst=True)

    assert job.get(timeout=5) == 42
    record = backends.results.get_full(job.id)
    assert record.status is JobStatus.SUCCESS
    assert record.attempts == 2, "the lost attempt is counted"
    assert [a.status for a in record.history] == ["LOST", "SUCCESS"]
    assert [a.worker_id for a in record.history] == ["doomed", "survivor"]
    assert backends.queue.qsize() == 0


def test_a_job_lost_with_its_worker_is_not_a_failure_even_without_retries(backends):
    """Two lost deliveries are allowed beyond the task's retries (LOST_ATTEMPT_ALLOWANCE)."""
    nuvom.configure(
        queue_backend=backends.queue,
        result_backend=backends.results,
        registry=TaskRegistry(),
        clock=backends.clock,
    )

    @task(retries=0)
    def once() -> str:
        return "ok"

    job: Job = once.delay()
    for number in (1, 2):
        queue = Dying(backends.queue, "claim")
        queue.partner = results = Dying(backends.results)
        worker = Worker(workers=1, queue=queue, results=results, lease_secs=LEASE_SECS)
        with pytest.raises(Crash):
            worker.run(burst=True)
        backends.clock.advance(LEASE_SECS)
        assert backends.results.get_full(job.id).attempts == number

    Worker(workers=1, lease_secs=LEASE_SECS).run(burst=True)

    assert job.get(timeout=5) == "ok"
    assert backends.results.get_full(job.id).attempts == 3
