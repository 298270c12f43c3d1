"""Results, attempts and history in SQLite; the default result backend.

Shares its file (and so its transactions) with ``SQLiteJobQueue`` by default.
The ``note_*`` steps run inside a transaction their caller opened: this
backend's own methods, or the joint writer (``joint.py``).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from nuvom.backends.common import (
    Defaults,
    owned_store,
    record_from_row,
    result_blob,
    stored_result,
)
from nuvom.backends.contract import BaseJobQueue, BaseResultBackend, JointWriter
from nuvom.backends.sqlite import sql
from nuvom.backends.sqlite.store import SQLiteStore
from nuvom.job import FINAL_STATUSES, Job, JobStatus
from nuvom.records import AttemptRecord, ErrorInfo, JobPayloadCodec, JobRecord, Outcome

if TYPE_CHECKING:
    from nuvom.clock import Clock
    from nuvom.serialization import Codec

# Statuses a job can show while it is still only in nuvom_queue.
_QUEUED_STATUSES = (JobStatus.PENDING, JobStatus.SCHEDULED, JobStatus.RUNNING)


class SQLiteResultBackend(BaseResultBackend):
    name = "sqlite"
    shared_across_processes = True

    def __init__(
        self,
        path: Path | str | None = None,
        *,
        store: SQLiteStore | None = None,
        codec: Codec | None = None,
        clock: Clock | None = None,
        synchronous: str | None = None,
        busy_timeout_secs: float | None = None,
    ) -> None:
        defaults = Defaults()
        self.store, self._owns_store = owned_store(
            store,
            lambda: SQLiteStore.from_settings(
                path or defaults.settings.sqlite_db_path,
                defaults.settings,
                synchronous=synchronous,
                busy_timeout_secs=busy_timeout_secs,
            ),
        )
        self.codec = defaults.codec(codec)
        self.payloads = JobPayloadCodec(self.codec)
        self.clock = defaults.clock(clock)

    def __repr__(self) -> str:
        return f"SQLiteResultBackend({str(self.store.path)!r})"

    def joint_writer(self, queue: BaseJobQueue) -> JointWriter | None:
        from nuvom.backends.sqlite.joint import SQLiteJointWriter
        from nuvom.backends.sqlite.queue import SQLiteJobQueue

        if isinstance(queue, SQLiteJobQueue) and queue.store.same_file(self.store):
            return SQLiteJointWriter(queue, self)
        return None

    # -- steps inside a caller's transaction ----------------------------------
    def note_reopened(self, conn: sqlite3.Connection, jobs: Sequence[Job], now: float) -> None:
        """Jobs enqueued again under a known id (``retry_job``) become PENDING/SCHEDULED again.

        A new job gets its row only when first claimed; until then reads find it
        in ``nuvom_queue``, so enqueueing writes one table, not two.
        """
        rows = []
        for job in jobs:
            scheduled = job.due_at is not None and job.due_at > now
            rows.append(("SCHEDULED" if scheduled else "PENDING", job.due_at, now, job.id))
        conn.executemany(sql.REOPEN_ENQUEUED, rows)

    def note_running(
        self,
        conn: sqlite3.Connection,
        claimed: Sequence[tuple[Job, bytes]],
        worker_id: str,
        started_at: float,
    ) -> None:
        """Each claimed job RUNNING, with a new attempt; an earlier RUNNING one is LOST."""
        conn.executemany(
            sql.MARK_RUNNING,
            [
                (job.id, job.func_name, job.queue, job.priority, payload, job.created_at,
                 started_at, worker_id, started_at)
                for job, payload in claimed
            ],
        )  # fmt: skip
        conn.executemany(sql.MARK_EARLIER_ATTEMPTS_LOST, [(job.id,) for job, _ in claimed])
        conn.executemany(
            sql.START_ATTEMPT, [(job.id, job.id, started_at, worker_id) for job, _ in claimed]
        )

    def note_outcomes(
        self, conn: sqlite3.Connection, outcomes: Sequence[Outcome], now: float
    ) -> None:
        job_rows = []
        attempt_rows = []
        for outcome in outcomes:
            job, error = outcome.job, outcome.error
            blob = result_blob(self.codec, outcome)
            retrying = outcome.status is JobStatus.RETRYING
            error_type = error.type if error else None
            error_message = error.message if error else None
            traceback = error.traceback if error else None
            job_rows.append(
                (job.id, job.func_name, job.queue, job.priority, outcome.status.value, None,
                 blob, int(blob is not None), error_type, error_message, traceback,
                 job.created_at, outcome.retry_at if retrying else None,
                 None if retrying else outcome.finished_at, outcome.worker_id, now)
            )  # fmt: skip
            attempt_rows.append(
                (outcome.status.value, outcome.finished_at, error_type, error_message,
                 traceback, job.id, job.id)
            )  # fmt: skip
        conn.executemany(sql.SAVE_OUTCOME, job_rows)
        conn.executemany(sql.FINISH_ATTEMPT, attempt_rows)

    def note_failed(
        self, conn: sqlite3.Connection, job_id: str, error: ErrorInfo, now: float
    ) -> None:
        conn.execute(sql.MARK_FAILED, (job_id, error.type, error.message, now, now))

    def note_cancelled_waiting(
        self, conn: sqlite3.Connection, job_id: str, removed: Sequence[object], now: float
    ) -> None:
        """A job cancelled while only queued keeps its call, so ``retry_job`` can run it later.

        ``removed`` is the queue row's (queue, priority, payload, due_at).
        """
        queue, priority, payload, due_at = removed
        conn.execute(
            sql.MARK_QUEUED_CANCELLED, (job_id, queue, priority, payload, due_at, now, now)
        )

    # -- the four methods every result backend has ---------------------------
    def set_result(self, job_id: str, result: Any) -> None:
        now = self.clock.time()
        blob = self.codec.dumps(result)
        row = (job_id, None, None, 0, "SUCCESS", None, blob, 1, None, None, None, None, None,
               now, None, now)  # fmt: skip
        with self.store.write() as conn:
            conn.execute(sql.SAVE_OUTCOME, row)

    def get_result(self, job_id: str) -> Any:
        rows = self.store.read(sql.GET_RESULT, (job_id,))
        if not rows or not rows[0][2]:
            return None
        return stored_result(self.codec, rows[0][1])

    def set_error(self, job_id: str, error: ErrorInfo | BaseException | str) -> None:
        info = self.describe_error(error)
        with self.store.write() as conn:
            self.note_failed(conn, job_id, info, self.clock.time())

    def get_error(self, job_id: str) -> str | None:
        rows = self.store.read(sql.GET_ERROR, (job_id,))
        if not rows or rows[0][0] not in ("FAILED", "CANCELLED") or rows[0][1] is None:
            return None
        return f"{rows[0][1]}: {rows[0][2]}"

    # -- richer methods ---------------------------------------------------
    def record_enqueued(self, jobs: Sequence[Job]) -> None:
        now = self.clock.time()
        rows = []
        for job in jobs:
            scheduled = job.due_at is not None and job.due_at > now
            status = "SCHEDULED" if scheduled else "PENDING"
            rows.append(
                (job.id, job.func_name, job.queue, job.priority, status, self.payloads.encode(job),
                 job.max_retries, job.created_at, job.due_at, now)
            )  # fmt: skip
        with self.store.write() as conn:
            conn.executemany(sql.RECORD_ENQUEUED, rows)

    def mark_running(self, jobs: Sequence[Job], *, worker_id: str, started_at: float) -> None:
        claimed = [(job, self.payloads.encode(job)) for job in jobs]
        with self.store.write() as conn:
            self.note_running(conn, claimed, worker_id, started_at)

    def mark_released(self, job_ids: Sequence[str]) -> None:
        now = self.clock.time()
        with self.store.write() as conn:
            conn.executemany(sql.UNCOUNT_ATTEMPT, [(job_id, job_id) for job_id in job_ids])
            conn.executemany(sql.MARK_RELEASED, [(now, job_id) for job_id in job_ids])

    def mark_cancelled(self, job_id: str, *, at: float) -> None:
        with self.store.write() as conn:
            conn.execute(sql.MARK_CANCELLED, (job_id, at, at))

    def save_outcomes(self, outcomes: Sequence[Outcome]) -> None:
        with self.store.write() as conn:
            self.note_outcomes(conn, outcomes, self.clock.time())

    # -- reading -------------------------------------------------------------
    def get_full(self, job_id: str) -> JobRecord | None:
        rows = self.store.read(sql.GET_JOB, (job_id, self.clock.time(), job_id))
        if not rows:
            return None
        record = record_from_row(rows[0], self.payloads, self.codec)
        record.history = [AttemptRecord(*r) for r in self.store.read(sql.GET_ATTEMPTS, (job_id,))]
        return record

    def get_status(self, job_id: str) -> JobStatus | None:
        rows = self.store.read(sql.GET_STATUS, (job_id, self.clock.time(), job_id))
        return JobStatus(rows[0][0]) if rows else None

    def list_jobs(
        self, *, status: JobStatus | None = None, limit: int = 20, offset: int = 0
    ) -> list[JobRecord]:
        now = self.clock.time()
        if status is None:
            rows = self.store.read(sql.LIST_JOBS, (now, limit, offset))
        elif status in _QUEUED_STATUSES:
            params = (status.value, now, status.value, limit, offset)
            rows = self.store.read(sql.LIST_LIVE_JOBS_WITH_STATUS, params)
        else:
            rows = self.store.read(sql.LIST_JOBS_WITH_STATUS, (status.value, limit, offset))
        return [record_from_row(row, self.payloads, self.codec) for row in rows]

    def status_counts(self) -> dict[str, int]:
        rows = self.store.read(sql.STATUS_COUNTS, (self.clock.time(),))
        return {status: count for status, count in rows}

    def failed_by_queue(self) -> dict[str, int]:
        return {queue: count for queue, count in self.store.read(sql.FAILED_BY_QUEUE)}

    def prune(self, *, older_than: float, statuses: Sequence[JobStatus] | None = None) -> int:
        chosen = [s.value for s in (statuses or FINAL_STATUSES)]
        with self.store.write() as conn:
            doomed = conn.execute(
                sql.prune_statement(len(chosen)), (older_than, *chosen)
            ).fetchall()
            conn.executemany(sql.DELETE_ATTEMPTS, doomed)
        return len(doomed)

    def close(self) -> None:
        if self._owns_store:
            self.store.close()
