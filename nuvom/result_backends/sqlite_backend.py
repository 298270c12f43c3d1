"""Results, attempts and history in SQLite; the default result backend.

Shares its file (and so its transactions) with ``SQLiteJobQueue`` by default.
The ``write_*`` methods run inside a transaction the caller opened.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from nuvom.clock import SYSTEM_CLOCK, Clock
from nuvom.errors import SerializationError
from nuvom.job import Job, JobStatus
from nuvom.queue_backends import sqlite_sql as sql
from nuvom.queue_backends.sqlite_store import SQLiteStore
from nuvom.records import AttemptRecord, ErrorInfo, JobPayloadCodec, JobRecord, Outcome
from nuvom.result_backends.base import BaseResultBackend
from nuvom.serialization import Codec

_FINAL = (JobStatus.SUCCESS, JobStatus.FAILED, JobStatus.CANCELLED)
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
        clock: Clock = SYSTEM_CLOCK,
        synchronous: str = "full",
        busy_timeout_secs: float = 10.0,
    ) -> None:
        self._owns_store = store is None
        if store is None:
            if path is None:
                raise TypeError("SQLiteResultBackend needs a path or a store")
            store = SQLiteStore(path, synchronous=synchronous, busy_timeout_secs=busy_timeout_secs)
        self.store = store
        self.codec = codec or Codec()
        self.payloads = JobPayloadCodec(self.codec)
        self.clock = clock

    def __repr__(self) -> str:
        return f"SQLiteResultBackend({str(self.store.path)!r})"

    # -- the four seed methods --------------------------------------------
    def set_result(self, job_id: str, result: Any) -> None:
        now = self.clock.time()
        blob = self.codec.dumps(result)
        with self.store.write() as conn:
            conn.execute(
                sql.SAVE_OUTCOME,
                (
                    job_id,
                    None,
                    None,
                    0,
                    "SUCCESS",
                    None,
                    blob,
                    1,
                    None,
                    None,
                    None,
                    None,
                    None,
                    now,
                    None,
                    now,
                ),
            )

    def get_result(self, job_id: str) -> Any:
        rows = self.store.read(sql.GET_RESULT, (job_id,))
        if not rows or not rows[0][2]:
            return None
        return self._decode(rows[0][1])

    def set_error(self, job_id: str, error: ErrorInfo | BaseException | str) -> None:
        info = self.describe_error(error)
        now = self.clock.time()
        with self.store.write() as conn:
            conn.execute(sql.MARK_FAILED, (job_id, info.type, info.message, now, now))

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

    def reopen_enqueued(self, conn: sqlite3.Connection, jobs: Sequence[Job], now: float) -> None:
        """Jobs enqueued again under a known id (``retry_job``) become PENDING/SCHEDULED again."""
        rows = []
        for job in jobs:
            scheduled = job.due_at is not None and job.due_at > now
            rows.append(("SCHEDULED" if scheduled else "PENDING", job.due_at, now, job.id))
        conn.executemany(sql.REOPEN_ENQUEUED, rows)

    def mark_running(self, jobs: Sequence[Job], *, worker_id: str, started_at: float) -> None:
        claimed = [(job, self.payloads.encode(job)) for job in jobs]
        with self.store.write() as conn:
            self.write_running(conn, claimed, worker_id, started_at)

    def write_running(
        self,
        conn: sqlite3.Connection,
        claimed: Sequence[tuple[Job, bytes]],
        worker_id: str,
        started_at: float,
    ) -> None:
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
            self.write_outcomes(conn, outcomes, self.clock.time())

    def _result_blob(self, outcome: Outcome) -> bytes | None:
        if outcome.status is not JobStatus.SUCCESS or not outcome.store_result:
            return None
        if outcome.result_blob is not None:
            return outcome.result_blob
        return self.codec.dumps(outcome.result)

    def write_outcomes(
        self, conn: sqlite3.Connection, outcomes: Sequence[Outcome], now: float
    ) -> None:
        job_rows = []
        attempt_rows = []
        for outcome in outcomes:
            job, error = outcome.job, outcome.error
            blob = self._result_blob(outcome)
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

    def _decode(self, blob: bytes | None) -> Any:
        if blob is None:
            return None
        try:
            return self.codec.loads(blob)
        except SerializationError as exc:
            return f"<undecodable result: {exc}>"

    def _record(self, row: sqlite3.Row | tuple[Any, ...]) -> JobRecord:
        (job_id, status, func_name, payload, queue, priority, result, has_result, error_type,
         error_message, traceback, attempts, max_retries, created_at, due_at, started_at,
         finished_at, updated_at, worker_id) = row  # fmt: skip
        args: list[Any] = []
        kwargs: dict[str, Any] = {}
        if payload is not None:
            try:
                job = self.payloads.decode(payload, job_id=job_id, queue=queue or "")
            except Exception:  # a corrupt payload must not hide the rest of the record
                args = ["<undecodable>"]
            else:
                args, kwargs = list(job.args), job.kwargs
                # A job still only in the queue has these in its payload alone.
                func_name = func_name or job.func_name
                created_at = created_at if created_at is not None else job.created_at
                max_retries = max_retries if max_retries is not None else job.max_retries
        return JobRecord(
            id=job_id,
            status=JobStatus(status),
            func_name=func_name,
            args=args,
            kwargs=kwargs,
            queue=queue,
            priority=priority or 0,
            result=self._decode(result) if has_result else None,
            has_result=bool(has_result),
            error_type=error_type,
            error_message=error_message,
            traceback=traceback,
            attempts=attempts or 0,
            max_retries=max_retries,
            created_at=created_at,
            due_at=due_at,
            started_at=started_at,
            finished_at=finished_at,
            updated_at=updated_at,
            worker_id=worker_id,
        )

    def get_full(self, job_id: str) -> JobRecord | None:
        rows = self.store.read(sql.GET_JOB, (job_id, self.clock.time(), job_id))
        if not rows:
            return None
        record = self._record(rows[0])
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
        return [self._record(row) for row in rows]

    def status_counts(self) -> dict[str, int]:
        rows = self.store.read(sql.STATUS_COUNTS, (self.clock.time(),))
        return {status: count for status, count in rows}

    def failed_by_queue(self) -> dict[str, int]:
        """FAILED jobs per queue name, for ``nuvom queue stats``."""
        return {queue: count for queue, count in self.store.read(sql.FAILED_BY_QUEUE)}

    def prune(self, *, older_than: float, statuses: Sequence[JobStatus] | None = None) -> int:
        chosen = [s.value for s in (statuses or _FINAL)]
        with self.store.write() as conn:
            doomed = conn.execute(
                sql.prune_statement(len(chosen)), (older_than, *chosen)
            ).fetchall()
            conn.executemany(sql.DELETE_ATTEMPTS, doomed)
        return len(doomed)

    def close(self) -> None:
        if self._owns_store:
            self.store.close()
