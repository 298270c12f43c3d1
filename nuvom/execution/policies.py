"""Small policy units the runner calls in order: options, retries, timeouts.

Each owns its options; none is woven into the worker loop.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from nuvom.errors import JobTimeout
from nuvom.job import Job, JobStatus
from nuvom.options import RUN_OPTIONS
from nuvom.options import retries_left as _retries_left
from nuvom.records import ErrorInfo, Outcome

if TYPE_CHECKING:
    from nuvom.task import Task

log = logging.getLogger("nuvom.worker")

MAX_BACKOFF_SECS = 3600.0  # exponential retry back-off never waits longer than an hour
LOST_ATTEMPT_ALLOWANCE = 2  # deliveries lost with their worker a job may absorb beyond its retries


@dataclass(frozen=True, slots=True)
class RunOptions:
    """The options one attempt runs with (``nuvom.options.RUN_OPTIONS``, resolved)."""

    retries: int
    retry_delay_secs: float
    retry_backoff: bool
    timeout_secs: float
    timeout_policy: str
    store_result: bool

    @classmethod
    def resolve(
        cls, job: Job, task: Task[Any, Any] | None, defaults: Mapping[str, Any]
    ) -> RunOptions:
        """The job's override, else the task's value, else ``defaults`` (from the settings:
        ``nuvom.options.run_defaults``), else the option's own default."""
        values = {}
        for option in RUN_OPTIONS:
            value = getattr(job, option.job_field) if option.job_field else None
            if value is None and task is not None:
                value = getattr(task, option.name)
            if value is None:
                value = defaults.get(option.name, option.default)
            values[option.name] = value
        return cls(**values)

    def retries_left(self, attempts: int) -> int:
        """Retries remaining once attempt number ``attempts`` has failed."""
        return _retries_left(self.retries, attempts)

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


def log_outcome(outcome: Outcome) -> None:
    """Say how a stored attempt ended: a failed one is a WARNING (whether it will be retried,
    and when), with its traceback at DEBUG; a success is a DEBUG line."""
    job, error = outcome.job, outcome.error
    if outcome.status is JobStatus.SUCCESS or error is None:
        log.debug("job %s %s: %s", job.id, job.func_name, outcome.status.value)
        return
    if outcome.status is JobStatus.RETRYING and outcome.retry_at is not None:
        delay = max(0.0, outcome.retry_at - (outcome.finished_at or outcome.retry_at))
        then = f"retrying in {round(delay, 2):g} s"
    else:
        then = "failed for good"
    log.warning(
        "task %s, job %s, attempt %d: %s: %s; %s",
        job.func_name, job.id, job.attempts, error.type, error.message, then,
    )  # fmt: skip
    if error.traceback:
        log.debug("traceback of job %s, attempt %d:\n%s", job.id, job.attempts, error.traceback.rstrip())  # fmt: skip
