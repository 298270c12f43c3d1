"""At-least-once delivery across real worker processes sharing one SQLite file.

A killed worker's job is claimed again once its lease runs out; a running job
keeps its lease by heartbeat; a job that ended FAILED is never delivered again.
"""

from __future__ import annotations

import time

import pytest

from nuvom.errors import JobFailed
from nuvom.job import Job, JobStatus
from nuvom.queue import enqueue, enqueue_many
from nuvom.sdk import get_job

from .helpers import TASKS, Project, runs, wait_for

LEASE_SECS = 1.0  # short leases keep crash recovery quick


@pytest.mark.slow
@pytest.mark.timeout(60)
def test_a_killed_workers_job_is_claimed_again_after_its_lease(project: Project) -> None:
    project.write("tasks.py", TASKS)
    runtime = project.configure()
    # hold keeps the default retries=0: a delivery lost with its worker is not a failure.
    job = enqueue(Job("hold", args=[str(project.root)]))
    first = project.start_worker(NUVOM_LEASE_SECS=str(LEASE_SECS))
    wait_for(lambda: runs(project.root, "hold") == 1, what="the first worker to start the job")

    first.popen.kill()  # SIGKILL: no handler runs, nothing is released
    first.wait()
    assert runtime.results.get_status(job.id) is JobStatus.RUNNING
    (project.root / "go").touch()  # the next attempt finishes at once
    project.start_worker(NUVOM_LEASE_SECS=str(LEASE_SECS))

    assert job.get(timeout=30) == "done"
    record = get_job(job.id)
    assert record.status is JobStatus.SUCCESS
    assert record.attempts == 2
    assert [attempt.status for attempt in record.history] == ["LOST", "SUCCESS"]
    assert record.history[0].worker_id != record.history[1].worker_id
    assert runs(project.root, "hold") == 2


@pytest.mark.slow
@pytest.mark.timeout(60)
def test_a_job_longer_than_its_lease_keeps_it_by_heartbeat(project: Project) -> None:
    project.write("tasks.py", TASKS)
    project.configure()
    workers = [project.start_worker(NUVOM_LEASE_SECS=str(LEASE_SECS)) for _ in range(2)]
    job = enqueue(Job("hold", args=[str(project.root)]))
    wait_for(lambda: runs(project.root, "hold") == 1, what="a worker to start the job")

    # Hold the job for three lease periods while the other worker keeps polling;
    # a second execution at any point ends the wait early and fails below.
    held_since = time.monotonic()
    wait_for(
        lambda: runs(project.root, "hold") > 1 or time.monotonic() - held_since >= 3 * LEASE_SECS,
        what="three lease periods to pass",
    )
    assert runs(project.root, "hold") == 1
    assert get_job(job.id).status is JobStatus.RUNNING
    (project.root / "go").touch()

    assert job.get(timeout=30) == "done"
    assert runs(project.root, "hold") == 1
    record = get_job(job.id)
    assert record.attempts == 1
    assert [attempt.status for attempt in record.history] == ["SUCCESS"]
    for worker in workers:
        assert worker.popen.poll() is None, worker.describe()
        assert "lost the lease" not in worker.stderr


@pytest.mark.slow
@pytest.mark.timeout(60)
def test_a_failed_job_is_never_delivered_again(project: Project) -> None:
    project.write("tasks.py", TASKS)
    runtime = project.configure()
    job = enqueue(Job("always_fails", args=[str(project.root)]))  # retries=2, no delay
    allowed_runs = 3

    assert project.start_worker("--burst").wait() == 0
    assert runs(project.root, "always_fails") == allowed_runs
    record = get_job(job.id)
    assert record.status is JobStatus.FAILED
    assert record.attempts == allowed_runs
    assert [a.status for a in record.history] == ["RETRYING", "RETRYING", "FAILED"]
    assert record.error_type == "RuntimeError"

    second = project.start_worker("--burst")
    assert second.wait() == 0
    assert "processed 0" in second.stderr
    assert runs(project.root, "always_fails") == allowed_runs
    assert get_job(job.id).attempts == allowed_runs
    assert runtime.queue.qsize() == 0
    with pytest.raises(JobFailed) as failure:
        job.get(timeout=5)
    assert failure.value.error_type == "RuntimeError"


@pytest.mark.slow
@pytest.mark.timeout(60)
def test_a_worker_claims_only_from_its_queues(project: Project) -> None:
    project.write("tasks.py", TASKS)
    runtime = project.configure()
    wanted = enqueue_many([Job("add", args=[n, n], queue="a" if n % 2 else "b") for n in range(6)])
    other = enqueue(Job("add", args=[1, 1], queue="c"))

    worker = project.start_worker(
        "--burst", "--queues", "a,b", "--workers", "2", "--batch-size", "1"
    )
    assert worker.wait() == 0, worker.describe()

    assert [job.get(timeout=5) for job in wanted] == [2 * n for n in range(6)]
    assert get_job(other.id).status is JobStatus.PENDING
    assert runtime.queue.qsize("c") == 1


@pytest.mark.slow
@pytest.mark.timeout(60)
def test_a_scheduled_job_waits_for_its_time(project: Project) -> None:
    project.write("tasks.py", TASKS)
    project.configure()
    project.start_worker()
    due_at = time.time() + 1.0
    job = enqueue(Job("add", args=[2, 2], due_at=due_at))
    assert get_job(job.id).status is JobStatus.SCHEDULED

    assert job.get(timeout=10) == 4
    started_at = get_job(job.id).started_at
    assert started_at is not None
    assert started_at >= due_at
