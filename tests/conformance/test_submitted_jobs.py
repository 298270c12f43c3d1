"""A job is visible from the moment it is submitted, whichever store keeps its history.

With a shared SQLite store, enqueue writes only the queue table; reads must
still report the job PENDING or SCHEDULED, with its call, until it is claimed.
"""

from __future__ import annotations

from nuvom.job import Job, JobStatus


def test_a_submitted_job_reads_back_pending_with_its_call(backends):
    job = Job("visible.task", args=(1, "two"), kwargs={"three": 3}, max_retries=4)
    backends.queue.submit([job], backends.results)

    record = backends.results.get_full(job.id)

    assert record is not None
    assert record.status is JobStatus.PENDING
    assert record.func_name == "visible.task"
    assert record.args == [1, "two"]
    assert record.kwargs == {"three": 3}
    assert record.created_at == job.created_at
    assert record.max_retries == 4
    assert record.attempts == 0


def test_a_submitted_future_job_reads_back_scheduled_until_due(backends):
    clock = backends.clock
    job = Job("visible.later", due_at=clock.time() + 60)
    backends.queue.submit([job], backends.results)

    assert backends.results.get_full(job.id).status is JobStatus.SCHEDULED
    scheduled = backends.results.list_jobs(status=JobStatus.SCHEDULED)
    assert [r.id for r in scheduled] == [job.id]
    assert backends.results.list_jobs(status=JobStatus.PENDING) == []


def test_history_lists_submitted_claimed_and_finished_jobs_newest_first(backends):
    clock = backends.clock
    queue, results = backends.queue, backends.results
    first = Job("visible.first")
    queue.submit([first], results)
    clock.advance(1)
    second = Job("visible.second")
    queue.submit([second], results)
    clock.advance(1)

    assert [r.id for r in results.list_jobs()] == [second.id, first.id]
    assert [r.id for r in results.list_jobs(status=JobStatus.PENDING)] == [second.id, first.id]

    claimed = queue.claim(1, worker_id="w", lease_secs=30, results=results)
    assert [j.id for j in claimed] == [first.id]
    assert results.get_full(first.id).status is JobStatus.RUNNING
    assert [r.id for r in results.list_jobs(status=JobStatus.PENDING)] == [second.id]
    assert [r.id for r in results.list_jobs(status=JobStatus.RUNNING)] == [first.id]
    assert results.list_jobs(limit=1)[0].id == first.id  # claiming updated it last


def test_cancelling_a_submitted_job_keeps_its_call(backends):
    job = Job("visible.cancel", args=(7,))
    backends.queue.submit([job], backends.results)

    assert backends.queue.cancel_job(job.id, backends.results)

    record = backends.results.get_full(job.id)
    assert record.status is JobStatus.CANCELLED
    assert record.func_name == "visible.cancel"
    assert record.args == [7]
