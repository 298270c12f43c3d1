"""Read outcomes from the configured result backend, from any process."""

from __future__ import annotations

import time
from typing import Any

from nuvom.backends.contract import BaseResultBackend
from nuvom.errors import JobCancelled, JobFailed, ResultTimeout
from nuvom.job import JobStatus
from nuvom.records import JobRecord

MAX_POLL_SECS = 0.5  # longest pause between two looks while waiting for a result


def get_result_backend() -> BaseResultBackend:
    from nuvom.runtime import current

    return current().results


def get_result(job_id: str) -> Any:
    """The stored return value of a job, or ``None``."""
    return get_result_backend().get_result(job_id)


def get_error(job_id: str) -> str | None:
    """``"Type: message"`` of a failed job, or ``None``."""
    return get_result_backend().get_error(job_id)


def get_record(job_id: str, backend: BaseResultBackend | None = None) -> JobRecord | None:
    return (backend or get_result_backend()).get_full(job_id)


def wait_for_result(
    job_id: str,
    *,
    timeout: float | None = None,
    poll_secs: float = 0.05,
    backend: BaseResultBackend | None = None,
) -> Any:
    """Block until the job ends; return its result or raise ``JobFailed``/``JobCancelled``.

    A job waiting for a retry is not finished. Raises ``ResultTimeout`` after
    ``timeout`` seconds (None waits for ever).
    """
    results = backend or get_result_backend()
    deadline = None if timeout is None else time.monotonic() + timeout
    pause = min(poll_secs, 0.005)
    while True:
        record = results.get_full(job_id)
        status = record.status if record else None
        if record is not None and status is not None and status.is_final:
            if status is JobStatus.SUCCESS:
                return record.result
            if status is JobStatus.CANCELLED:
                raise JobCancelled(job_id)
            raise JobFailed(
                job_id,
                error_type=record.error_type,
                error_message=record.error_message,
                traceback=record.traceback,
            )
        if deadline is not None and time.monotonic() >= deadline:
            raise ResultTimeout(job_id, timeout or 0.0, status.value if status else None)
        wait = pause if deadline is None else min(pause, max(0.0, deadline - time.monotonic()))
        time.sleep(wait)
        pause = min(pause * 2, max(poll_secs, MAX_POLL_SECS))
