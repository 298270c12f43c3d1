"""Small policy units the runner calls in order: options, retries, timeouts.

Each owns its options; none is woven into the worker loop.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from nuvom.errors import JobTimeout
from nuvom.job import Job, JobStatus
from nuvom.records import ErrorInfo, Outcome

if TYPE_CHECKING:
    from nuvom.config import Settings
    from nuvom.task import Task

MAX_BACKOFF_SECS = 3600.0  # exponential retry back-off never waits longer than an hour
LOST_ATTEMPT_ALLOWANCE = 2  # deliveries lost with their worker a job may absorb beyond its retries


@dataclass(frozen=True, slots=True)
class RunOptions:
    """The options one attempt runs with: the job's overrides, else the task's, else settings."""

    retries: int
    retry_delay_secs: float
    retry_backoff: bool
    timeout_secs: float
    timeout_policy: str
    store_result: bool

    @classmethod
    def resolve(cls, job: Job, task: Task[Any, Any] | None, settings: Settings) -> RunOptions:
        def pick(job_value: Any, task_value: Any, default: Any) -> Any:
            if job_value is not None:
                return job_value
            return task_value if task_value is not None else default

        return cls(
            retries=pick(job.max_retries, task.retries if task else None, 0),
            retry_delay_secs=pick(
                job.retry_delay_secs,
                task.retry_delay_secs if task else None,
                settings.retry_delay_secs,
            ),
            retry_backoff=bool(task.retry_backoff) if task else False,
            timeout_secs=pick(
                job.timeout_secs, task.timeout_secs if task else None, settings.job_timeout_secs
            ),
            timeout_policy=pick(
                job.timeout_policy, task.timeout_policy if task else None, settings.timeout_policy
            ),
            store_result=pick(job.store_result, task.store_result if task else None, True),
        )

    def retries_left(self, attempts: int) -> int:
        """Retries remaining once attempt number ``attempts`` has failed."""
        return max(0, self.retries - max(0, attempts - 1))

    def delay_before(self, attempt: int) -> float:
        """Seconds to wait before attempt ``attempt + 1``; with back-off, doubled and jittered."""
        if not self.retry_backoff:
            return self.retry_delay_secs
        base = min(MAX_BACKOFF_SECS, self.retry_delay_secs * 2.0 ** max(0, attempt - 1))
        return base * random.uniform(0.5, 1.0)


def failed(
    job: Job, error: ErrorInfo, *, started: float | None, now: float, worker_id: str
) -> Outcome:
    return Outcome(
        job, JobStatus.FAILED, error=error, started_at=started, finished_at=now, worker_id=worker_id
    )


def retry_or_fail(
    job: Job,
    opts: RunOptions,
    error: ErrorInfo,
    *,
    started: float | None,
    now: float,
    worker_id: str,
) -> Outcome:
    """RETRYING at now + delay while retries remain, else FAILED."""
    if opts.retries_left(job.attempts) > 0:
        return Outcome(
            job,
            JobStatus.RETRYING,
            error=error,
            started_at=started,
            finished_at=now,
            worker_id=worker_id,
            retry_at=now + opts.delay_before(job.attempts),
        )
    return failed(job, error, started=started, now=now, worker_id=worker_id)


def timed_out(
    job: Job, opts: RunOptions, *, started: float | None, now: float, worker_id: str
) -> Outcome:
    """The outcome of an attempt that passed its timeout, by ``timeout_policy``."""
    error = ErrorInfo.from_exception(JobTimeout(job.id, opts.timeout_secs))
    if opts.timeout_policy == "retry":
        return retry_or_fail(job, opts, error, started=started, now=now, worker_id=worker_id)
    return failed(job, error, started=started, now=now, worker_id=worker_id)


def too_many_lost_attempts(job: Job, opts: RunOptions) -> ErrorInfo | None:
    """A job whose earlier attempts died with their worker (poison) stops being redelivered.

    Lost deliveries use up retries like failures do, and on top of those a job
    may lose ``LOST_ATTEMPT_ALLOWANCE`` deliveries: a worker killed in a deploy
    does not fail a ``retries=0`` job, while one that kills every worker stops.
    """
    allowed = opts.retries + 1 + LOST_ATTEMPT_ALLOWANCE
    if job.attempts <= allowed:
        return None
    return ErrorInfo(
        "LostAttempts",
        f"attempt {job.attempts} of a job allowed {allowed}: earlier attempts never reported "
        "back (their worker died or lost its lease)",
    )
