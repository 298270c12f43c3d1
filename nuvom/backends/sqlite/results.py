"""Results, attempts and history in SQLite; the default result backend.

Shares its file (and so its transactions) with ``SQLiteJobQueue`` by default;
the steps shared with PostgreSQL are in ``nuvom/backends/sqlbase.py``.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence

from nuvom.backends.contract import BaseJobQueue, JobQuery, JointWriter
from nuvom.backends.sqlbase import (
    QUEUED_STATUSES,
    FindSource,
    SQLResultBackend,
    find_filters,
    find_params,
)
from nuvom.backends.sqlite import sql
from nuvom.backends.sqlite.store import SQLiteBackend
from nuvom.job import FINAL_STATUSES, Job, JobStatus


class SQLiteResultBackend(SQLiteBackend, SQLResultBackend):
    name = "sqlite"
    shared_across_processes = True
    path_setting = "sqlite_db_path"

    def joint_writer(self, queue: BaseJobQueue) -> JointWriter | None:
        from nuvom.backends.sqlbase import SQLJointWriter
        from nuvom.backends.sqlite.queue import SQLiteJobQueue

        if isinstance(queue, SQLiteJobQueue) and queue.store.same_file(self.store):
            return SQLJointWriter(queue, self)
        return None

    def note_submitted(
        self,
        conn: sqlite3.Connection,
        jobs: Sequence[Job],
        rows: Sequence[tuple[object, ...]],
        now: float,
    ) -> None:
        """A new job gets its row when first claimed (reads find it in ``nuvom_queue`` until
        then), so submitting writes one table, not two; a job enqueued again under a known
        id (``retry_job``) has its row made PENDING/SCHEDULED again. A parked job, which
        reads do not find in ``nuvom_queue``, is recorded in full."""
        reopened, parked = [], []
        for job, row in zip(jobs, rows, strict=True):
            if job.depends_on:
                parked.append((job, row))
                continue
            scheduled = job.due_at is not None and job.due_at > now
            reopened.append(("SCHEDULED" if scheduled else "PENDING", job.due_at, now, job.id))
        conn.executemany(sql.REOPEN_ENQUEUED, reopened)
        if parked:
            recorded = self.enqueued_rows([j for j, _ in parked], [r for _, r in parked], now)
            conn.executemany(sql.RECORD_ENQUEUED, recorded)

    def find_sources(self, query: JobQuery) -> list[FindSource]:
        """Also the jobs only queued, whose record is their queue row until a claim writes
        one (``note_submitted``): by the time each was enqueued; their task is read from
        the payload, so a task filter is applied to them here."""
        sources = super().find_sources(query)
        if query.status is None or query.status in QUEUED_STATUSES:
            exact = not query.search and query.tasks is None
            statement = sql.find_queued(find_filters(query))
            sources.append(FindSource(statement, find_params(query), exact))
        return sources

    def prune(self, *, older_than: float, statuses: Sequence[JobStatus] | None = None) -> int:
        """Delete the finished records no unfinished job needs (``sqlbase.Needed``).

        One write transaction: no job can start needing a record between the look at
        what the unfinished jobs need and the delete. With none of them in a workflow,
        one DELETE as before; else each record's payload is read for its workflow.
        """
        chosen = [s.value for s in (statuses or FINAL_STATUSES)]
        finished = (older_than, *chosen)
        with self.store.transaction() as conn:
            needed = self.still_needed(conn.execute(sql.UNFINISHED_PAYLOADS))
            if not needed:
                doomed = conn.execute(sql.prune_statement(len(chosen)), finished).fetchall()
            else:
                candidates = conn.execute(sql.prune_candidates(len(chosen)), finished)
                doomed = [(job_id,) for job_id in self.unneeded(candidates, needed)]
                conn.executemany(sql.prune_one(len(chosen)), [(*d, *finished) for d in doomed])
            conn.executemany(sql.DELETE_ATTEMPTS, doomed)
        return len(doomed)
