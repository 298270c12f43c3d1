"""The default queue: jobs in an embedded SQLite file, safe across processes.

Claims are ``BEGIN IMMEDIATE`` + ``UPDATE … RETURNING`` in batches; the steps
shared with PostgreSQL are in ``nuvom/backends/sqlbase.py``. Idle workers
listen on a loopback UDP port (``wakeup.py``) that producers nudge.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from nuvom.backends.common import decode_claimed
from nuvom.backends.contract import Queues
from nuvom.backends.sqlbase import (
    LimitState,
    Row,
    SQLJobQueue,
    Taken,
    bucket_state,
    in_claim_order,
    stored_job,
)
from nuvom.backends.sqlite import sql
from nuvom.backends.sqlite.store import SQLiteBackend
from nuvom.backends.sqlite.wakeup import WakeupSender, WakeupSocket
from nuvom.limits import concurrency_tag, rate_tag
from nuvom.records import Outcome, StoredJob

if TYPE_CHECKING:
    from nuvom.records import WorkerInfo

log = logging.getLogger("nuvom.sqlite")

LISTENER_TTL_SECS = 120.0  # a listener not refreshed for this long is presumed gone
LISTENER_CACHE_SECS = 1.0  # producers re-read the listener ports at most this often
LOST_WORKER_TTL_SECS = 24 * 3600.0  # a lost worker stays listed this long, then is forgotten


class SQLiteJobQueue(SQLiteBackend, SQLJobQueue):
    name = "sqlite"
    shared_across_processes = True
    pushes_wakeups = True
    records_workers = True
    path_setting = "effective_sqlite_queue_path"

    def ready(self) -> None:
        self._sender = WakeupSender()
        self._ports: list[int] = []
        self._ports_read_at = float("-inf")
        self._listener: WakeupSocket | None = None
        self._listener_id: str | None = None
        self._listener_lock = threading.Lock()

    def take(
        self,
        conn: sqlite3.Connection,
        n: int,
        worker_id: str,
        lease_secs: float,
        queues: Queues,
    ) -> Taken:
        """The claim statement takes the unlimited jobs among the first ``n``; one that took
        fewer is followed by ``take_limited`` only when a limited job is due (one look at an
        index of limited jobs: an idle poll does not read the queue twice)."""
        now = self.clock.time()
        refused = self.refused_by(worker_id)
        if queues or refused:
            statement = sql.claim_from_queues(len(queues or ()), len(refused))
            params: tuple[object, ...] = (
                worker_id, now + lease_secs, now, *(queues or ()), *sorted(refused), n,
            )  # fmt: skip
        else:
            statement, params = sql.CLAIM_ANY_QUEUE, (worker_id, now + lease_secs, now, n)
        rows = [(StoredJob(*row[1:]), row[0]) for row in conn.execute(statement, params)]
        claimed, corrupt = decode_claimed(
            self.payloads, rows, worker_id=worker_id, lease_until=now + lease_secs
        )
        self.quarantine(conn, corrupt)
        if len(claimed) >= n or conn.execute(sql.LIMITED_DUE, (now,)).fetchone() is None:
            return claimed, corrupt
        more = self.take_limited(conn, n - len(claimed), worker_id, lease_secs, queues, now)
        claimed, bad = in_claim_order(claimed, {row.id: seq for row, seq in rows}, more)
        return claimed, corrupt + bad

    def candidates(
        self,
        conn: sqlite3.Connection,
        n: int,
        queues: Queues,
        now: float,
        skip: Sequence[int],
        refused: frozenset[str],
    ) -> list[tuple[int, StoredJob]]:
        """(``skip`` is always empty here: no other writer decides while this one does.)"""
        statement = sql.candidates(len(queues or ()), len(refused))
        rows = conn.execute(statement, (now, *(queues or ()), *sorted(refused), n))
        return [(row[0], stored_job(row[1:])) for row in rows]

    def limit_state(
        self,
        conn: sqlite3.Connection,
        rate_keys: Sequence[str],
        conc_keys: Sequence[str],
        now: float,
    ) -> LimitState:
        """Read in the claim's ``BEGIN IMMEDIATE``: no other writer runs until it commits."""
        buckets = {}
        for key in rate_keys:
            row = conn.execute(sql.BUCKET, (key,)).fetchone()
            if row is not None and (state := bucket_state(key, *row)) is not None:
                buckets[key] = state
        slots = {}
        for key in conc_keys:
            taken, first_end = conn.execute(sql.SLOTS, (key, now)).fetchone()
            slots[key] = (int(taken), first_end)
        tags = [rate_tag(key) for key in rate_keys] + [concurrency_tag(key) for key in conc_keys]
        return LimitState(set(tags), buckets, slots)

    def before_settle(
        self, conn: sqlite3.Connection, outcomes: Sequence[Outcome], now: float
    ) -> bool:
        """While no job has a concurrency key and no unique key is kept, nothing to free: a
        settle costs one indexed look more (writes are serialized: none appears meanwhile)."""
        if not conn.execute(sql.ANY_FLOW_STATE).fetchone()[0]:
            return False
        return super().before_settle(conn, outcomes, now)

    def changed(self, conn: sqlite3.Connection, statement: str, rows: Sequence[Any]) -> bool:
        before = conn.total_changes
        conn.executemany(statement, rows)
        return conn.total_changes != before

    def acked(self, conn: sqlite3.Connection, statement: str, rows: Sequence[Any]) -> list[Row]:
        """While no job waits for another, the plain ack in one ``executemany``, which reads
        nothing back (writes are serialized: no edge appears before this transaction ends)."""
        if conn.execute(sql.ANY_EDGE).fetchone() is None:
            conn.executemany(statement, rows)
            return []
        return self.returned(conn, sql.ACK_READING[statement], rows)

    # -- wake-ups --------------------------------------------------------
    def requeued(self, conn: sqlite3.Connection) -> None:
        """Read which workers to nudge once this transaction commits (cached for a second)."""
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
        with self.store.transaction() as conn:
            conn.execute(sql.REGISTER_LISTENER, (worker_id, self._listener.port, self.clock.time()))
            conn.execute(sql.FORGET_STALE_LISTENERS, (self.clock.time() - LISTENER_TTL_SECS,))

    def wait_for_jobs(self, timeout: float) -> bool:
        listener = self._listener
        if listener is None:
            return super().wait_for_jobs(timeout)
        return listener.wait(timeout)

    def heartbeat(self, job_ids: Sequence[str], *, worker_id: str, lease_secs: float) -> list[str]:
        now = self.clock.time()
        until = now + lease_secs
        held: list[str] = []
        with self.store.transaction() as conn:
            for job_id in job_ids:
                row = conn.execute(sql.HEARTBEAT, (until, job_id, worker_id)).fetchone()
                if row is not None:
                    held.append(row[0])
            if self._listener_id is not None:
                conn.execute(sql.TOUCH_LISTENER, (now, self._listener_id))
        return held

    # -- worker registry ---------------------------------------------------
    def register_worker(self, info: WorkerInfo) -> None:
        with self.store.transaction() as conn:
            conn.execute(
                sql.REGISTER_WORKER,
                (
                    info.id, info.host, info.pid, info.pool, info.concurrency, info.inflight,
                    info.heartbeat_at, info.started_at, info.lease_secs,
                ),
            )  # fmt: skip
            conn.execute(sql.FORGET_LOST_WORKERS, (self.clock.time() - LOST_WORKER_TTL_SECS,))

    def heartbeat_worker(self, worker_id: str, *, inflight: int, at: float) -> None:
        with self.store.transaction() as conn:
            conn.execute(sql.HEARTBEAT_WORKER, (inflight, at, worker_id))

    def unregister_worker(self, worker_id: str) -> None:
        with self.store.transaction() as conn:
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
                with self.store.transaction() as conn:
                    conn.execute(sql.UNREGISTER_LISTENER, (listener_id,))
            except Exception:  # closing must not fail because the file went away
                log.debug("could not unregister listener %s", listener_id, exc_info=True)
        self._sender.close()
        super().close()
