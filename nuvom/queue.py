"""The queue facade: enqueue jobs on the configured backend.

``enqueue(Job("name"))`` works for hand-built jobs; ``@task``'s ``.delay`` and
``.map`` come through ``submit``.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from nuvom.backends.contract import BaseJobQueue
from nuvom.calls import Known, prepare
from nuvom.errors import DuplicateJob, TaskDefinitionError
from nuvom.handle import JobHandle
from nuvom.job import Job, JobStatus
from nuvom.limits import ON_CONFLICT

if TYPE_CHECKING:
    from nuvom.task import Task


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


def submit(
    jobs: Sequence[Job],
    *,
    task_retries: int | None = None,
    task: Task[Any, Any] | None = None,
    on_conflict: str = "return",
) -> list[JobHandle]:
    """Enqueue ``jobs`` in one transaction and record them; a handle for each, in order.

    Each call is checked against its task (``task``, else the registered or declared
    task of its name: ``SignatureMismatch`` before anything is stored) and given its limits
    and version (``nuvom.calls``). A unique job whose key is held is not stored: its
    handle is the holder's (``on_conflict="return"``) or ``DuplicateJob`` is raised
    (``"raise"``) once the others are stored.
    """
    from nuvom.runtime import current

    if on_conflict not in ON_CONFLICT:
        raise TaskDefinitionError(f"on_conflict must be 'return' or 'raise', not {on_conflict!r}")
    runtime = current()
    now = runtime.clock.time()
    known, dumps = Known(runtime, task), runtime.codec.dumps
    for job in jobs:
        job.status = JobStatus.SCHEDULED if (job.due_at or 0) > now else JobStatus.PENDING
        prepare(job, known.of(job.func_name), dumps)
    duplicates = runtime.queue.submit(jobs, runtime.results) or {}  # a plugin's writer: None
    if runtime.events.active:
        from nuvom.events import JobEvent

        for job in jobs:
            if job.id not in duplicates:
                runtime.events.emit(JobEvent("enqueued", job, now))
    handles = []
    for job in jobs:
        holder = duplicates.get(job.id)
        if holder is None:
            handles.append(JobHandle(job, runtime.results, task_retries=task_retries))
            continue
        key = job.unique.key if job.unique is not None else "?"
        if on_conflict == "raise":
            raise DuplicateJob(key, holder)
        handle = JobHandle(replace(job, id=holder), runtime.results, task_retries=task_retries)
        handle.deduplicated = True
        handles.append(handle)
    return handles


def enqueue(job: Job) -> JobHandle:
    """Enqueue one hand-built job. Raises ``SerializationError`` naming a bad argument."""
    return submit([job])[0]


def enqueue_many(jobs: Sequence[Job]) -> list[JobHandle]:
    """Enqueue many hand-built jobs in one transaction."""
    return submit(jobs)
