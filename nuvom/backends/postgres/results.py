"""Results, attempts and history in PostgreSQL tables.

Shares its schema (and so its transactions) with ``PostgresJobQueue`` when both
use the same DSN and schema; the steps shared with SQLite are in
``nuvom/backends/sqlbase.py``.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager
from typing import TYPE_CHECKING, Any

from nuvom.backends.contract import BaseJobQueue, JointWriter
from nuvom.backends.postgres import sql
from nuvom.backends.postgres.store import PostgresBackend
from nuvom.backends.sqlbase import Row, SQLResultBackend
from nuvom.job import FINAL_STATUSES, JobStatus

if TYPE_CHECKING:
    import psycopg

STREAM_ROWS = 2000  # rows per fetch of a prune's reads
PRUNE_BATCH = 10_000  # ids per DELETE of a prune


class PostgresResultBackend(PostgresBackend, SQLResultBackend):
    name = "postgres"
    shared_across_processes = True

    def joint_writer(self, queue: BaseJobQueue) -> JointWriter | None:
        from nuvom.backends.postgres.joint import PostgresJointWriter
        from nuvom.backends.postgres.queue import PostgresJobQueue

        if isinstance(queue, PostgresJobQueue) and queue.store.same_schema(self.store):
            return PostgresJointWriter(queue, self)
        return None

    def needs_transaction(self) -> AbstractContextManager[psycopg.Cursor[Any]]:
        return self.store.transaction(pipelined=False)

    def unfinished_payloads(self, cur: psycopg.Cursor[Any]) -> Iterator[Row]:
        return _streamed(cur, sql.UNFINISHED_PAYLOADS)

    def prune(self, *, older_than: float, statuses: Sequence[JobStatus] | None = None) -> int:
        """Delete the finished records no unfinished job needs (``sqlbase.Needed``).

        With none of the unfinished jobs in a workflow, one DELETE as before; else each
        record's payload is read for its workflow, and those still finished are deleted by
        id. Rows are read through server-side cursors (not pipelined): a large backlog or
        history is never held in memory at once, only the ids to delete.
        """
        chosen = [s.value for s in (statuses or FINAL_STATUSES)]
        with self.store.transaction(pipelined=False) as cur:
            needed = self.still_needed(_streamed(cur, sql.UNFINISHED_PAYLOADS))
            if not needed:
                cur.execute(sql.PRUNE, (older_than, chosen))
                doomed = [row[0] for row in cur.fetchall()]
            else:
                candidates = _streamed(cur, sql.PRUNE_CANDIDATES, (older_than, chosen))
                unneeded = self.unneeded(candidates, needed)
                doomed = []
                for start in range(0, len(unneeded), PRUNE_BATCH):
                    batch = unneeded[start : start + PRUNE_BATCH]
                    cur.execute(sql.PRUNE_IDS, (batch, older_than, chosen))
                    doomed += [row[0] for row in cur.fetchall()]
            if doomed:
                cur.execute(sql.DELETE_ATTEMPTS, (doomed,))
        return len(doomed)


def _streamed(cur: psycopg.Cursor[Any], query: str, params: Any = None) -> Iterator[Row]:
    """The rows of ``query``, fetched STREAM_ROWS at a time from a server-side cursor in
    ``cur``'s transaction (closed once they are all read)."""
    with cur.connection.cursor(name="nuvom_prune") as rows:
        rows.itersize = STREAM_ROWS
        rows.execute(query, params)
        yield from rows
