"""Results, attempts and history in PostgreSQL tables.

Shares its schema (and so its transactions) with ``PostgresJobQueue`` when both
use the same DSN and schema; the steps shared with SQLite are in
``nuvom/backends/sqlbase.py``.
"""

from __future__ import annotations

from collections.abc import Sequence

from nuvom.backends.contract import BaseJobQueue, JointWriter
from nuvom.backends.postgres import sql
from nuvom.backends.postgres.store import PostgresBackend
from nuvom.backends.sqlbase import SQLResultBackend
from nuvom.job import FINAL_STATUSES, JobStatus


class PostgresResultBackend(PostgresBackend, SQLResultBackend):
    name = "postgres"
    shared_across_processes = True

    def joint_writer(self, queue: BaseJobQueue) -> JointWriter | None:
        from nuvom.backends.postgres.joint import PostgresJointWriter
        from nuvom.backends.postgres.queue import PostgresJobQueue

        if isinstance(queue, PostgresJobQueue) and queue.store.same_schema(self.store):
            return PostgresJointWriter(queue, self)
        return None

    def prune(self, *, older_than: float, statuses: Sequence[JobStatus] | None = None) -> int:
        chosen = [s.value for s in (statuses or FINAL_STATUSES)]
        with self.store.transaction() as cur:
            cur.execute(sql.PRUNE, (older_than, chosen))
            doomed = [row[0] for row in cur.fetchall()]
            if doomed:
                cur.execute(sql.DELETE_ATTEMPTS, (doomed,))
        return len(doomed)
