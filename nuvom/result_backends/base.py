"""The result backend contract: where outcomes and job history are kept.

Only the seed's four methods are abstract, so a plugin that writes just
``set_result/get_result/set_error/get_error`` works; the richer methods have
documented defaults that built-in backends override.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import Any, ClassVar

from nuvom.errors import BackendError
from nuvom.job import Job, JobStatus
from nuvom.records import ErrorInfo, JobRecord, Outcome


class BaseResultBackend(ABC):
    """Keeps what happened to each job. Methods are safe to call from several threads."""

    name: ClassVar[str] = "base"
    shared_across_processes: ClassVar[bool] = False

    @abstractmethod
    def set_result(self, job_id: str, result: Any) -> None:
        """Store a successful job's return value (``None`` included)."""

    @abstractmethod
    def get_result(self, job_id: str) -> Any:
        """The stored return value, or ``None`` when there is none."""

    @abstractmethod
    def set_error(self, job_id: str, error: ErrorInfo | BaseException | str) -> None:
        """Store why a job failed for good."""

    @abstractmethod
    def get_error(self, job_id: str) -> str | None:
        """``"Type: message"`` of the failure, or ``None`` when the job did not fail."""

    # -- richer methods, with defaults built on the four above ------------
    def record_enqueued(self, jobs: Sequence[Job]) -> None:  # noqa: B027 - optional hook
        """Note jobs as PENDING or SCHEDULED. Default: nothing (history starts at the outcome)."""

    def mark_running(  # noqa: B027 - optional hook
        self, jobs: Sequence[Job], *, worker_id: str, started_at: float
    ) -> None:
        """Note that an attempt of each job started. Default: nothing."""

    def mark_released(self, job_ids: Sequence[str]) -> None:  # noqa: B027 - optional hook
        """Note that running jobs went back to the queue unfinished (shutdown). Default: nothing."""

    def mark_cancelled(self, job_id: str, *, at: float) -> None:
        """Note a job as CANCELLED. Default: stored as its error."""
        self.set_error(job_id, ErrorInfo("Cancelled", "job was cancelled"))

    def save_outcomes(self, outcomes: Sequence[Outcome]) -> None:
        """Store the end of each attempt. Default: ``set_result``/``set_error`` per final one."""
        for outcome in outcomes:
            if outcome.status is JobStatus.SUCCESS:
                self.set_result(outcome.job.id, outcome.result if outcome.store_result else None)
            elif outcome.status is JobStatus.FAILED and outcome.error is not None:
                self.set_error(outcome.job.id, outcome.error)

    def get_full(self, job_id: str) -> JobRecord | None:
        """Everything known about a job, or ``None``.

        The default can only tell a failure from a non-``None`` result; a job
        that returned ``None`` looks unfinished. Built-in backends know better.
        """
        error = self.get_error(job_id)
        if error is not None:
            kind, _, message = error.partition(": ")
            status = JobStatus.CANCELLED if kind == "Cancelled" else JobStatus.FAILED
            return JobRecord(id=job_id, status=status, error_type=kind, error_message=message)
        result = self.get_result(job_id)
        if result is None:
            return None
        return JobRecord(id=job_id, status=JobStatus.SUCCESS, result=result, has_result=True)

    def list_jobs(
        self, *, status: JobStatus | None = None, limit: int = 20, offset: int = 0
    ) -> list[JobRecord]:
        """Most recently updated jobs first. Default: refuses, as four methods cannot list."""
        raise BackendError(
            f"the {self.name!r} result backend keeps no job history", backend=self.name
        )

    def prune(self, *, older_than: float, statuses: Sequence[JobStatus] | None = None) -> int:
        """Delete finished jobs last updated before ``older_than``; return how many. Default: 0."""
        return 0

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release connections and files. Idempotent."""

    @staticmethod
    def describe_error(error: ErrorInfo | BaseException | str) -> ErrorInfo:
        if isinstance(error, ErrorInfo):
            return error
        if isinstance(error, BaseException):
            return ErrorInfo.from_exception(error)
        kind, sep, message = error.partition(": ")
        return ErrorInfo(kind, message) if sep else ErrorInfo("Error", error)
