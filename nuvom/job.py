"""A job: one call of a task, as plain data that can be stored and sent anywhere.

Options left ``None`` on a job are taken from its registered task when it runs,
so hooks and policies work on every backend without being serialized. What
``.delay()`` returns is a ``nuvom.handle.JobHandle`` around the job.
"""

from __future__ import annotations

import operator
import os
import time
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

from nuvom.options import DEFAULT_QUEUE, JOB_OVERRIDES, check_job_overrides, retries_left

__all__ = ["DEFAULT_QUEUE", "FINAL_STATUSES", "Job", "JobStatus", "new_job_id"]


class JobStatus(str, Enum):
    PENDING = "PENDING"
    SCHEDULED = "SCHEDULED"
    RUNNING = "RUNNING"
    RETRYING = "RETRYING"
    SUCCESS = "SUCCESS"
    FAILED = "FAILED"
    CANCELLED = "CANCELLED"

    @property
    def is_final(self) -> bool:
        return self in FINAL_STATUSES

    def __str__(self) -> str:
        return self.value


FINAL_STATUSES = frozenset({JobStatus.SUCCESS, JobStatus.FAILED, JobStatus.CANCELLED})


def new_job_id() -> str:
    """32 hex digits: 48 bits of milliseconds, then 80 random bits (UUIDv7-like).

    Ids sort by creation time, which keeps index inserts at the end of the b-tree.
    """
    return f"{int(time.time() * 1000):012x}{os.urandom(10).hex()}"


# The per-job override fields read in one C call: every claim and enqueue reads them.
_override_values = operator.attrgetter(*JOB_OVERRIDES)
_NO_OVERRIDES = (None,) * len(JOB_OVERRIDES)


@dataclass(slots=True, eq=False)
class Job:
    """One call of a task. Build by hand as ``Job("name", args=[...])`` or via ``task.delay``."""

    func_name: str
    args: tuple[Any, ...] | list[Any] = ()
    kwargs: dict[str, Any] = field(default_factory=dict)
    id: str = field(default_factory=new_job_id)
    queue: str = DEFAULT_QUEUE
    priority: int = 0
    status: JobStatus = JobStatus.PENDING
    attempts: int = 0
    created_at: float = field(default_factory=time.time)
    due_at: float | None = None
    # Per-job overrides (``nuvom.options``); None means "the task's option, read when it runs".
    max_retries: int | None = None
    retry_delay_secs: float | None = None
    timeout_secs: float | None = None
    timeout_policy: str | None = None
    store_result: bool | None = None
    # Set while a worker holds the job; not part of what is enqueued.
    lease_owner: str | None = None
    lease_until: float | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.func_name, str) or not self.func_name:
            raise TypeError("Job needs a task name (func_name) as a non-empty string")
        if not isinstance(self.kwargs, dict):
            raise TypeError("Job kwargs must be a dict")
        if not isinstance(self.args, tuple | list):
            raise TypeError("Job args must be a list or tuple")
        if _override_values(self) != _NO_OVERRIDES:  # most jobs set none: nothing to check
            check_job_overrides(self.overrides())

    @property
    def retries_left(self) -> int | None:
        """Retries still allowed after the current attempt; None if only the task knows."""
        if self.max_retries is None:
            return None
        return retries_left(self.max_retries, self.attempts)

    def overrides(self) -> dict[str, Any]:
        """The per-job options that were set, by field name."""
        values = _override_values(self)
        if values == _NO_OVERRIDES:
            return {}
        return {
            name: value
            for name, value in zip(JOB_OVERRIDES, values, strict=True)
            if value is not None
        }

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "func_name": self.func_name,
            "args": list(self.args),
            "kwargs": self.kwargs,
            "queue": self.queue,
            "priority": self.priority,
            "status": self.status.value,
            "attempts": self.attempts,
            "created_at": self.created_at,
            "due_at": self.due_at,
            **self.overrides(),
        }
