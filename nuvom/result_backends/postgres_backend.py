"""Results, attempts and history in PostgreSQL tables.

Shares its schema (and so its transactions) with ``PostgresJobQueue`` when both
use the same DSN and schema. The ``write_*`` methods run inside a transaction
the caller opened.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from nuvom.clock import SYSTEM_CLOCK, Clock
from nuvom.errors import BackendError, SerializationError
from nuvom.job import Job, JobStatus
from nuvom.queue_backends import postgres_sql as sql
from nuvom.queue_backends.postgres_store import DEFAULT_SCHEMA, PostgresStore
from nuvom.records import AttemptRecord, ErrorInfo, JobPayloadCodec, JobRecord, Outcome
from nuvom.result_backends.base import BaseResultBackend
from nuvom.serialization import Codec

if TYPE_CHECKING:
    import psycopg

_FINAL = (JobStatus.SUCCESS, JobStatus.FAILED, JobStatus.CANCELLED)


class PostgresResultBackend(BaseResultBackend):
    name = "postgres"
    shared_across_processes = True

    def __init__(
        self,
        dsn: str | None = None,
        *,
        schema: str = DEFAULT_SCHEMA,
        store: PostgresStore | None = None,
        codec: Codec | None = None,
        clock: Clock = SYSTEM_CLOCK,
    ) -> None:
        self._owns_store = store is None
        if store is None:
            if dsn is None:
                raise BackendError(
                    "the postgres result backend needs NUVOM_POSTGRES_DSN", backend="postgres"
                )
            store = PostgresStore(dsn, schema=schema)
        self.store = store
        self.codec = codec or Codec()
        self.payloads = JobPayloadCodec(self.codec)
        self.clock = clock

    def __repr__(self) -> str:
        return f"PostgresResultBackend({self.store!r})"

    # -- the four seed methods --------------------------------------------
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
        return self._decode(rows[0][1])

    def set_error(self, job_id: str, error: ErrorInfo | BaseException | str) -> None:
        info = self.describe_error(error)
        now = self.clock.time()
        with self.store.transaction() as cur:
            cur.execute(sql.MARK_FAILED, (job_id, info.type, info.message, now, now))

    def get_error(self, job_id: str) -> str | None:
        rows = self.store.read(sql.GET_ERROR, (job_id,))
        if not rows or rows[0][0] not in ("FAILED", "CANCELLED") or rows[0][1] is None:
            return None
        return f"{rows[0][1]}: {rows[0][2]}"

    # -- richer methods ---------------------------------------------------
    def enqueued_rows(
        self, jobs: Sequence[Job], payloads: Sequence[bytes], now: float
    ) -> list[tuple[object, ...]]:
        rows: list[tuple[object, ...]] = []
        for job, payload in zip(jobs, payloads, strict=True):
            scheduled = job.due_at is not None and job.due_at > now
            rows.append(
                (job.id, job.func_name, job.queue, job.priority,
                 "SCHEDULED" if scheduled else "PENDING", payload, job.max_retries,
                 job.created_at, job.due_at, now)
            )  # fmt: skip
        return rows

    def record_enqueued(self, jobs: Sequence[Job]) -> None:
        if not jobs:
            return
        payloads = [self.payloads.encode(job) for job in jobs]
        now = self.clock.time()
        with self.store.transaction() as cur:
            self.write_enqueued(cur, jobs, payloads, now)

    def write_enqueued(
        self, cur: psycopg.Cursor[Any], jobs: Sequence[Job], payloads: Sequence[bytes], now: float
    ) -> None:
        cur.executemany(sql.RECORD_ENQUEUED, self.enqueued_rows(jobs, payloads, now))

    def mark_running(self, jobs: Sequence[Job], *, worker_id: str, started_at: float) -> None:
        claimed = [(job, self.payloads.encode(job)) for job in jobs]
        with self.store.transaction() as cur:
            self.write_running(cur, claimed, worker_id, started_at)

    def write_running(
        self,
        cur: psycopg.Cursor[Any],
        claimed: Sequence[tuple[Job, bytes]],
        worker_id: str,
        started_at: float,
    ) -> None:
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

    def mark_released(self, job_ids: Sequence[str]) -> None:
        if not job_ids:
            return
        now = self.clock.time()
        with self.store.transaction() as cur:
            cur.executemany(sql.UNCOUNT_ATTEMPT, [{"id": job_id} for job_id in job_ids])
            cur.executemany(sql.MARK_RELEASED, [(now, job_id) for job_id in job_ids])

    def mark_cancelled(self, job_id: str, *, at: float) -> None:
        with self.store.transaction() as cur:
            cur.execute(sql.MARK_CANCELLED, (job_id, at, at))

    def save_outcomes(self, outcomes: Sequence[Outcome]) -> None:
        with self.store.transaction() as cur:
            self.write_outcomes(cur, outcomes, self.clock.time())

    def _result_blob(self, outcome: Outcome) -> bytes | None:
        if outcome.status is not JobStatus.SUCCESS or not outcome.store_result:
            return None
        if outcome.result_blob is not None:
            return outcome.result_blob
        return self.codec.dumps(outcome.result)

    def write_outcomes(
        self, cur: psycopg.Cursor[Any], outcomes: Sequence[Outcome], now: float
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

    def _decode(self, blob: bytes | memoryview | None) -> Any:
        if blob is None:
            return None
        try:
            return self.codec.loads(bytes(blob))
        except SerializationError as exc:
            return f"<undecodable result: {exc}>"

    def _record(self, row: tuple[Any, ...]) -> JobRecord:
        (job_id, status, func_name, payload, queue, priority, result, has_result, error_type,
         error_message, traceback, attempts, max_retries, created_at, due_at, started_at,
         finished_at, updated_at, worker_id) = row  # fmt: skip
        args: list[Any] = []
        kwargs: dict[str, Any] = {}
        if payload is not None:
            try:
                job = self.payloads.decode(bytes(payload), job_id=job_id, queue=queue or "")
            except Exception:  # a corrupt payload must not hide the rest of the record
                args = ["<undecodable>"]
            else:
                args, kwargs = list(job.args), job.kwargs
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
        with self.store.transaction() as cur:
            cur.execute(sql.GET_JOB, (job_id,))
            row = cur.fetchone()
            if row is None:
                return None
            cur.execute(sql.GET_ATTEMPTS, (job_id,))
            history = [AttemptRecord(*r) for r in cur.fetchall()]
        record = self._record(row)
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
        return [self._record(row) for row in rows]

    def status_counts(self) -> dict[str, int]:
        return {status: int(count) for status, count in self.store.read(sql.STATUS_COUNTS)}

    def prune(self, *, older_than: float, statuses: Sequence[JobStatus] | None = None) -> int:
        chosen = [s.value for s in (statuses or _FINAL)]
        with self.store.transaction() as cur:
            cur.execute(sql.PRUNE, (older_than, chosen))
            doomed = [row[0] for row in cur.fetchall()]
            if doomed:
                cur.execute(sql.DELETE_ATTEMPTS, (doomed,))
        return len(doomed)

    def close(self) -> None:
        if self._owns_store:
            self.store.close()
