"""The queue facade: enqueue jobs on the configured backend.

``enqueue(Job("name"))`` works for hand-built jobs; ``@task``'s ``.delay`` and
``.map`` come through ``submit``.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence

from nuvom.backends.contract import BaseJobQueue
from nuvom.errors import TaskDefinitionError
from nuvom.handle import JobHandle
from nuvom.job import Job, JobStatus


def get_queue_backend() -> BaseJobQueue:
    """The process-wide queue backend, built from settings on first use."""
    from nuvom.runtime import current

    return current().queue


def due_time(
    *, at: dt.datetime | float | None = None, in_: dt.timedelta | float | None = None
) -> float | None:
    """An epoch time from ``at`` (datetime or epoch seconds) or ``in_`` (seconds from now)."""
    from nuvom.runtime import current

    if at is not None and in_ is not None:
        raise TaskDefinitionError("give at= or in_=, not both")
    if at is not None:
        if isinstance(at, dt.datetime):
            return (at if at.tzinfo else at.astimezone()).timestamp()
        return float(at)
    if in_ is not None:
        seconds = in_.total_seconds() if isinstance(in_, dt.timedelta) else float(in_)
        return current().clock.time() + seconds
    return None


def submit(jobs: Sequence[Job], *, task_retries: int | None = None) -> list[JobHandle]:
    """Enqueue ``jobs`` in one transaction and record them; a handle for each, in order."""
    from nuvom.runtime import current

    runtime = current()
    now = runtime.clock.time()
    for job in jobs:
        job.status = JobStatus.SCHEDULED if (job.due_at or 0) > now else JobStatus.PENDING
    runtime.queue.submit(jobs, runtime.results)
    if runtime.events.active:
        from nuvom.events import JobEvent

        for job in jobs:
            runtime.events.emit(JobEvent("enqueued", job, now))
    return [JobHandle(job, runtime.results, task_retries=task_retries) for job in jobs]


def enqueue(job: Job) -> JobHandle:
    """Enqueue one hand-built job. Raises ``SerializationError`` naming a bad argument."""
    return submit([job])[0]


def enqueue_many(jobs: Sequence[Job]) -> list[JobHandle]:
    """Enqueue many hand-built jobs in one transaction."""
    return submit(jobs)
