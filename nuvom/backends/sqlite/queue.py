"""The default queue: jobs in an embedded SQLite file, safe across processes.

Claims are ``BEGIN IMMEDIATE`` + ``UPDATE … RETURNING`` in batches. The steps
named ``insert``, ``take``, ``finish`` and ``remove_waiting`` run inside a
transaction their caller opened: this queue's own methods, or the joint writer
(``joint.py``) that commits them with the result backend's in one transaction.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

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
from nuvom.backends.sqlite import sql
from nuvom.backends.sqlite.store import SQLiteStore
from nuvom.backends.sqlite.wakeup import WakeupSender, WakeupSocket
from nuvom.job import Job
from nuvom.records import JobPayloadCodec, StoredJob

if TYPE_CHECKING:
    from nuvom.clock import Clock
    from nuvom.records import Outcome, WorkerInfo
    from nuvom.serialization import Codec

log = logging.getLogger("nuvom.sqlite")

LISTENER_TTL_SECS = 120.0  # a listener not refreshed for this long is presumed gone
LISTENER_CACHE_SECS = 1.0  # producers re-read the listener ports at most this often
LOST_WORKER_TTL_SECS = 24 * 3600.0  # a lost worker stays listed this long, then is forgotten

Taken = tuple[list[tuple[Job, StoredJob]], list[tuple[StoredJob, str]]]


class SQLiteJobQueue(QuarantiningQueue):
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
        clock: Clock | None = None,
        synchronous: str | None = None,
        busy_timeout_secs: float | None = None,
    ) -> None:
        defaults = Defaults()
        super().__init__(clock=defaults.clock(clock))
        self.store, self._owns_store = owned_store(
            store,
            lambda: SQLiteStore.from_settings(
                path or defaults.settings.effective_sqlite_queue_path,
                defaults.settings,
                synchronous=synchronous,
                busy_timeout_secs=busy_timeout_secs,
            ),
        )
        self.payloads = JobPayloadCodec(defaults.codec(codec))
        self._sender = WakeupSender()
        self._ports: list[int] = []
        self._ports_read_at = float("-inf")
        self._listener: WakeupSocket | None = None
        self._listener_id: str | None = None
        self._listener_lock = threading.Lock()

    def __repr__(self) -> str:
        return f"SQLiteJobQueue({str(self.store.path)!r})"

    # -- steps inside a caller's transaction ----------------------------------
    def insert(self, conn: sqlite3.Connection, rows: Sequence[tuple[object, ...]]) -> None:
        """Write ``queue_rows`` (call ``nudge`` once committed)."""
        conn.executemany(sql.ENQUEUE, rows)
        self._read_listener_ports(conn)

    def take(
        self,
        conn: sqlite3.Connection,
        n: int,
        worker_id: str,
        lease_secs: float,
        queues: Sequence[str] | None,
    ) -> Taken:
        """Claim up to ``n`` rows; undecodable ones are moved to ``nuvom_dead`` and listed apart."""
        now = self.clock.time()
        if queues:
            statement = sql.claim_from_queues(len(queues))
            params: tuple[object, ...] = (worker_id, now + lease_secs, now, *queues, n)
        else:
            statement, params = sql.CLAIM_ANY_QUEUE, (worker_id, now + lease_secs, now, n)
        rows = sorted(
            ((StoredJob(*row[1:]), row[0]) for row in conn.execute(statement, params)),
            key=lambda pair: claim_order(*pair),
        )
        claimed, corrupt = decode_claimed(
            self.payloads,
            (row for row, _ in rows),
            worker_id=worker_id,
            lease_until=now + lease_secs,
        )
        for row, reason in corrupt:
            conn.execute(sql.QUARANTINE, (row.id, row.queue, row.payload, reason, now))
            conn.execute(sql.DELETE_QUEUED, (row.id,))
        return claimed, corrupt

    def finish(self, conn: sqlite3.Connection, outcomes: Sequence[Outcome]) -> bool:
        """Ack finished jobs and nack retries, one ``executemany`` per statement.

        True when a job went back to the queue: ``nudge`` the idle workers once committed.
        """
        for statement, rows in settle_batches(outcomes, sql).items():
            conn.executemany(statement, rows)
        if not retries(outcomes):
            return False
        self._read_listener_ports(conn)
        return True

    def remove_waiting(self, conn: sqlite3.Connection, job_id: str) -> tuple[object, ...] | None:
        """Delete a waiting job; its (queue, priority, payload, due_at), or None if not waiting."""
        row = conn.execute(sql.CANCEL_RETURNING, (job_id,)).fetchone()
        return None if row is None else tuple(row)

    # -- producing -------------------------------------------------------
    def enqueue(self, job: Job) -> None:
        self.enqueue_many([job])

    def enqueue_many(self, jobs: Sequence[Job]) -> None:
        if not jobs:
            return
        rows = queue_rows(jobs, self.payloads, self.clock.time())
        with self.store.write() as conn:
            self.insert(conn, rows)
        self.nudge()

    # -- wake-ups --------------------------------------------------------
    def _read_listener_ports(self, conn: sqlite3.Connection) -> None:
        now = self.clock.time()
        if now - self._ports_read_at < LISTENER_CACHE_SECS:
            return
        rows = conn.execute(sql.LIVE_LISTENER_PORTS, (now - LISTENER_TTL_SECS,)).fetchall()
        self._ports = [int(r[0]) for r in rows]
        self._ports_read_at = now

    def nudge(self) -> None:
        """Wake the idle workers listening on this file (after a commit that queued jobs)."""
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
    def claim_batch(
        self,
        n: int,
        *,
        worker_id: str,
        lease_secs: float,
        queues: Sequence[str] | None = None,
    ) -> Claimed:
        with self.store.write() as conn:
            return claimed_batch(*self.take(conn, n, worker_id, lease_secs, queues))

    def ack_outcomes(self, outcomes: Sequence[Outcome]) -> None:
        with self.store.write() as conn:
            requeued = self.finish(conn, outcomes)
        if requeued:
            self.nudge()

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
        self.nudge()

    def release(self, job_ids: Sequence[str], *, worker_id: str) -> None:
        now = self.clock.time()
        with self.store.write() as conn:
            conn.executemany(sql.RELEASE, [(now, job_id, worker_id) for job_id in job_ids])
            self._read_listener_ports(conn)
        self.nudge()

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

    # -- inspecting and removing -----------------------------------------
    def qsize(self, queue: str | None = None) -> int:
        if queue is None:
            return int(self.store.read(sql.QSIZE)[0][0])
        return int(self.store.read(sql.QSIZE_OF, (queue,))[0][0])

    def clear(self) -> int:
        with self.store.write() as conn:
            return conn.execute(sql.CLEAR).rowcount

    def cancel(self, job_id: str) -> bool:
        with self.store.write() as conn:
            return self.remove_waiting(conn, job_id) is not None

    def waiting_jobs(self) -> list[Job]:
        return decode_waiting(
            self.payloads, (StoredJob(*r) for r in self.store.read(sql.WAITING_JOBS))
        )

    def queue_stats(self) -> list[QueueStats]:
        now = self.clock.time()
        return stats_rows(
            self.store.read(sql.STATS, {"now": now}),  # type: ignore[arg-type]
            self.store.read(sql.LEASE_OWNERS, (now,)),
            self.store.read(sql.DEAD_BY_QUEUE),
        )

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
