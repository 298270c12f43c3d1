"""The PostgreSQL queue: many worker hosts on one queue, with ``FOR UPDATE SKIP LOCKED`` claims.

``LISTEN/NOTIFY`` wakes idle workers at once; polling stays as the safety net.
When the result backend uses the same schema, enqueue+record, claim+mark-running
and outcome+ack each commit in one transaction.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from nuvom.clock import SYSTEM_CLOCK, Clock
from nuvom.errors import BackendError, CorruptJob, NuvomError
from nuvom.job import Job, JobStatus
from nuvom.queue_backends import postgres_sql as sql
from nuvom.queue_backends.base import BaseJobQueue
from nuvom.queue_backends.postgres_store import DEFAULT_SCHEMA, PostgresStore
from nuvom.records import JobPayloadCodec
from nuvom.serialization import Codec

if TYPE_CHECKING:
    import psycopg

    from nuvom.records import Outcome
    from nuvom.result_backends.base import BaseResultBackend
    from nuvom.result_backends.postgres_backend import PostgresResultBackend

log = logging.getLogger("nuvom.postgres")

LISTEN_RETRY_MIN_SECS = 0.1  # first pause before reconnecting a dropped LISTEN connection
LISTEN_RETRY_MAX_SECS = 5.0  # longest pause between reconnect attempts

ClaimedRow = tuple[Job, bytes]


def _claim_order(row: tuple[Any, ...]) -> tuple[int, float, int]:
    """RETURNING gives rows in no set order; restore priority, due time, FIFO."""
    seq, _, _, priority, due_at = row[:5]
    return (-priority, due_at, seq)


class PostgresJobQueue(BaseJobQueue):
    name = "postgres"
    shared_across_processes = True
    pushes_wakeups = True

    def __init__(
        self,
        dsn: str | None = None,
        *,
        schema: str = DEFAULT_SCHEMA,
        store: PostgresStore | None = None,
        codec: Codec | None = None,
        clock: Clock = SYSTEM_CLOCK,
    ) -> None:
        super().__init__(clock=clock)
        self._owns_store = store is None
        if store is None:
            if dsn is None:
                raise BackendError(
                    "the postgres queue needs NUVOM_POSTGRES_DSN "
                    "(e.g. postgresql://user@host:5432/dbname)",
                    backend="postgres",
                )
            store = PostgresStore(dsn, schema=schema)
        self.store = store
        self.payloads = JobPayloadCodec(codec or Codec())
        self._listen_lock = threading.Lock()
        self._listener: psycopg.Connection[Any] | None = None
        self._listen_pause = LISTEN_RETRY_MIN_SECS
        self._closed = threading.Event()

    def __repr__(self) -> str:
        return f"PostgresJobQueue({self.store!r})"

    def _shared(self, results: BaseResultBackend) -> PostgresResultBackend | None:
        """The result backend if it lives in this queue's schema, so writes can share a commit."""
        from nuvom.result_backends.postgres_backend import PostgresResultBackend

        if isinstance(results, PostgresResultBackend) and results.store is self.store:
            return results
        return None

    # -- producing -------------------------------------------------------
    def _queue_rows(self, jobs: Sequence[Job], now: float) -> list[tuple[object, ...]]:
        rows: list[tuple[object, ...]] = []
        for job in jobs:
            due = job.due_at if job.due_at is not None else now
            payload = self.payloads.encode(job)
            rows.append((job.id, job.queue, job.priority, due, due, job.attempts, now, payload))
        return rows

    def enqueue(self, job: Job) -> None:
        self.enqueue_many([job])

    def enqueue_many(self, jobs: Sequence[Job]) -> None:
        if not jobs:
            return
        rows = self._queue_rows(jobs, self.clock.time())
        if len(rows) == 1:
            self.store.execute_alone(sql.ENQUEUE_ONE, (*rows[0], self.store.channel))
            return
        with self.store.transaction() as cur:
            cur.executemany(sql.ENQUEUE, rows)
            cur.execute(sql.NOTIFY, (self.store.channel,))

    def submit(self, jobs: Sequence[Job], results: BaseResultBackend) -> None:
        shared = self._shared(results)
        if shared is None:
            super().submit(jobs, results)
            return
        if not jobs:
            return
        now = self.clock.time()
        rows = self._queue_rows(jobs, now)
        if len(rows) == 1:
            (record,) = shared.enqueued_rows(jobs, [rows[0][7]], now)  # type: ignore[list-item]
            self.store.execute_alone(sql.SUBMIT_ONE, (*rows[0], *record, self.store.channel))
            return
        with self.store.transaction() as cur:
            cur.executemany(sql.ENQUEUE, rows)
            shared.write_enqueued(cur, jobs, [row[7] for row in rows], now)  # type: ignore[misc]
            cur.execute(sql.NOTIFY, (self.store.channel,))

    # -- wake-ups --------------------------------------------------------
    def listen(self, worker_id: str) -> None:
        """Open the LISTEN connection now (called by the worker's waker thread)."""
        self._ensure_listener()

    def _ensure_listener(self) -> psycopg.Connection[Any]:
        from psycopg import sql as psql

        with self._listen_lock:
            if self._listener is not None and not self._listener.closed:
                return self._listener
            conn = self.store.connect(autocommit=True)
            try:
                conn.execute(psql.SQL("LISTEN {}").format(psql.Identifier(self.store.channel)))
            except Exception as exc:
                conn.close()
                raise self.store.explain(exc) from None
            self._listener = conn
            return conn

    def _drop_listener(self) -> None:
        with self._listen_lock:
            conn, self._listener = self._listener, None
        if conn is not None:
            try:
                conn.close()
            except Exception:  # already broken; nothing more to release
                log.debug("closing the LISTEN connection failed", exc_info=True)

    def wait_for_jobs(self, timeout: float) -> bool:
        """Block until a NOTIFY arrives or ``timeout`` passes; reconnects a dropped listener."""
        if self._closed.is_set():
            time.sleep(timeout)
            return False
        try:
            conn = self._ensure_listener()
        except NuvomError as exc:
            pause = min(timeout, self._listen_pause)
            log.warning("cannot LISTEN for new jobs (%s); retrying in %.1fs", exc, pause)
            self._listen_pause = min(self._listen_pause * 2, LISTEN_RETRY_MAX_SECS)
            time.sleep(pause)
            return False
        try:
            got = False
            for _ in conn.notifies(timeout=timeout, stop_after=1):
                got = True
            self._listen_pause = LISTEN_RETRY_MIN_SECS
            return got
        except Exception as exc:
            if self._closed.is_set():
                return False
            log.warning("the LISTEN connection dropped (%s); reconnecting", exc)
            self._drop_listener()
            return True  # something changed: let the worker poll once

    # -- consuming -------------------------------------------------------
    def _claim_rows(
        self,
        cur: psycopg.Cursor[Any],
        n: int,
        worker_id: str,
        lease_secs: float,
        queues: Sequence[str] | None,
        quarantined: list[tuple[str, str]] | None = None,
    ) -> list[ClaimedRow]:
        now = self.clock.time()
        params: dict[str, object] = {
            "now": now,
            "n": n,
            "worker": worker_id,
            "until": now + lease_secs,
        }
        statement = sql.CLAIM_ANY_QUEUE
        if queues:
            statement, params["queues"] = sql.CLAIM_FROM_QUEUES, list(queues)
        cur.execute(statement, params)
        rows = sorted(cur.fetchall(), key=_claim_order)
        claimed: list[ClaimedRow] = []
        for _, job_id, queue, priority, due_at, attempts, payload in rows:
            payload = bytes(payload)
            try:
                job = self.payloads.decode(
                    payload,
                    job_id=job_id,
                    queue=queue,
                    priority=priority,
                    attempts=attempts,
                    due_at=due_at,
                )
            except CorruptJob as exc:
                self._quarantine(cur, job_id, queue, payload, str(exc), now)
                if quarantined is not None:
                    quarantined.append((job_id, str(exc)))
                continue
            job.status, job.lease_owner, job.lease_until = (
                JobStatus.RUNNING,
                worker_id,
                now + lease_secs,
            )
            claimed.append((job, payload))
        return claimed

    def _quarantine(
        self,
        cur: psycopg.Cursor[Any],
        job_id: str,
        queue: str,
        payload: bytes,
        reason: str,
        now: float,
    ) -> None:
        log.warning("quarantined job %s: %s", job_id, reason)
        cur.execute(sql.QUARANTINE, (job_id, queue, payload, reason, now))
        cur.execute(sql.DELETE_QUEUED, (job_id,))
        cur.execute(sql.MARK_FAILED, (job_id, "CorruptJob", reason, now, now))

    def pop_batch(
        self,
        n: int,
        *,
        worker_id: str,
        lease_secs: float,
        queues: Sequence[str] | None = None,
    ) -> list[Job]:
        with self.store.transaction() as cur:
            return [job for job, _ in self._claim_rows(cur, n, worker_id, lease_secs, queues)]

    def claim(
        self,
        n: int,
        *,
        worker_id: str,
        lease_secs: float,
        results: BaseResultBackend,
        queues: Sequence[str] | None = None,
    ) -> list[Job]:
        shared = self._shared(results)
        if shared is None:
            return super().claim(
                n, worker_id=worker_id, lease_secs=lease_secs, results=results, queues=queues
            )
        return self._claim_and_start(shared, n, worker_id, lease_secs, queues)

    def pop_batch_reporting_corrupt(
        self,
        n: int,
        *,
        worker_id: str,
        lease_secs: float,
        queues: Sequence[str] | None = None,
    ) -> tuple[list[Job], list[tuple[str, str]]]:
        quarantined: list[tuple[str, str]] = []
        with self.store.transaction() as cur:
            rows = self._claim_rows(cur, n, worker_id, lease_secs, queues, quarantined)
        return [job for job, _ in rows], quarantined

    def _claim_and_start(
        self,
        shared: PostgresResultBackend,
        n: int,
        worker_id: str,
        lease_secs: float,
        queues: Sequence[str] | None,
    ) -> list[Job]:
        """Claim and mark running in one statement: one round trip on the idle path.

        A job without a record yet gets its full RUNNING record, and a corrupt
        payload is quarantined, in a second transaction (both are rare).
        """
        now = self.clock.time()
        params: dict[str, object] = {
            "now": now,
            "n": n,
            "worker": worker_id,
            "until": now + lease_secs,
            "started": now,
        }
        statement = sql.CLAIM_AND_START_ANY_QUEUE
        if queues:
            statement, params["queues"] = sql.CLAIM_AND_START_FROM_QUEUES, list(queues)
        rows = sorted(self.store.execute_alone(statement, params), key=_claim_order)
        claimed: list[Job] = []
        unrecorded: list[ClaimedRow] = []
        corrupt: list[tuple[str, str, bytes, str]] = []
        for _, job_id, queue, priority, due_at, attempts, payload, recorded in rows:
            payload = bytes(payload)
            try:
                job = self.payloads.decode(
                    payload,
                    job_id=job_id,
                    queue=queue,
                    priority=priority,
                    attempts=attempts,
                    due_at=due_at,
                )
            except CorruptJob as exc:
                corrupt.append((job_id, queue, payload, str(exc)))
                continue
            job.status, job.lease_owner, job.lease_until = (
                JobStatus.RUNNING,
                worker_id,
                now + lease_secs,
            )
            claimed.append(job)
            if not recorded:
                unrecorded.append((job, payload))
        if unrecorded or corrupt:
            with self.store.transaction() as cur:
                if unrecorded:
                    shared.write_running(cur, unrecorded, worker_id, now)
                for job_id, queue, payload, reason in corrupt:
                    cur.execute(sql.UNCOUNT_ATTEMPT, {"id": job_id})
                    cur.execute(sql.UNCOUNT_START, {"id": job_id})
                    self._quarantine(cur, job_id, queue, payload, reason, now)
        return claimed

    def settle(self, outcomes: Sequence[Outcome], results: BaseResultBackend) -> None:
        shared = self._shared(results)
        if shared is None:
            super().settle(outcomes, results)
            return
        with self.store.transaction() as cur:
            shared.write_outcomes(cur, outcomes, self.clock.time())
            self._ack_or_nack(cur, outcomes)

    def _ack_or_nack(self, cur: psycopg.Cursor[Any], outcomes: Sequence[Outcome]) -> None:
        batches: dict[str, list[tuple[object, ...]]] = {}
        retried = False
        for outcome in outcomes:
            job_id, owner, retry_at = outcome.job.id, outcome.worker_id, outcome.retry_at
            params: tuple[object, ...]
            if outcome.status is JobStatus.RETRYING and retry_at is not None:
                retried = True
                if owner is None:
                    statement, params = sql.NACK_ANY, (retry_at, retry_at, job_id)
                else:
                    statement, params = sql.NACK, (retry_at, retry_at, job_id, owner)
            elif owner is None:
                statement, params = sql.ACK_ANY, (job_id,)
            else:
                statement, params = sql.ACK, (job_id, owner)
            batches.setdefault(statement, []).append(params)
        for statement, rows in batches.items():
            cur.executemany(statement, rows)
        if retried:
            cur.execute(sql.NOTIFY, (self.store.channel,))

    def ack(self, job_id: str, *, worker_id: str | None = None) -> None:
        with self.store.transaction() as cur:
            if worker_id is None:
                cur.execute(sql.ACK_ANY, (job_id,))
            else:
                cur.execute(sql.ACK, (job_id, worker_id))

    def nack(self, job_id: str, *, retry_at: float, worker_id: str | None = None) -> None:
        with self.store.transaction() as cur:
            if worker_id is None:
                cur.execute(sql.NACK_ANY, (retry_at, retry_at, job_id))
            else:
                cur.execute(sql.NACK, (retry_at, retry_at, job_id, worker_id))
            cur.execute(sql.NOTIFY, (self.store.channel,))

    def release(self, job_ids: Sequence[str], *, worker_id: str) -> None:
        if not job_ids:
            return
        now = self.clock.time()
        with self.store.transaction() as cur:
            cur.executemany(sql.RELEASE, [(now, job_id, worker_id) for job_id in job_ids])
            cur.execute(sql.NOTIFY, (self.store.channel,))

    def heartbeat(self, job_ids: Sequence[str], *, worker_id: str, lease_secs: float) -> list[str]:
        if not job_ids:
            return []
        until = self.clock.time() + lease_secs
        with self.store.transaction() as cur:
            cur.execute(sql.HEARTBEAT, (until, list(job_ids), worker_id))
            kept = {row[0] for row in cur.fetchall()}
        return [job_id for job_id in job_ids if job_id in kept]

    def requeue_expired(self) -> int:
        with self.store.transaction() as cur:
            cur.execute(sql.REQUEUE_EXPIRED, (self.clock.time(),))
            return len(cur.fetchall())

    def qsize(self, queue: str | None = None) -> int:
        if queue is None:
            return int(self.store.read(sql.QSIZE)[0][0])
        return int(self.store.read(sql.QSIZE_OF, (queue,))[0][0])

    def clear(self) -> int:
        with self.store.transaction() as cur:
            cur.execute(sql.CLEAR)
            return len(cur.fetchall())

    def cancel(self, job_id: str) -> bool:
        with self.store.transaction() as cur:
            cur.execute(sql.CANCEL, (job_id,))
            return cur.fetchone() is not None

    def cancel_job(self, job_id: str, results: BaseResultBackend) -> bool:
        shared = self._shared(results)
        if shared is None:
            return super().cancel_job(job_id, results)
        now = self.clock.time()
        with self.store.transaction() as cur:
            cur.execute(sql.CANCEL, (job_id,))
            if cur.fetchone() is None:
                return False
            cur.execute(sql.MARK_CANCELLED, (job_id, now, now))
        return True

    def waiting_jobs(self) -> list[Job]:
        """Every job not currently claimed, in claim order (for ``nuvom migrate-queue``)."""
        jobs = []
        for job_id, queue, priority, due_at, attempts, payload in self.store.read(sql.WAITING_JOBS):
            try:
                jobs.append(
                    self.payloads.decode(
                        bytes(payload),
                        job_id=job_id,
                        queue=queue,
                        priority=priority,
                        attempts=attempts,
                        due_at=due_at,
                    )
                )
            except CorruptJob as exc:
                log.warning("skipping job %s: %s", job_id, exc)
        return jobs

    def stats(self) -> dict[str, int]:
        pending, scheduled, running, expired = self.store.read(
            sql.STATS, {"now": self.clock.time()}
        )[0]
        totals = {
            "pending": int(pending),
            "scheduled": int(scheduled),
            "running": int(running),
            "expired": int(expired),
        }
        totals["waiting"] = totals["pending"] + totals["scheduled"]
        totals["quarantined"] = int(self.store.read(sql.DEAD_COUNT)[0][0])
        return totals

    def close(self) -> None:
        self._closed.set()
        self._drop_listener()
        if self._owns_store:
            self.store.close()
