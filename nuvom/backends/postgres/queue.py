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
from nuvom.backends.contract import Duplicates, Queues
from nuvom.backends.postgres import sql
from nuvom.backends.postgres.store import PostgresBackend
from nuvom.backends.sqlbase import (
    LimitState,
    Row,
    SQLJobQueue,
    Taken,
    bucket_state,
    in_claim_order,
    limit_columns,
    stored_job,
)
from nuvom.errors import NuvomError
from nuvom.job import Job
from nuvom.limits import CONCURRENCY_TAG, concurrency_tag, rate_tag
from nuvom.records import Outcome, StoredJob

if TYPE_CHECKING:
    import psycopg


log = logging.getLogger("nuvom.postgres")

LISTEN_RETRY_MIN_SECS = 0.1  # first pause before reconnecting a dropped LISTEN connection
LISTEN_RETRY_MAX_SECS = 5.0  # longest pause between reconnect attempts


def stored_rows(rows: Sequence[Sequence[Any]]) -> list[tuple[StoredJob, int]]:
    """Claimed rows (seq, id, queue, priority, due_at, attempts, payload, ...) with their seq."""
    return [(stored_job(row[1:7]), row[0]) for row in rows]


def claim_rows(rows: Sequence[Sequence[Any]]) -> tuple[list[Sequence[Any]], bool]:
    """A claim statement's rows, and whether it left limited jobs (its row of NULLs)."""
    claimed = [row for row in rows if row[0] is not None]
    return claimed, len(claimed) != len(rows)


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
            "refused": list(self.refused_by(worker_id)),
        }
        if queues:
            params["queues"], params["queue"] = list(queues), queues[0]
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
        statement = sql.for_queues(
            queues, sql.CLAIM_ANY_QUEUE, sql.CLAIM_FROM_QUEUE, sql.CLAIM_FROM_QUEUES
        )
        cur.execute(statement, params)
        rows, limited_left = claim_rows(cur.fetchall())
        claimed, corrupt = decode_claimed(
            self.payloads,
            stored_rows(rows),
            worker_id=worker_id,
            lease_until=params["until"],  # type: ignore[arg-type]
        )
        self.quarantine(cur, corrupt)
        if not limited_left or len(claimed) >= n:
            return claimed, corrupt
        now: float = params["now"]  # type: ignore[assignment]
        more = self.take_limited(cur, n - len(claimed), worker_id, lease_secs, queues, now)
        claimed, bad = in_claim_order(claimed, {row[1]: row[0] for row in rows}, more)
        return claimed, corrupt + bad

    # -- flow control: what the claim's second step and the settles need -----------------
    @property
    def lock_prefix(self) -> str:
        """What this schema's advisory locks of hold tags are keyed on, before the tag."""
        return f"nuvom-limits:{self.store.schema}:"

    def candidates(
        self,
        cur: psycopg.Cursor[Any],
        n: int,
        queues: Queues,
        now: float,
        skip: Sequence[int],
        refused: frozenset[str],
    ) -> list[tuple[int, StoredJob]]:
        params: dict[str, object] = {"now": now, "n": n, "skip": list(skip),
                                     "refused": list(refused)}  # fmt: skip
        if queues:
            params["queues"], params["queue"] = list(queues), queues[0]
        # A cursor of its own: in the pipeline, ``cur`` still holds the results of the last
        # round's updates, and a fetch on it could read their status instead of these rows.
        with cur.connection.cursor() as reader:
            statement = sql.for_queues(
                queues, sql.CANDIDATES_ANY_QUEUE, sql.CANDIDATES_FROM_QUEUE,
                sql.CANDIDATES_FROM_QUEUES,
            )  # fmt: skip
            reader.execute(statement, params)
            return [(seq, stored) for stored, seq in stored_rows(reader.fetchall())]

    def limit_state(
        self,
        cur: psycopg.Cursor[Any],
        rate_keys: Sequence[str],
        conc_keys: Sequence[str],
        now: float,
    ) -> LimitState:
        """The locks and both reads sent at once, answered in one round trip: the reads run
        after the locks on the server, so they see what the last holder committed."""
        tags = [rate_tag(key) for key in rate_keys] + [concurrency_tag(key) for key in conc_keys]
        conn = cur.connection
        with conn.cursor() as locks, conn.cursor() as buckets, conn.cursor() as slots:
            locks.execute(sql.LOCK_LIMITS, {"tags": tags, "prefix": self.lock_prefix})
            buckets.execute(sql.BUCKETS, {"keys": list(rate_keys)})
            slots.execute(sql.SLOTS, {"keys": list(conc_keys), "now": now})
            decidable = {str(row[0]) for row in locks.fetchall()}
            stored = {key: bucket_state(key, tokens, at) for key, tokens, at in buckets.fetchall()}
            return LimitState(
                decidable,
                {key: state for key, state in stored.items() if state is not None},
                {key: (int(taken), first_end) for key, taken, first_end in slots.fetchall()},
            )

    def lock_slots(self, cur: psycopg.Cursor[Any], job_ids: Sequence[str]) -> None:
        params = {"ids": list(job_ids), "prefix": self.lock_prefix, "tag": CONCURRENCY_TAG}
        cur.execute(sql.LOCK_SLOTS_OF, params)

    def lock_settling(self, cur: psycopg.Cursor[Any], job_ids: Sequence[str]) -> None:
        self.lock_slots(cur, job_ids)
        cur.execute(sql.LOCK_ROWS, {"ids": list(job_ids)})

    def before_settle(
        self, cur: psycopg.Cursor[Any], outcomes: Sequence[Outcome], now: float
    ) -> bool:
        """The slot locks alone: the settle's own statements free the slots and let the keys
        go (``settle_statement``, ``acked``), in the round trips it makes anyway."""
        self.lock_slots(cur, [o.job.id for o in outcomes])
        return False

    def settle_statement(
        self, statement: str, rows: list[tuple[object, ...]], now: float
    ) -> tuple[str, Sequence[Any]]:
        """The acks as their ``*_KEYED`` twins; the nacks as ``*_FREEING`` (named rows)."""
        extra = {"now": now, "prefix": CONCURRENCY_TAG}
        if statement == sql.ACK:
            return sql.ACK_KEYED, rows
        if statement == sql.ACK_ANY:
            return sql.ACK_ANY_KEYED, rows
        if statement == sql.NACK:
            return sql.NACK_FREEING, [
                {"retry_at": at, "id": i, "owner": o, **extra} for at, _, i, o in rows
            ]
        if statement == sql.NACK_ANY:
            return sql.NACK_ANY_FREEING, [{"retry_at": at, "id": i, **extra} for at, _, i in rows]
        return statement, rows

    def acked(self, cur: psycopg.Cursor[Any], statement: str, rows: Sequence[Any]) -> list[Row]:
        """The acks read back as ever; then, sent with the commit (no round trip more), the
        wake of the first job held back on each key a slot of which an ack freed, and the
        acked jobs' unique keys let go. Rows: (id, waited for, whether it freed a slot)."""
        found = self.returned(cur, statement, rows)
        if not found:
            return []
        now = self.clock.time()
        freed = [{"key": key, "now": now, "prefix": CONCURRENCY_TAG}
                 for _, _, key in found if key is not None]  # fmt: skip
        cur.executemany(sql.WAKE_KEY, freed)
        cur.execute(sql.LET_GO_ACKED, {"ids": [row[0] for row in found], "now": now})
        return [(job_id, waited_for, key is not None) for job_id, waited_for, key in found]

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

    def enqueue_many(self, jobs: Sequence[Job]) -> Duplicates:
        if len(jobs) != 1 or jobs[0].depends_on or jobs[0].unique is not None:
            return super().enqueue_many(jobs)
        # One statement outside a transaction: one round trip for one .delay().
        (job,) = jobs
        (row,) = queue_rows(jobs, self.payloads, self.clock.time())
        if job.limited:
            self.store.execute_alone(
                sql.ENQUEUE_LIMITED_ONE, (*row, *limit_columns(job), self.store.channel)
            )
        else:
            self.store.execute_alone(sql.ENQUEUE_ONE, (*row, self.store.channel))
        return {}

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
