"""An in-process result backend: full history, gone when the process exits."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

from nuvom.clock import SYSTEM_CLOCK, Clock
from nuvom.job import Job, JobStatus
from nuvom.records import AttemptRecord, ErrorInfo, JobRecord, Outcome
from nuvom.result_backends.base import BaseResultBackend


class MemoryResultBackend(BaseResultBackend):
    name = "memory"

    def __init__(self, *, clock: Clock = SYSTEM_CLOCK) -> None:
        self.clock = clock
        self._lock = threading.Lock()
        self._records: dict[str, JobRecord] = {}

    def _record(self, job_id: str) -> JobRecord:
        record = self._records.get(job_id)
        if record is None:
            record = self._records[job_id] = JobRecord(id=job_id, status=JobStatus.PENDING)
        return record

    def _touch(self, record: JobRecord) -> None:
        record.updated_at = self.clock.time()
        # Keep dict order = update order, so list_jobs reads newest last.
        self._records.pop(record.id, None)
        self._records[record.id] = record

    def set_result(self, job_id: str, result: Any) -> None:
        with self._lock:
            record = self._record(job_id)
            record.status, record.result, record.has_result = JobStatus.SUCCESS, result, True
            self._touch(record)

    def get_result(self, job_id: str) -> Any:
        with self._lock:
            record = self._records.get(job_id)
            return record.result if record is not None else None

    def set_error(self, job_id: str, error: ErrorInfo | BaseException | str) -> None:
        info = self.describe_error(error)
        with self._lock:
            record = self._record(job_id)
            record.status = JobStatus.FAILED
            record.error_type, record.error_message = info.type, info.message
            record.traceback = info.traceback
            self._touch(record)

    def get_error(self, job_id: str) -> str | None:
        with self._lock:
            record = self._records.get(job_id)
            if record is None or record.error_type is None or record.status is JobStatus.SUCCESS:
                return None
            return f"{record.error_type}: {record.error_message}"

    def record_enqueued(self, jobs: Sequence[Job]) -> None:
        now = self.clock.time()
        with self._lock:
            for job in jobs:
                record = self._record(job.id)
                record.func_name, record.queue, record.priority = (
                    job.func_name,
                    job.queue,
                    job.priority,
                )
                record.args, record.kwargs = list(job.args), dict(job.kwargs)
                record.created_at, record.due_at = job.created_at, job.due_at
                record.max_retries = job.max_retries
                scheduled = job.due_at is not None and job.due_at > now
                record.status = JobStatus.SCHEDULED if scheduled else JobStatus.PENDING
                record.finished_at = None
                self._touch(record)

    def mark_running(self, jobs: Sequence[Job], *, worker_id: str, started_at: float) -> None:
        with self._lock:
            for job in jobs:
                record = self._record(job.id)
                if record.func_name is None:
                    record.func_name, record.queue = job.func_name, job.queue
                    record.args, record.kwargs = list(job.args), dict(job.kwargs)
                for earlier in record.history:
                    if earlier.status == JobStatus.RUNNING.value:
                        earlier.status = "LOST"
                record.history.append(
                    AttemptRecord(
                        len(record.history) + 1,
                        JobStatus.RUNNING.value,
                        started_at,
                        None,
                        worker_id,
                    )
                )
                record.status, record.started_at = JobStatus.RUNNING, started_at
                record.attempts, record.worker_id = len(record.history), worker_id
                self._touch(record)

    def mark_cancelled(self, job_id: str, *, at: float) -> None:
        with self._lock:
            record = self._record(job_id)
            record.status, record.finished_at = JobStatus.CANCELLED, at
            self._touch(record)

    def save_outcomes(self, outcomes: Sequence[Outcome]) -> None:
        with self._lock:
            for outcome in outcomes:
                record = self._record(outcome.job.id)
                record.status = outcome.status
                error = outcome.error
                record.error_type = error.type if error else None
                record.error_message = error.message if error else None
                record.traceback = error.traceback if error else None
                if outcome.status is JobStatus.SUCCESS and outcome.store_result:
                    record.result, record.has_result = outcome.result, True
                if outcome.status is JobStatus.RETRYING:
                    record.due_at = outcome.retry_at
                else:
                    record.finished_at = outcome.finished_at
                if record.history:
                    attempt = record.history[-1]
                    attempt.status, attempt.finished_at = outcome.status.value, outcome.finished_at
                    if error:
                        attempt.error_type, attempt.error_message = error.type, error.message
                        attempt.traceback = error.traceback
                self._touch(record)

    def get_full(self, job_id: str) -> JobRecord | None:
        with self._lock:
            record = self._records.get(job_id)
            if record is None:
                return None
            return replace(record, history=[replace(a) for a in record.history])

    def list_jobs(
        self, *, status: JobStatus | None = None, limit: int = 20, offset: int = 0
    ) -> list[JobRecord]:
        with self._lock:
            newest_first = reversed(self._records.values())
            matching = [r for r in newest_first if status is None or r.status is status]
            return [replace(r) for r in matching[offset : offset + limit]]

    def failed_by_queue(self) -> dict[str, int]:
        """FAILED jobs per queue name, for ``nuvom queue stats``."""
        with self._lock:
            counts: dict[str, int] = {}
            for record in self._records.values():
                if record.status is JobStatus.FAILED:
                    queue = record.queue or "default"
                    counts[queue] = counts.get(queue, 0) + 1
            return counts

    def prune(self, *, older_than: float, statuses: Sequence[JobStatus] | None = None) -> int:
        final = set(statuses or (JobStatus.SUCCESS, JobStatus.FAILED, JobStatus.CANCELLED))
        with self._lock:
            doomed = [
                r.id
                for r in self._records.values()
                if r.status in final and (r.updated_at or 0) < older_than
            ]
            for job_id in doomed:
                del self._records[job_id]
            return len(doomed)
