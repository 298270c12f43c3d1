"""Results, attempts and history in PostgreSQL tables.

Shares its schema (and so its transactions) with ``PostgresJobQueue`` when both
use the same DSN and schema. The ``note_*`` steps run on a cursor inside a
transaction their caller opened: this backend's own methods, or ``joint.py``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from nuvom.backends.common import (
    Defaults,
    owned_store,
    record_from_row,
    result_blob,
    stored_result,
)
from nuvom.backends.contract import BaseJobQueue, BaseResultBackend, JointWriter
from nuvom.backends.postgres import sql
from nuvom.backends.postgres.store import PostgresStore, require_dsn
from nuvom.job import FINAL_STATUSES, Job, JobStatus
from nuvom.records import AttemptRecord, ErrorInfo, JobPayloadCodec, JobRecord, Outcome

if TYPE_CHECKING:
    import psycopg

    from nuvom.clock import Clock
    from nuvom.serialization import Codec


class PostgresResultBackend(BaseResultBackend):
    name = "postgres"
    shared_across_processes = True

    def __init__(
        self,
        dsn: str | None = None,
        *,
        schema: str | None = None,
        store: PostgresStore | None = None,
        codec: Codec | None = None,
        clock: Clock | None = None,
    ) -> None:
        defaults = Defaults()
        self.store, self._owns_store = owned_store(
            store,
            lambda: PostgresStore(
                dsn or require_dsn(defaults.settings),
                schema=schema or defaults.settings.postgres_schema,
            ),
        )
        self.codec = defaults.codec(codec)
        self.payloads = JobPayloadCodec(self.codec)
        self.clock = defaults.clock(clock)

    def __repr__(self) -> str:
        return f"PostgresResultBackend({self.store!r})"

    def joint_writer(self, queue: BaseJobQueue) -> JointWriter | None:
        from nuvom.backends.postgres.joint import PostgresJointWriter
        from nuvom.backends.postgres.queue import PostgresJobQueue

        if isinstance(queue, PostgresJobQueue) and queue.store.same_schema(self.store):
            return PostgresJointWriter(queue, self)
        return None

    # -- steps on a cursor inside a caller's transaction ------------------------
    def enqueued_rows(
        self, jobs: Sequence[Job], payloads: Sequence[bytes], now: float
    ) -> list[tuple[object, ...]]:
        """``RECORD_ENQUEUED`` parameters for each job, beside its already encoded payload."""
        rows: list[tuple[object, ...]] = []
        for job, payload in zip(jobs, payloads, strict=True):
            scheduled = job.due_at is not None and job.due_at > now
            rows.append(
                (job.id, job.func_name, job.queue, job.priority,
                 "SCHEDULED" if scheduled else "PENDING", payload, job.max_retries,
                 job.created_at, job.due_at, now)
            )  # fmt: skip
        return rows

    def note_enqueued(
        self, cur: psycopg.Cursor[Any], jobs: Sequence[Job], payloads: Sequence[bytes], now: float
    ) -> None:
        cur.executemany(sql.RECORD_ENQUEUED, self.enqueued_rows(jobs, payloads, now))

    def note_running(
        self,
        cur: psycopg.Cursor[Any],
        claimed: Sequence[tuple[Job, bytes]],
        worker_id: str,
        started_at: float,
    ) -> None:
        """Each claimed job RUNNING, with a new attempt; an earlier RUNNING one is LOST."""
        cur.executemany(
            sql.MARK_RUNNING,
            [
                (job.id, job.func_name, job.queue, job.priority, payload, job.created_at,
                 started_at, worker_id, started_at)
                for job, payload in claimed
            ],
        )  # fmt: skip
        cur.executemany(sql.MARK_EARLIER_ATTEMPTS_LOST, [(job.id,) for job, _ in claimed])
        cur.executemany(
            sql.START_ATTEMPT,
            [{"id": job.id, "at": started_at, "worker": worker_id} for job, _ in claimed],
        )

    def note_outcomes(
        self, cur: psycopg.Cursor[Any], outcomes: Sequence[Outcome], now: float
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
                 blob, blob is not None, error_type, error_message, traceback,
                 job.created_at, outcome.retry_at if retrying else None,
                 None if retrying else outcome.finished_at, outcome.worker_id, now)
            )  # fmt: skip
            attempt_rows.append(
                {"status": outcome.status.value, "at": outcome.finished_at, "type": error_type,
                 "message": error_message, "traceback": traceback, "id": job.id}
            )  # fmt: skip
        cur.executemany(sql.SAVE_OUTCOME, job_rows)
        cur.executemany(sql.FINISH_ATTEMPT, attempt_rows)

    def note_failed(
        self, cur: psycopg.Cursor[Any], job_id: str, error: ErrorInfo, now: float
    ) -> None:
        cur.execute(sql.MARK_FAILED, (job_id, error.type, error.message, now, now))

    def note_cancelled(self, cur: psycopg.Cursor[Any], job_id: str, at: float) -> None:
        cur.execute(sql.MARK_CANCELLED, (job_id, at, at))

    # -- the four methods every result backend has ---------------------------
    def set_result(self, job_id: str, result: Any) -> None:
        now = self.clock.time()
        blob = self.codec.dumps(result)
        row = (job_id, None, None, 0, "SUCCESS", None, blob, True, None, None, None, None, None,
               now, None, now)  # fmt: skip
        with self.store.transaction() as cur:
            cur.execute(sql.SAVE_OUTCOME, row)

    def get_result(self, job_id: str) -> Any:
        rows = self.store.read(sql.GET_RESULT, (job_id,))
        if not rows or not rows[0][2]:
            return None
        return stored_result(self.codec, rows[0][1])

    def set_error(self, job_id: str, error: ErrorInfo | BaseException | str) -> None:
        info = self.describe_error(error)
        with self.store.transaction() as cur:
            self.note_failed(cur, job_id, info, self.clock.time())

    def get_error(self, job_id: str) -> str | None:
        rows = self.store.read(sql.GET_ERROR, (job_id,))
        if not rows or rows[0][0] not in ("FAILED", "CANCELLED") or rows[0][1] is None:
            return None
        return f"{rows[0][1]}: {rows[0][2]}"

    # -- richer methods ---------------------------------------------------
    def record_enqueued(self, jobs: Sequence[Job]) -> None:
        if not jobs:
            return
        payloads = [self.payloads.encode(job) for job in jobs]
        with self.store.transaction() as cur:
            self.note_enqueued(cur, jobs, payloads, self.clock.time())

    def mark_running(self, jobs: Sequence[Job], *, worker_id: str, started_at: float) -> None:
        claimed = [(job, self.payloads.encode(job)) for job in jobs]
        with self.store.transaction() as cur:
            self.note_running(cur, claimed, worker_id, started_at)

    def mark_released(self, job_ids: Sequence[str]) -> None:
        if not job_ids:
            return
        now = self.clock.time()
        with self.store.transaction() as cur:
            cur.executemany(sql.UNCOUNT_ATTEMPT, [{"id": job_id} for job_id in job_ids])
            cur.executemany(sql.MARK_RELEASED, [(now, job_id) for job_id in job_ids])

    def mark_cancelled(self, job_id: str, *, at: float) -> None:
        with self.store.transaction() as cur:
            self.note_cancelled(cur, job_id, at)

    def save_outcomes(self, outcomes: Sequence[Outcome]) -> None:
        with self.store.transaction() as cur:
            self.note_outcomes(cur, outcomes, self.clock.time())

    # -- reading -------------------------------------------------------------
    def get_full(self, job_id: str) -> JobRecord | None:
        with self.store.transaction() as cur:
            cur.execute(sql.GET_JOB, (job_id,))
            row = cur.fetchone()
            if row is None:
                return None
            cur.execute(sql.GET_ATTEMPTS, (job_id,))
            history = [AttemptRecord(*r) for r in cur.fetchall()]
        record = record_from_row(row, self.payloads, self.codec)
        record.history = history
        return record

    def get_status(self, job_id: str) -> JobStatus | None:
        rows = self.store.read(sql.GET_STATUS, (job_id,))
        return JobStatus(rows[0][0]) if rows else None

    def list_jobs(
        self, *, status: JobStatus | None = None, limit: int = 20, offset: int = 0
    ) -> list[JobRecord]:
        if status is None:
            rows = self.store.read(sql.LIST_JOBS, (limit, offset))
        else:
            rows = self.store.read(sql.LIST_JOBS_WITH_STATUS, (status.value, limit, offset))
        return [record_from_row(row, self.payloads, self.codec) for row in rows]

    def status_counts(self) -> dict[str, int]:
        return {status: int(count) for status, count in self.store.read(sql.STATUS_COUNTS)}

    def failed_by_queue(self) -> dict[str, int]:
        return {queue: int(count) for queue, count in self.store.read(sql.FAILED_BY_QUEUE)}

    def prune(self, *, older_than: float, statuses: Sequence[JobStatus] | None = None) -> int:
        chosen = [s.value for s in (statuses or FINAL_STATUSES)]
        with self.store.transaction() as cur:
            cur.execute(sql.PRUNE, (older_than, chosen))
            doomed = [row[0] for row in cur.fetchall()]
            if doomed:
                cur.execute(sql.DELETE_ATTEMPTS, (doomed,))
        return len(doomed)

    def close(self) -> None:
        if self._owns_store:
            self.store.close()
