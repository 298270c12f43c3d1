"""The default queue: jobs in an embedded SQLite file, safe across processes.

Claims are ``BEGIN IMMEDIATE`` + ``UPDATE … RETURNING`` in batches. When the
result backend uses the same file, enqueue+record, claim+mark-running and
outcome+ack each commit in one transaction.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from nuvom.clock import SYSTEM_CLOCK, Clock
from nuvom.errors import CorruptJob
from nuvom.job import Job, JobStatus
from nuvom.queue_backends import sqlite_sql as sql
from nuvom.queue_backends.base import BaseJobQueue, QueueStats
from nuvom.queue_backends.sqlite_store import SQLiteStore
from nuvom.queue_backends.wakeup import WakeupSender, WakeupSocket
from nuvom.records import JobPayloadCodec
from nuvom.serialization import Codec

if TYPE_CHECKING:
    from nuvom.records import Outcome, WorkerInfo
    from nuvom.result_backends.base import BaseResultBackend
    from nuvom.result_backends.sqlite_backend import SQLiteResultBackend

log = logging.getLogger("nuvom.sqlite")

LISTENER_TTL_SECS = 120.0  # a listener not refreshed for this long is presumed gone
LISTENER_CACHE_SECS = 1.0  # producers re-read the listener ports at most this often
LOST_WORKER_TTL_SECS = 24 * 3600.0  # a lost worker stays listed this long, then is forgotten
_SQL_VARIABLE_CHUNK = 500  # ids per statement, well under SQLite's bound-parameter limit


def _claim_order(row: tuple[int, str, str, int, float, int, bytes]) -> tuple[int, float, int]:
    """RETURNING gives rows in no set order; restore priority, due time, FIFO."""
    seq, _, _, priority, due_at, _, _ = row
    return (-priority, due_at, seq)


class SQLiteJobQueue(BaseJobQueue):
    name = "sqlite"
    shared_across_processes = True
    pushes_wakeups = True
    records_workers = True

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
        super().__init__(clock=clock)
        self._owns_store = store is None
        if store is None:
            if path is None:
                raise TypeError("SQLiteJobQueue needs a path or a store")
            store = SQLiteStore(path, synchronous=synchronous, busy_timeout_secs=busy_timeout_secs)
        self.store = store
        self.payloads = JobPayloadCodec(codec or Codec())
        self._sender = WakeupSender()
        self._ports: list[int] = []
        self._ports_read_at = float("-inf")
        self._listener: WakeupSocket | None = None
        self._listener_id: str | None = None
        self._listener_lock = threading.Lock()

    def __repr__(self) -> str:
        return f"SQLiteJobQueue({str(self.store.path)!r})"

    # -- producing -------------------------------------------------------
    def _queue_rows(self, jobs: Sequence[Job]) -> list[tuple[object, ...]]:
        now = self.clock.time()
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
        rows = self._queue_rows(jobs)
        with self.store.write() as conn:
            conn.executemany(sql.ENQUEUE, rows)
            self._read_listener_ports(conn)
        self._nudge()

    def submit(self, jobs: Sequence[Job], results: BaseResultBackend) -> None:
        shared = self._shared(results)
        if shared is None:
            super().submit(jobs, results)
            return
        if not jobs:
            return
        rows = self._queue_rows(jobs)
        now = self.clock.time()
        # One table written per job: the job's history row appears when it is
        # claimed, and until then reads find it in nuvom_queue.
        with self.store.write() as conn:
            conn.executemany(sql.ENQUEUE, rows)
            shared.reopen_enqueued(conn, jobs, now)
            self._read_listener_ports(conn)
        self._nudge()

    def _shared(self, results: BaseResultBackend) -> SQLiteResultBackend | None:
        """The result backend if it lives in this queue's store, so writes can share a commit."""
        from nuvom.result_backends.sqlite_backend import SQLiteResultBackend

        if isinstance(results, SQLiteResultBackend) and results.store is self.store:
            return results
        return None

    # -- wake-ups --------------------------------------------------------
    def _read_listener_ports(self, conn: sqlite3.Connection) -> None:
        now = self.clock.time()
        if now - self._ports_read_at < LISTENER_CACHE_SECS:
            return
        rows = conn.execute(sql.LIVE_LISTENER_PORTS, (now - LISTENER_TTL_SECS,)).fetchall()
        self._ports = [int(r[0]) for r in rows]
        self._ports_read_at = now

    def _nudge(self) -> None:
        self._sender.send(self._ports)

    def listen(self, worker_id: str) -> None:
        """Register this process to be nudged when jobs arrive (called by the worker)."""
        with self._listener_lock:
            if self._listener is not None:
                return
            self._listener = WakeupSocket()
            self._listener_id = worker_id
        with self.store.write() as conn:
            conn.execute(sql.REGISTER_LISTENER, (worker_id, self._listener.port, self.clock.time()))
            conn.execute(sql.FORGET_STALE_LISTENERS, (self.clock.time() - LISTENER_TTL_SECS,))

    def wait_for_jobs(self, timeout: float) -> bool:
        listener = self._listener
        if listener is None:
            return super().wait_for_jobs(timeout)
        return listener.wait(timeout)

    # -- consuming -------------------------------------------------------
    def _claim_rows(
        self,
        conn: sqlite3.Connection,
        n: int,
        worker_id: str,
        lease_secs: float,
        queues: Sequence[str] | None,
        quarantined: list[tuple[str, str]] | None = None,
    ) -> list[tuple[Job, bytes]]:
        """Claim rows; undecodable ones are quarantined and, if asked, listed as (id, reason)."""
        now = self.clock.time()
        if queues:
            statement = sql.claim_from_queues(len(queues))
            params: tuple[object, ...] = (worker_id, now + lease_secs, now, *queues, n)
        else:
            statement, params = sql.CLAIM_ANY_QUEUE, (worker_id, now + lease_secs, now, n)
        rows = sorted(conn.execute(statement, params), key=_claim_order)
        claimed: list[tuple[Job, bytes]] = []
        for _, job_id, queue, priority, due_at, attempts, payload in rows:
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
                self._quarantine(conn, job_id, queue, payload, str(exc), now)
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
        conn: sqlite3.Connection,
        job_id: str,
        queue: str,
        payload: bytes,
        reason: str,
        now: float,
    ) -> None:
        log.warning("quarantined job %s: %s", job_id, reason)
        conn.execute(sql.QUARANTINE, (job_id, queue, payload, reason, now))
        conn.execute(sql.DELETE_QUEUED, (job_id,))
        conn.execute(sql.MARK_FAILED, (job_id, "CorruptJob", reason, now, now))

    def pop_batch(
        self,
        n: int,
        *,
        worker_id: str,
        lease_secs: float,
        queues: Sequence[str] | None = None,
    ) -> list[Job]:
        with self.store.write() as conn:
            return [job for job, _ in self._claim_rows(conn, n, worker_id, lease_secs, queues)]

    def pop_batch_reporting_corrupt(
        self,
        n: int,
        *,
        worker_id: str,
        lease_secs: float,
        queues: Sequence[str] | None = None,
    ) -> tuple[list[Job], list[tuple[str, str]]]:
        quarantined: list[tuple[str, str]] = []
        with self.store.write() as conn:
            rows = self._claim_rows(conn, n, worker_id, lease_secs, queues, quarantined)
        return [job for job, _ in rows], quarantined

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
        with self.store.write() as conn:
            claimed = self._claim_rows(conn, n, worker_id, lease_secs, queues)
            if claimed:
                shared.write_running(conn, claimed, worker_id, self.clock.time())
        return [job for job, _ in claimed]

    def settle(self, outcomes: Sequence[Outcome], results: BaseResultBackend) -> None:
        shared = self._shared(results)
        if shared is None:
            super().settle(outcomes, results)
            return
        now = self.clock.time()
        with self.store.write() as conn:
            shared.write_outcomes(conn, outcomes, now)
            self._ack_or_nack(conn, outcomes)

    @staticmethod
    def _ack_or_nack(conn: sqlite3.Connection, outcomes: Sequence[Outcome]) -> None:
        """Ack finished jobs and nack retries, one ``executemany`` per statement."""
        batches: dict[str, list[tuple[object, ...]]] = {}
        for outcome in outcomes:
            job_id, owner, retry_at = outcome.job.id, outcome.worker_id, outcome.retry_at
            params: tuple[object, ...]
            if outcome.status is JobStatus.RETRYING and retry_at is not None:
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
            conn.executemany(statement, rows)

    def ack(self, job_id: str, *, worker_id: str | None = None) -> None:
        with self.store.write() as conn:
            if worker_id is None:
                conn.execute(sql.ACK_ANY, (job_id,))
            else:
                conn.execute(sql.ACK, (job_id, worker_id))

    def nack(self, job_id: str, *, retry_at: float, worker_id: str | None = None) -> None:
        with self.store.write() as conn:
            if worker_id is None:
                conn.execute(sql.NACK_ANY, (retry_at, retry_at, job_id))
            else:
                conn.execute(sql.NACK, (retry_at, retry_at, job_id, worker_id))
            self._read_listener_ports(conn)
        self._nudge()

    def release(self, job_ids: Sequence[str], *, worker_id: str) -> None:
        now = self.clock.time()
        with self.store.write() as conn:
            conn.executemany(sql.RELEASE, [(now, job_id, worker_id) for job_id in job_ids])
            self._read_listener_ports(conn)
        self._nudge()

    def heartbeat(self, job_ids: Sequence[str], *, worker_id: str, lease_secs: float) -> list[str]:
        now = self.clock.time()
        until = now + lease_secs
        held: list[str] = []
        with self.store.write() as conn:
            for job_id in job_ids:
                row = conn.execute(sql.HEARTBEAT, (until, job_id, worker_id)).fetchone()
                if row is not None:
                    held.append(row[0])
            if self._listener_id is not None:
                conn.execute(sql.TOUCH_LISTENER, (now, self._listener_id))
        return held

    def requeue_expired(self) -> int:
        with self.store.write() as conn:
            return conn.execute(sql.REQUEUE_EXPIRED, (self.clock.time(),)).rowcount

    def qsize(self, queue: str | None = None) -> int:
        if queue is None:
            return int(self.store.read(sql.QSIZE)[0][0])
        return int(self.store.read(sql.QSIZE_OF, (queue,))[0][0])

    def clear(self) -> int:
        with self.store.write() as conn:
            return conn.execute(sql.CLEAR).rowcount

    def cancel(self, job_id: str) -> bool:
        with self.store.write() as conn:
            return conn.execute(sql.CANCEL, (job_id,)).rowcount > 0

    def cancel_job(self, job_id: str, results: BaseResultBackend) -> bool:
        shared = self._shared(results)
        if shared is None:
            return super().cancel_job(job_id, results)
        now = self.clock.time()
        with self.store.write() as conn:
            removed = conn.execute(sql.CANCEL_RETURNING, (job_id,)).fetchone()
            if removed is None:
                return False
            queue, priority, payload, due_at = removed
            conn.execute(
                sql.MARK_QUEUED_CANCELLED, (job_id, queue, priority, payload, due_at, now, now)
            )
        return True

    def stats(self) -> dict[str, int]:
        totals = {"pending": 0, "scheduled": 0, "running": 0, "expired": 0}
        rows = self.store.read(sql.STATS, {"now": self.clock.time()})  # type: ignore[arg-type]
        for _, pending, scheduled, running, expired in rows:
            totals["pending"] += pending or 0
            totals["scheduled"] += scheduled or 0
            totals["running"] += running or 0
            totals["expired"] += expired or 0
        totals["waiting"] = totals["pending"] + totals["scheduled"]
        totals["quarantined"] = int(self.store.read(sql.DEAD_COUNT)[0][0])
        return totals

    def queue_stats(self) -> list[QueueStats]:
        now = self.clock.time()
        rows: dict[str, QueueStats] = {}
        for queue, pending, scheduled, running, expired in self.store.read(
            sql.STATS,
            {"now": now},  # type: ignore[arg-type]
        ):
            rows[queue] = QueueStats(
                queue, pending or 0, scheduled or 0, running or 0, expired or 0
            )
        for queue, owner, count in self.store.read(sql.LEASE_OWNERS, (now,)):
            rows.setdefault(queue, QueueStats(queue)).lease_owners[owner] = count
        for queue, count in self.store.read(sql.DEAD_BY_QUEUE):
            rows.setdefault(queue, QueueStats(queue)).quarantined = count
        return [rows[name] for name in sorted(rows)]

    # -- worker registry ---------------------------------------------------
    def register_worker(self, info: WorkerInfo) -> None:
        with self.store.write() as conn:
            conn.execute(
                sql.REGISTER_WORKER,
                (
                    info.id, info.host, info.pid, info.pool, info.concurrency, info.inflight,
                    info.heartbeat_at, info.started_at, info.lease_secs,
                ),
            )  # fmt: skip
            conn.execute(sql.FORGET_LOST_WORKERS, (self.clock.time() - LOST_WORKER_TTL_SECS,))

    def heartbeat_worker(self, worker_id: str, *, inflight: int, at: float) -> None:
        with self.store.write() as conn:
            conn.execute(sql.HEARTBEAT_WORKER, (inflight, at, worker_id))

    def unregister_worker(self, worker_id: str) -> None:
        with self.store.write() as conn:
            conn.execute(sql.UNREGISTER_WORKER, (worker_id,))

    def list_workers(self) -> list[WorkerInfo]:
        from nuvom.records import WorkerInfo

        return [WorkerInfo(*row) for row in self.store.read(sql.LIST_WORKERS)]

    def close(self) -> None:
        with self._listener_lock:
            listener, self._listener = self._listener, None
            listener_id, self._listener_id = self._listener_id, None
        if listener is not None:
            listener.close()
            try:
                with self.store.write() as conn:
                    conn.execute(sql.UNREGISTER_LISTENER, (listener_id,))
            except Exception:  # closing must not fail because the file went away
                log.debug("could not unregister listener %s", listener_id, exc_info=True)
        self._sender.close()
        if self._owns_store:
            self.store.close()
