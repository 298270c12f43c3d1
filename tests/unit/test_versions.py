"""Task versions on the worker's side: a job of a version this worker's code does not run
is given back for a worker that does, with no attempt spent and the reason readable."""

from __future__ import annotations

import nuvom
from nuvom.job import Job, JobStatus
from nuvom.limits import version_tag
from nuvom.queue import enqueue
from nuvom.registry import TaskRegistry
from nuvom.task import task
from nuvom.worker import Worker


def _ran(runtime, job_id: str) -> JobStatus | None:
    return runtime.results.get_status(job_id)


def test_a_job_of_another_version_is_given_back_unspent(runtime):
    @task(version=1)
    def charge(order_id): ...

    newer = enqueue(Job("charge", args=(1,), origin={"version": 2}))
    mine = charge.delay(2)
    Worker(workers=1).run(burst=True)

    assert _ran(runtime, mine.id) is JobStatus.SUCCESS
    assert _ran(runtime, newer.id) is JobStatus.PENDING, "left waiting for a v2 worker"
    assert runtime.queue.hold_of(newer.id) == version_tag("charge", 2)
    [waiting] = runtime.queue.waiting_jobs()
    assert waiting.attempts == 0, "being given back used no attempt"


def test_a_job_given_back_is_refused_by_its_worker_and_due_at_once_for_others(runtime):
    """The rolling-deploy starvation: an old worker gave a new job back due 2 s later and
    was the first to claim it again, each time, so the new worker never got it."""

    @task(version=1)
    def charge(order_id): ...

    newer = enqueue(Job("charge", args=(1,), origin={"version": 2}))
    old = Worker(workers=1)
    old.run(burst=True)
    assert runtime.queue.refused_by(old.worker_id) == {version_tag("charge", 2)}
    claim = dict(lease_secs=30.0, results=runtime.results)
    assert runtime.queue.claim(5, worker_id=old.worker_id, **claim) == [], "passed over"
    [taken] = runtime.queue.claim(5, worker_id="a-v2-worker", **claim)
    assert taken.id == newer.id, "due at once for a worker that has not refused it"
    assert taken.attempts == 1


def test_older_versions_a_task_still_runs_are_run(runtime):
    @task(version=2, runs_versions=[1, 2])
    def charge(order_id): ...

    older = enqueue(Job("charge", args=(1,)))  # version 1: no version in its origin
    assert (older.job.origin or {}).get("version") == 2, "a new job carries the current version"
    old_job = Job("charge", args=(1,), origin={"tag": "old"})
    runtime.queue.submit([old_job], runtime.results)  # as an old producer stored it
    Worker(workers=1).run(burst=True)
    assert _ran(runtime, old_job.id) is JobStatus.SUCCESS
    assert _ran(runtime, older.id) is JobStatus.SUCCESS


def test_the_any_policy_runs_whatever_comes():
    runtime = nuvom.configure(queue_backend="memory", result_backend="memory",
                              registry=TaskRegistry(), version_policy="any")  # fmt: skip

    @task
    def charge(order_id): ...

    job = Job("charge", args=(1,), origin={"version": 7})
    runtime.queue.submit([job], runtime.results)
    Worker(workers=1).run(burst=True)
    assert _ran(runtime, job.id) is JobStatus.SUCCESS


def test_upgrade_moves_waiting_jobs_that_still_fit_and_names_the_others(runtime):
    from nuvom.sdk import upgrade_jobs

    @task(version=2)
    def charge(order_id, amount_cents): ...

    fits = Job("charge", args=(1, 100), origin={"version": 1})
    stale = Job("charge", args=(1,), origin={"version": 1})
    runtime.queue.submit([fits, stale], runtime.results)  # as v1 producers stored them

    done = upgrade_jobs("charge", 1)
    assert done.moved == [fits.id]
    assert [job_id for job_id, _ in done.refused] == [stale.id]
    assert "missing a required argument: 'amount_cents'" in done.refused[0][1]
    versions = {j.id: (j.origin or {}).get("version") for j in runtime.queue.waiting_jobs()}
    assert versions == {fits.id: 2, stale.id: 1}
    Worker(workers=1).run(burst=True)
    assert _ran(runtime, fits.id) is JobStatus.SUCCESS
    assert _ran(runtime, stale.id) is JobStatus.PENDING, "left for a v1 worker"
