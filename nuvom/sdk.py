"""Operations on jobs by id: look one up, retry a failed one, cancel a waiting one; follow
a workflow by the id of its last job (``get_workflow``); and move a task's waiting jobs to
its current version (``upgrade_jobs``)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING

from nuvom.errors import JobNotFound, JobStateError
from nuvom.handle import JobHandle
from nuvom.job import Job, JobStatus
from nuvom.records import JobRecord

if TYPE_CHECKING:
    from nuvom.workflow import WorkflowHandle

_RETRYABLE = (JobStatus.FAILED, JobStatus.CANCELLED)


def get_job(job_id: str) -> JobRecord:
    """Everything the result backend knows about a job; raises ``JobNotFound``."""
    from nuvom.result_store import get_record

    record = get_record(job_id)
    if record is None:
        raise JobNotFound(job_id)
    return record


def retry_job(job_id: str) -> JobHandle:
    """Enqueue a FAILED (or CANCELLED) job again under the same id.

    Its attempt history is kept and it gets its full retries again. Raises
    ``JobNotFound``, or ``JobStateError`` when the job has not ended in failure.
    """
    from nuvom.queue import submit

    return submit([_again(get_job(job_id))])[0]


#: How many jobs ``retry_jobs`` submits in one step.
RETRY_BATCH = 1000


def retry_jobs(
    job_ids: Sequence[str], records: Mapping[str, JobRecord] | None = None
) -> tuple[list[str], dict[str, str]]:
    """``retry_job`` for many ids, submitted a thousand to a step: the ids re-enqueued, and
    for each one left alone the reason (unknown, not failed, no stored call). ``records``
    are ones just read (a bulk action's listing): they are not read again."""
    from nuvom.queue import submit
    from nuvom.result_store import get_record

    done: list[str] = []
    skipped: dict[str, str] = {}
    for start in range(0, len(job_ids), RETRY_BATCH):
        jobs: list[Job] = []
        for job_id in job_ids[start : start + RETRY_BATCH]:
            record = records.get(job_id) if records else None
            record = record if record is not None else get_record(job_id)
            try:
                if record is None:
                    raise JobNotFound(job_id)
                jobs.append(_again(record))
            except (JobNotFound, JobStateError) as exc:
                skipped[job_id] = str(exc)
        if jobs:
            submit(jobs)
            done += [job.id for job in jobs]
    return done, skipped


def _again(record: JobRecord) -> Job:
    """The job to enqueue to run ``record``'s call again: ``JobStateError`` when it has not
    ended in failure or stored no call."""
    job_id = record.id
    if record.status not in _RETRYABLE:
        raise JobStateError(
            f"job {job_id} is {record.status.value}; only FAILED or CANCELLED jobs can be retried",
            job_id=job_id,
            status=record.status.value,
        )
    if record.func_name is None:
        raise JobStateError(
            f"job {job_id} has no stored call to run again",
            job_id=job_id,
            status=record.status.value,
        )
    return Job(
        record.func_name,
        args=tuple(record.args),
        kwargs=record.kwargs,
        id=job_id,
        queue=record.queue or "default",
        priority=record.priority,
        created_at=record.created_at or 0.0,
        max_retries=record.max_retries,
    )


def cancel_job(job_id: str) -> JobRecord:
    """Cancel a job that is waiting (PENDING, SCHEDULED or RETRYING).

    A running job cannot be stopped from outside, and a finished one has
    nothing to cancel: both raise ``JobStateError``. Returns the updated record.
    """
    from nuvom.runtime import current

    runtime = current()
    if not runtime.queue.cancel_job(job_id, runtime.results):
        record = get_job(job_id)
        raise JobStateError(
            f"job {job_id} is {record.status.value}; only a waiting job can be cancelled",
            job_id=job_id,
            status=record.status.value,
        )
    return get_job(job_id)


def get_workflow(workflow_id: str) -> WorkflowHandle:
    """A workflow's handle from any process that reaches the store (``nuvom.workflow``)."""
    from nuvom.workflow import get_workflow as find

    return find(workflow_id)


@dataclass(slots=True)
class Upgraded:
    """What ``upgrade_jobs`` did: the jobs moved to the task's current version, and those it
    left as they were, each with why (their arguments no longer fit, or a worker took it)."""

    version: int
    moved: list[str] = field(default_factory=list)
    refused: list[tuple[str, str]] = field(default_factory=list)


def upgrade_jobs(func_name: str, from_version: int) -> Upgraded:
    """Move the waiting jobs of ``func_name`` v``from_version`` to the task's current version
    (the imported task's, else the manifest's), so today's workers run them.

    A job whose arguments no longer fit the current signature is refused by id and left
    where it is; so is one a worker claimed meanwhile. Each job keeps its id, queue,
    priority, due time and limits.
    """
    from nuvom.calls import Known, check_call
    from nuvom.errors import SignatureMismatch
    from nuvom.queue import submit
    from nuvom.runtime import current

    runtime = current()
    facts = Known(runtime).of(func_name)
    done = Upgraded(facts.version)
    if facts.version == from_version:
        return done
    for job in runtime.queue.waiting_jobs():
        if job.func_name != func_name or (job.origin or {}).get("version", 1) != from_version:
            continue
        try:
            check_call(func_name, facts, tuple(job.args), job.kwargs)
        except SignatureMismatch as exc:
            done.refused.append((job.id, str(exc)))
            continue
        if not runtime.queue.cancel(job.id):  # claimed since it was listed: a worker has it
            done.refused.append((job.id, "a worker claimed it meanwhile"))
            continue
        origin = {**(job.origin or {}), "version": facts.version}
        submit([replace(job, origin=origin, attempts=0, lease_owner=None, lease_until=None)])
        done.moved.append(job.id)
    return done
