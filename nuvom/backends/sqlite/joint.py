"""The SQLite queue and results in one file: each step is one ``BEGIN IMMEDIATE`` transaction.

The queue's and the result backend's steps are composed here on one
connection, so a job's queue row and its history row always commit together.
"""

from __future__ import annotations

from collections.abc import Sequence

from nuvom.backends.common import queue_rows
from nuvom.backends.contract import JointWriter
from nuvom.backends.sqlite.queue import SQLiteJobQueue
from nuvom.backends.sqlite.results import SQLiteResultBackend
from nuvom.job import Job
from nuvom.records import ErrorInfo, Outcome


class SQLiteJointWriter(JointWriter):
    def __init__(self, queue: SQLiteJobQueue, results: SQLiteResultBackend) -> None:
        self.queue = queue
        self.results = results
        self.store = queue.store

    def submit(self, jobs: Sequence[Job]) -> None:
        if not jobs:
            return
        now = self.queue.clock.time()
        rows = queue_rows(jobs, self.queue.payloads, now)
        with self.store.write() as conn:
            self.queue.insert(conn, rows)
            self.results.note_reopened(conn, jobs, now)
        self.queue.nudge()

    def claim(
        self, n: int, *, worker_id: str, lease_secs: float, queues: Sequence[str] | None = None
    ) -> list[Job]:
        with self.store.write() as conn:
            claimed, corrupt = self.queue.take(conn, n, worker_id, lease_secs, queues)
            now = self.queue.clock.time()
            if claimed:
                started = [(job, row.payload) for job, row in claimed]
                self.results.note_running(conn, started, worker_id, now)
            for row, reason in corrupt:
                self.results.note_failed(conn, row.id, ErrorInfo("CorruptJob", reason), now)
        return [job for job, _ in claimed]

    def settle(self, outcomes: Sequence[Outcome]) -> None:
        with self.store.write() as conn:
            self.results.note_outcomes(conn, outcomes, self.queue.clock.time())
            requeued = self.queue.finish(conn, outcomes)
        if requeued:
            self.queue.nudge()

    def cancel(self, job_id: str) -> bool:
        with self.store.write() as conn:
            removed = self.queue.remove_waiting(conn, job_id)
            if removed is None:
                return False
            self.results.note_cancelled_waiting(conn, job_id, removed, self.queue.clock.time())
        return True
