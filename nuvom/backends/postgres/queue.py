"""The PostgreSQL queue: many worker hosts on one queue, with ``FOR UPDATE SKIP LOCKED`` claims.

``LISTEN/NOTIFY`` wakes idle workers at once; polling stays as the safety net.
The steps named ``insert``, ``take``, ``finish`` and ``remove_waiting`` run on
a cursor inside a transaction their caller opened: this queue's own methods,
or the joint writer (``joint.py``) that commits them with the results' steps.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from nuvom.backends.common import (
    Defaults,
    QuarantiningQueue,
    claim_order,
    claimed_batch,
    decode_claimed,
    decode_waiting,
    owned_store,
    queue_rows,
    retries,
    settle_batches,
    stats_rows,
)
from nuvom.backends.contract import Claimed, QueueStats
from nuvom.backends.postgres import sql
from nuvom.backends.postgres.store import PostgresStore, require_dsn
from nuvom.errors import NuvomError
from nuvom.job import Job
from nuvom.records import JobPayloadCodec, StoredJob

if TYPE_CHECKING:
    import psycopg

    from nuvom.clock import Clock
    from nuvom.records import Outcome
    from nuvom.serialization import Codec

log = logging.getLogger("nuvom.postgres")

LISTEN_RETRY_MIN_SECS = 0.1  # first pause before reconnecting a dropped LISTEN connection
LISTEN_RETRY_MAX_SECS = 5.0  # longest pause between reconnect attempts

Taken = tuple[list[tuple[Job, StoredJob]], list[tuple[StoredJob, str]]]


def stored_rows(rows: Sequence[Sequence[Any]]) -> list[StoredJob]:
    """Claimed rows (seq, id, queue, priority, due_at, attempts, payload, ...) in claim order."""
    ordered = sorted(
        (
            (StoredJob(row[1], row[2], row[3], row[4], row[5], bytes(row[6])), row[0])
            for row in rows
        ),
        key=lambda pair: claim_order(*pair),
    )
    return [row for row, _ in ordered]


class PostgresJobQueue(QuarantiningQueue):
    name = "postgres"
    shared_across_processes = True
    pushes_wakeups = True

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
        super().__init__(clock=defaults.clock(clock))
        self.store, self._owns_store = owned_store(
            store,
            lambda: PostgresStore(
                dsn or require_dsn(defaults.settings),
                schema=schema or defaults.settings.postgres_schema,
            ),
        )
        self.payloads = JobPayloadCodec(defaults.codec(codec))
        self._listen_lock = threading.Lock()
        self._listener: psycopg.Connection[Any] | None = None
        self._listen_pause = LISTEN_RETRY_MIN_SECS
        self._closed = threading.Event()

    def __repr__(self) -> str:
        return f"PostgresJobQueue({self.store!r})"

    # -- steps on a cursor inside a caller's transaction ------------------------
    def insert(self, cur: psycopg.Cursor[Any], rows: Sequence[tuple[object, ...]]) -> None:
        """Write ``queue_rows`` and NOTIFY the listening workers (delivered at commit)."""
        cur.executemany(sql.ENQUEUE, rows)
        cur.execute(sql.NOTIFY, (self.store.channel,))

    def claim_params(
        self, n: int, worker_id: str, lease_secs: float, queues: Sequence[str] | None
    ) -> dict[str, object]:
        now = self.clock.time()
        params: dict[str, object] = {
            "now": now,
            "n": n,
            "worker": worker_id,
            "until": now + lease_secs,
            "started": now,
        }
        if queues:
            params["queues"] = list(queues)
        return params

    def take(
        self,
        cur: psycopg.Cursor[Any],
        n: int,
        worker_id: str,
        lease_secs: float,
        queues: Sequence[str] | None,
    ) -> Taken:
        """Claim up to ``n`` rows; undecodable ones are moved to ``nuvom_dead`` and listed apart."""
        params = self.claim_params(n, worker_id, lease_secs, queues)
        cur.execute(sql.CLAIM_FROM_QUEUES if queues else sql.CLAIM_ANY_QUEUE, params)
        claimed, corrupt = decode_claimed(
            self.payloads,
            stored_rows(cur.fetchall()),
            worker_id=worker_id,
            lease_until=params["until"],  # type: ignore[arg-type]
        )
        self.quarantine(cur, corrupt)
        return claimed, corrupt

    def quarantine(
        self, cur: psycopg.Cursor[Any], corrupt: Sequence[tuple[StoredJob, str]]
    ) -> None:
        now = self.clock.time()
        for row, reason in corrupt:
            cur.execute(sql.QUARANTINE, (row.id, row.queue, row.payload, reason, now))
            cur.execute(sql.DELETE_QUEUED, (row.id,))

    def finish(self, cur: psycopg.Cursor[Any], outcomes: Sequence[Outcome]) -> None:
        """Ack finished jobs and nack retries; NOTIFY when a job went back to the queue."""
        for statement, rows in settle_batches(outcomes, sql).items():
            cur.executemany(statement, rows)
        if retries(outcomes):
            cur.execute(sql.NOTIFY, (self.store.channel,))

    def remove_waiting(self, cur: psycopg.Cursor[Any], job_id: str) -> bool:
        cur.execute(sql.CANCEL, (job_id,))
        return cur.fetchone() is not None

    # -- producing -------------------------------------------------------
    def enqueue(self, job: Job) -> None:
        self.enqueue_many([job])

    def enqueue_many(self, jobs: Sequence[Job]) -> None:
        if not jobs:
            return
        rows = queue_rows(jobs, self.payloads, self.clock.time())
        if len(rows) == 1:  # one statement outside a transaction: one round trip
            self.store.execute_alone(sql.ENQUEUE_ONE, (*rows[0], self.store.channel))
            return
        with self.store.transaction() as cur:
            self.insert(cur, rows)

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
    def claim_batch(
        self,
        n: int,
        *,
        worker_id: str,
        lease_secs: float,
        queues: Sequence[str] | None = None,
    ) -> Claimed:
        with self.store.transaction() as cur:
            return claimed_batch(*self.take(cur, n, worker_id, lease_secs, queues))

    def ack_outcomes(self, outcomes: Sequence[Outcome]) -> None:
        with self.store.transaction() as cur:
            self.finish(cur, outcomes)

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

    # -- inspecting and removing -----------------------------------------
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
            return self.remove_waiting(cur, job_id)

    def waiting_jobs(self) -> list[Job]:
        rows = self.store.read(sql.WAITING_JOBS)
        return decode_waiting(
            self.payloads, (StoredJob(r[0], r[1], r[2], r[3], r[4], bytes(r[5])) for r in rows)
        )

    def queue_stats(self) -> list[QueueStats]:
        params = {"now": self.clock.time()}
        with self.store.transaction() as cur:
            counts = cur.execute(sql.STATS, params).fetchall()
            owners = cur.execute(sql.LEASE_OWNERS, params).fetchall()
            dead = cur.execute(sql.DEAD_BY_QUEUE).fetchall()
        return stats_rows(counts, owners, dead)

    def close(self) -> None:
        self._closed.set()
        self._drop_listener()
        if self._owns_store:
            self.store.close()
