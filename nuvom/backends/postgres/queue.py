"""The PostgreSQL queue: many worker hosts on one queue, with ``FOR UPDATE SKIP LOCKED`` claims.

``LISTEN/NOTIFY`` wakes idle workers at once; polling stays as the safety net.
The steps shared with SQLite are in ``nuvom/backends/sqlbase.py``.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from nuvom.backends.common import decode_claimed, queue_rows
from nuvom.backends.contract import Queues
from nuvom.backends.postgres import sql
from nuvom.backends.postgres.store import PostgresBackend
from nuvom.backends.sqlbase import SQLJobQueue, Taken, stored_job
from nuvom.errors import NuvomError
from nuvom.job import Job
from nuvom.records import StoredJob

if TYPE_CHECKING:
    import psycopg


log = logging.getLogger("nuvom.postgres")

LISTEN_RETRY_MIN_SECS = 0.1  # first pause before reconnecting a dropped LISTEN connection
LISTEN_RETRY_MAX_SECS = 5.0  # longest pause between reconnect attempts


def stored_rows(rows: Sequence[Sequence[Any]]) -> list[tuple[StoredJob, int]]:
    """Claimed rows (seq, id, queue, priority, due_at, attempts, payload, ...) with their seq."""
    return [(stored_job(row[1:7]), row[0]) for row in rows]


class PostgresJobQueue(PostgresBackend, SQLJobQueue):
    name = "postgres"
    shared_across_processes = True
    pushes_wakeups = True

    def ready(self) -> None:
        self._listen_lock = threading.Lock()
        self._listener: psycopg.Connection[Any] | None = None
        self._listen_pause = LISTEN_RETRY_MIN_SECS
        self._closed = threading.Event()

    def requeued(self, cur: psycopg.Cursor[Any]) -> None:
        """NOTIFY the listening workers (delivered when the transaction commits)."""
        cur.execute(sql.NOTIFY, (self.store.channel,))

    def claim_params(
        self, n: int, worker_id: str, lease_secs: float, queues: Queues
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
        queues: Queues,
    ) -> Taken:
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

    def count_finished(
        self, cur: psycopg.Cursor[Any], deps: Sequence[str]
    ) -> dict[str, tuple[int, bool, list[str]]]:
        """Both steps in one statement: one round trip, the locks held one less until commit."""
        counted: dict[str, tuple[int, bool, list[str]]] = {}
        for job_id, dep, waiting, errback in self.returned(
            cur, sql.COUNT_AND_LOCK, [(list(deps),)]
        ):
            counted.setdefault(job_id, (waiting, errback, []))[2].append(dep)
        return counted

    def enqueue_many(self, jobs: Sequence[Job]) -> None:
        if len(jobs) != 1 or jobs[0].depends_on:
            super().enqueue_many(jobs)
            return
        # One statement outside a transaction: one round trip for one .delay().
        (row,) = queue_rows(jobs, self.payloads, self.clock.time())
        self.store.execute_alone(sql.ENQUEUE_ONE, (*row, self.store.channel))

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

    def heartbeat(self, job_ids: Sequence[str], *, worker_id: str, lease_secs: float) -> list[str]:
        if not job_ids:
            return []
        until = self.clock.time() + lease_secs
        with self.store.transaction() as cur:
            cur.execute(sql.HEARTBEAT, (until, list(job_ids), worker_id))
            kept = {row[0] for row in cur.fetchall()}
        return [job_id for job_id in job_ids if job_id in kept]

    def close(self) -> None:
        self._closed.set()
        self._drop_listener()
        super().close()
