"""What ``.delay()`` returns: the job that was enqueued and where to read how it ends.

The ``Job`` stays plain data; the handle adds the result backend it was recorded
in (so ``get()`` works from any process that reaches it) and the task's retries.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from nuvom.job import Job, JobStatus
from nuvom.options import retries_left

if TYPE_CHECKING:
    from nuvom.backends.contract import BaseResultBackend
    from nuvom.task import Task
    from nuvom.workflow import Signature, WorkflowHandle


class JobHandle:
    """An enqueued job: its call as it was sent, its live ``status``, and ``get()``."""

    __slots__ = ("_results", "_task_retries", "deduplicated", "job")

    def __init__(
        self, job: Job, results: BaseResultBackend, *, task_retries: int | None = None
    ) -> None:
        self.job = job
        self._results = results
        self._task_retries = task_retries
        #: True when this call stored nothing: a job holding the same unique key already
        #: waited or ran, and this handle is that job's.
        self.deduplicated = False

    def __repr__(self) -> str:
        return f"<JobHandle {self.job.id} {self.job.func_name}>"

    # -- the call, as enqueued -------------------------------------------------
    @property
    def id(self) -> str:
        return self.job.id

    @property
    def func_name(self) -> str:
        return self.job.func_name

    @property
    def args(self) -> tuple[Any, ...] | list[Any]:
        return self.job.args

    @property
    def kwargs(self) -> dict[str, Any]:
        return self.job.kwargs

    @property
    def queue(self) -> str:
        return self.job.queue

    @property
    def priority(self) -> int:
        return self.job.priority

    @property
    def attempts(self) -> int:
        return self.job.attempts

    @property
    def created_at(self) -> float:
        return self.job.created_at

    @property
    def due_at(self) -> float | None:
        return self.job.due_at

    @property
    def retries_left(self) -> int | None:
        """Retries it may still use; ``None`` when neither the job nor its task says."""
        allowed = self.job.max_retries if self.job.max_retries is not None else self._task_retries
        return None if allowed is None else retries_left(allowed, self.job.attempts)

    # -- how it is doing ---------------------------------------------------------
    @property
    def status(self) -> JobStatus:
        """Its status now, read from the result backend (as enqueued, if that keeps none)."""
        return self._results.get_status(self.job.id) or self.job.status

    def get(self, timeout: float | None = None, *, poll_secs: float = 0.05) -> Any:
        """Block until the job ends; return its result or raise its error.

        Raises ``JobFailed`` (with the remote error type, message and traceback),
        ``JobCancelled``, or ``ResultTimeout`` when ``timeout`` seconds pass first.
        Works from any process that reaches the same result backend.
        """
        from nuvom.result_store import wait_for_result

        return wait_for_result(
            self.job.id, timeout=timeout, poll_secs=poll_secs, backend=self._results
        )

    def then(
        self,
        task: Task[Any, Any] | Signature,
        *args: Any,
        on_failure: Signature | None = None,
        **kwargs: Any,
    ) -> WorkflowHandle:
        """Run ``task(<this job's result>, *args, **kwargs)`` once this job succeeded; returns
        its handle at once. ``on_failure=errback.s()`` runs if either fails for good."""
        from nuvom.workflow import then

        return then(self, task, args, kwargs, on_failure)

    def to_dict(self) -> dict[str, Any]:
        return self.job.to_dict()
