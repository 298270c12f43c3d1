"""An in-process result backend: full history, gone when the process exits.

Beside a ``MemoryJobQueue`` each step changes both under the queue's lock, so
no other thread ever sees a job's record and its queue state disagree.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Sequence
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from nuvom.backends.common import Defaults, failed_by_queue, prunable, status_counts
from nuvom.backends.contract import (
    BaseJobQueue,
    BaseResultBackend,
    Duplicates,
    JobQuery,
    JointWriter,
    Queues,
    TwoStepWriter,
    finished_before,
    waits,
)
from nuvom.backends.memory.queue import MemoryJobQueue
from nuvom.job import Job, JobStatus
from nuvom.records import ErrorInfo, JobRecord, Outcome

if TYPE_CHECKING:
    from nuvom.clock import Clock
    from nuvom.runtime import Runtime


class MemoryResultBackend(BaseResultBackend):
    name = "memory"

    def __init__(self, *, clock: Clock | None = None, runtime: Runtime | None = None) -> None:
        self.clock = Defaults(runtime).clock(clock)
        self._lock = threading.RLock()
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
                record.note_enqueued(job, now)
                self._touch(record)

    def record_fired(self, jobs: Sequence[Job]) -> None:
        with self._lock:
            self.record_enqueued([job for job in jobs if job.id not in self._records])

    def mark_running(self, jobs: Sequence[Job], *, worker_id: str, started_at: float) -> None:
        with self._lock:
            for job in jobs:
                record = self._record(job.id)
                if record.func_name is None:
                    record.note_call(job.func_name, job.queue, job.args, job.kwargs, job.created_at)
                record.note_started(worker_id, started_at)
                self._touch(record)

    def mark_released(self, job_ids: Sequence[str]) -> None:
        with self._lock:
            for job_id in job_ids:
                record = self._records.get(job_id)
                if record is not None:
                    record.note_released()
                    self._touch(record)

    def mark_cancelled(self, job_id: str, *, at: float) -> None:
        with self._lock:
            record = self._record(job_id)
            record.status, record.finished_at = JobStatus.CANCELLED, at
            self._touch(record)

    def mark_dependents_cancelled(self, cancelled: Sequence[tuple[str, str]], *, at: float) -> None:
        with self._lock:
            for job_id, reason in cancelled:
                record = self._record(job_id)
                record.status, record.finished_at = JobStatus.CANCELLED, at
                record.error_type, record.error_message = "Cancelled", reason
                self._touch(record)

    def save_outcomes(self, outcomes: Sequence[Outcome]) -> None:
        with self._lock:
            for outcome in outcomes:
                record = self._record(outcome.job.id)
                record.note_outcome(outcome)
                if outcome.status is JobStatus.SUCCESS and outcome.store_result:
                    record.result = outcome.result
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

    def find_jobs(self, query: JobQuery) -> list[JobRecord]:
        with self._lock:
            found = [replace(r) for r in self._records.values() if query.matches(r)]
        found.sort(key=lambda r: (r.updated_at or 0.0, r.id), reverse=True)
        return found[: query.limit]

    def delete_job(self, job_id: str) -> bool:
        with self._lock:
            record = self._records.get(job_id)
            if record is None or not record.status.is_final:
                return False
            unfinished = [r for r in self._records.values() if not r.status.is_final]
            if not prunable([record, *unfinished], math.inf, None):
                return False  # a job of its workflow still waits to be fed its result
            del self._records[job_id]
            return True

    def status_counts(self) -> dict[str, int]:
        with self._lock:
            return status_counts(self._records.values())

    def failed_by_queue(self) -> dict[str, int]:
        with self._lock:
            return failed_by_queue(self._records.values())

    def prune(self, *, older_than: float, statuses: Sequence[JobStatus] | None = None) -> int:
        with self._lock:
            doomed = prunable(self._records.values(), older_than, statuses)
            for record in doomed:
                del self._records[record.id]
            return len(doomed)

    def joint_writer(self, queue: BaseJobQueue) -> JointWriter | None:
        return MemoryJointWriter(queue, self) if isinstance(queue, MemoryJobQueue) else None


class MemoryJointWriter(TwoStepWriter):
    """The two steps, made one by holding the queue's lock across both."""

    queue: MemoryJobQueue

    def submit(self, jobs: Sequence[Job]) -> Duplicates:
        with self.queue.lock:  # no claim comes between: the order of the two is free
            duplicates = self.queue.enqueue_many(jobs)
            self.results.record_enqueued(
                [job for job in jobs if job.id not in duplicates] if duplicates else jobs
            )
            if waits(jobs):
                self.note(self.queue.resolve(finished_before(jobs, self.results)))
            return duplicates

    def claim(
        self, n: int, *, worker_id: str, lease_secs: float, queues: Queues = None
    ) -> list[Job]:
        with self.queue.lock:
            return super().claim(n, worker_id=worker_id, lease_secs=lease_secs, queues=queues)

    def settle(self, outcomes: Sequence[Outcome]) -> None:
        with self.queue.lock:
            super().settle(outcomes)

    def cancel(self, job_id: str) -> bool:
        with self.queue.lock:
            return super().cancel(job_id)
