"""A job: one call of a task, as data that can be stored and sent anywhere.

Options left ``None`` on a job are taken from its registered task when it runs,
so hooks and policies work on every backend without being serialized.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from enum import Enum
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from nuvom.result_backends.base import BaseResultBackend

DEFAULT_QUEUE = "default"


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
    # Per-job overrides; None means "the task's option, read when the job runs".
    max_retries: int | None = None
    retry_delay_secs: float | None = None
    timeout_secs: float | None = None
    timeout_policy: str | None = None
    store_result: bool | None = None
    # Set while a worker holds the job; not part of what is enqueued.
    lease_owner: str | None = None
    lease_until: float | None = None
    _results: BaseResultBackend | None = field(default=None, repr=False)
    _task_retries: int | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        if not isinstance(self.func_name, str) or not self.func_name:
            raise TypeError("Job needs a task name (func_name) as a non-empty string")
        if not isinstance(self.kwargs, dict):
            raise TypeError("Job kwargs must be a dict")
        if not isinstance(self.args, tuple | list):
            raise TypeError("Job args must be a list or tuple")

    @property
    def retries_left(self) -> int | None:
        """Retries still allowed after the current attempt; None if only the task knows."""
        allowed = self.max_retries if self.max_retries is not None else self._task_retries
        if allowed is None:
            return None
        return max(0, allowed - max(0, self.attempts - 1))

    def overrides(self) -> dict[str, Any]:
        """The per-job options that were set, by name."""
        names = (
            "max_retries",
            "retry_delay_secs",
            "timeout_secs",
            "timeout_policy",
            "store_result",
        )
        return {n: getattr(self, n) for n in names if getattr(self, n) is not None}

    def get(self, timeout: float | None = None, *, poll_secs: float = 0.05) -> Any:
        """Block until the job ends; return its result or raise its error.

        Raises ``JobFailed`` (with the remote error type, message and traceback),
        ``JobCancelled``, or ``ResultTimeout`` when ``timeout`` seconds pass first.
        Works from any process that reaches the same result backend.
        """
        from nuvom.result_store import wait_for_result

        return wait_for_result(self.id, timeout=timeout, poll_secs=poll_secs, backend=self._results)

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
