"""A job: one call of a task, as plain data that can be stored and sent anywhere.

Options left ``None`` on a job are taken from its registered task when it runs,
so hooks and policies work on every backend without being serialized. What
``.delay()`` returns is a ``nuvom.handle.JobHandle`` around the job.
"""

from __future__ import annotations

import math
import operator
import os
import time
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

from nuvom.errors import InvalidJob
from nuvom.limits import (
    ConcurrencyLimit,
    RateLimit,
    UniqueKey,
    bad_flow_entry,
    concurrency_of,
    rate_of,
    unique_of,
)
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


MIN_PRIORITY, MAX_PRIORITY = -(2**31), 2**31 - 1  # what every engine can store and order by


def _finite(value: object) -> bool:
    return type(value) in (int, float) and math.isfinite(value)  # type: ignore[arg-type]


# What each field must hold: checked when a Job is built (by hand, or decoded from a
# store) and again when it is enqueued (a field may have changed since). The per-job
# overrides are checked as their task options are (``nuvom.options``).
EXPECTED = {
    "func_name": "a task name (a non-empty string)",
    "args": "a list or tuple",
    "kwargs": "a dict with string keys",
    "id": "a non-empty string",
    "queue": "a queue name (a non-empty string)",
    "priority": f"an int from {MIN_PRIORITY} to {MAX_PRIORITY}",
    "status": "a JobStatus",
    "attempts": "an int >= 0",
    "created_at": "a finite number of seconds since the epoch",
    "due_at": "None or a finite number of seconds since the epoch",
    "lease_owner": "None or a worker id",
    "origin": "None or a dict with string keys (its 'after': a list of job ids; its "
    "'rate', 'conc' and 'unique': nuvom.limits' pairs)",
    "lease_until": "None or a finite number of seconds since the epoch",
}


def _bad_field(job: Job) -> str | None:
    """The first field of ``job`` not holding what ``EXPECTED`` says, or None (one pass)."""
    j: Any = job  # the declared types are what is being checked
    if not (isinstance(j.func_name, str) and j.func_name):
        return "func_name"
    if not isinstance(j.args, tuple | list):
        return "args"
    if not (isinstance(j.kwargs, dict) and all(isinstance(k, str) for k in j.kwargs)):
        return "kwargs"
    if not (isinstance(j.id, str) and j.id):
        return "id"
    if not (isinstance(j.queue, str) and j.queue):
        return "queue"
    return _bad_state_field(j)


def _bad_state_field(j: Any) -> str | None:
    if not (type(j.priority) is int and MIN_PRIORITY <= j.priority <= MAX_PRIORITY):
        return "priority"
    if not isinstance(j.status, JobStatus):
        return "status"
    if not (type(j.attempts) is int and 0 <= j.attempts <= MAX_PRIORITY):
        return "attempts"
    if not _finite(j.created_at):
        return "created_at"
    if j.due_at is not None and not _finite(j.due_at):
        return "due_at"
    if j.lease_owner is not None and not isinstance(j.lease_owner, str):
        return "lease_owner"
    if j.origin is not None and not (
        isinstance(j.origin, dict)
        and all(isinstance(k, str) for k in j.origin)
        and _job_ids(j.origin.get("after", []))
        and not bad_flow_entry(j.origin)
    ):
        return "origin"
    if j.lease_until is not None and not _finite(j.lease_until):
        return "lease_until"
    return None


def _job_ids(value: object) -> bool:
    return isinstance(value, list | tuple) and all(isinstance(v, str) and v for v in value)


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
    # Where the job came from, when not a plain call: {"schedule": id, "tick": time}, or a
    # workflow's {"workflow": id, "after": [job ids it waits for], "feed": ...}
    # (``nuvom.workflow``); the store reads ``depends_on`` and ``on_failure`` below.
    origin: dict[str, Any] | None = None
    # Set while a worker holds the job; not part of what is enqueued.
    lease_owner: str | None = None
    lease_until: float | None = None

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        """Raise ``InvalidJob`` naming the first field whose value cannot be stored or run."""
        name = _bad_field(self)
        if name is not None:
            value = getattr(self, name)
            raise InvalidJob(
                f"Job field {name} must be {EXPECTED[name]}, not {value!r}", field=name
            )
        if _override_values(self) != _NO_OVERRIDES:  # most jobs set none: nothing to check
            check_job_overrides(self.overrides())

    def copy(self, **changes: Any) -> Job:
        """A shallow copy with ``changes``, not checked again (``dataclasses.replace`` checks
        every field and costs several times more): for stores copying jobs they checked."""
        new: Job = _new_job(Job)
        new.func_name, new.args, new.kwargs, new.id = (
            self.func_name,
            self.args,
            self.kwargs,
            self.id,
        )
        new.queue, new.priority, new.status = self.queue, self.priority, self.status
        new.attempts, new.created_at, new.due_at = self.attempts, self.created_at, self.due_at
        new.max_retries, new.retry_delay_secs = self.max_retries, self.retry_delay_secs
        new.timeout_secs, new.timeout_policy = self.timeout_secs, self.timeout_policy
        new.store_result, new.origin = self.store_result, self.origin
        new.lease_owner, new.lease_until = self.lease_owner, self.lease_until
        for name, value in changes.items():
            setattr(new, name, value)
        return new

    @property
    def depends_on(self) -> list[str]:
        """Ids of the jobs this one waits for: the store parks it until all have succeeded."""
        return list(self.origin.get("after", ())) if self.origin else []

    @property
    def on_failure(self) -> bool:
        """An errback: released when a job it waits for fails for good, cancelled when all
        succeed."""
        return self.origin is not None and self.origin.get("feed") == "failure"

    @property
    def rate_limit(self) -> RateLimit | None:
        """The token bucket a claim of this job takes from (keyed on its task), if any."""
        return rate_of(self.func_name, self.origin)

    @property
    def concurrency_limit(self) -> ConcurrencyLimit | None:
        """How many jobs of its concurrency key may be held at once, if it has one."""
        return concurrency_of(self.origin)

    @property
    def unique(self) -> UniqueKey | None:
        """Its unique key: while the key is held, submitting another job of it stores nothing."""
        return unique_of(self.origin)

    @property
    def limited(self) -> bool:
        """Whether a claim must check a limit before taking it."""
        origin = self.origin
        return origin is not None and ("rate" in origin or "conc" in origin)

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
            **({"origin": self.origin} if self.origin else {}),
            **self.overrides(),
        }


_new_job = object.__new__
