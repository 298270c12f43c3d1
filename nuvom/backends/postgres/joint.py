"""The PostgreSQL queue and results in one schema: each step commits in one transaction.

On the paths an idle system waits on (one ``.delay()``, a claim), the step is a
single statement sent outside an explicit transaction: one round trip, and
still all or nothing, as the server wraps one statement in its own transaction.
"""

from __future__ import annotations

from collections.abc import Sequence

from nuvom.backends.common import decode_claimed, queue_rows
from nuvom.backends.contract import JointWriter
from nuvom.backends.postgres import sql
from nuvom.backends.postgres.queue import PostgresJobQueue, stored_rows
from nuvom.backends.postgres.results import PostgresResultBackend
from nuvom.job import Job
from nuvom.records import ErrorInfo, Outcome

PAYLOAD_COLUMN = 7  # where queue_rows keeps the encoded payload


class PostgresJointWriter(JointWriter):
    def __init__(self, queue: PostgresJobQueue, results: PostgresResultBackend) -> None:
        self.queue = queue
        self.results = results
        self.store = queue.store

    def submit(self, jobs: Sequence[Job]) -> None:
        if not jobs:
            return
        now = self.queue.clock.time()
        rows = queue_rows(jobs, self.queue.payloads, now)
        payloads = [row[PAYLOAD_COLUMN] for row in rows]
        if len(rows) == 1:
            (record,) = self.results.enqueued_rows(jobs, payloads, now)  # type: ignore[arg-type]
            self.store.execute_alone(sql.SUBMIT_ONE, (*rows[0], *record, self.store.channel))
            return
        with self.store.transaction() as cur:
            self.queue.insert(cur, rows)
            self.results.note_enqueued(cur, jobs, payloads, now)  # type: ignore[arg-type]

    def claim(
        self, n: int, *, worker_id: str, lease_secs: float, queues: Sequence[str] | None = None
    ) -> list[Job]:
        """Claim and mark running in one statement: one round trip on the idle path.

        A job without a record yet gets its full RUNNING record, and a corrupt
        payload is quarantined, in a second transaction (both are rare).
        """
        params = self.queue.claim_params(n, worker_id, lease_secs, queues)
        statement = sql.CLAIM_AND_START_FROM_QUEUES if queues else sql.CLAIM_AND_START_ANY_QUEUE
        rows = self.store.execute_alone(statement, params)
        recorded = {row[1] for row in rows if row[-1]}
        claimed, corrupt = decode_claimed(
            self.queue.payloads,
            stored_rows(rows),
            worker_id=worker_id,
            lease_until=params["until"],  # type: ignore[arg-type]
        )
        unrecorded = [(job, row.payload) for job, row in claimed if job.id not in recorded]
        if unrecorded or corrupt:
            now = self.queue.clock.time()
            with self.store.transaction() as cur:
                if unrecorded:
                    self.results.note_running(cur, unrecorded, worker_id, now)
                for row, reason in corrupt:
                    cur.execute(sql.UNCOUNT_ATTEMPT, {"id": row.id})
                    cur.execute(sql.UNCOUNT_START, {"id": row.id})
                    self.results.note_failed(cur, row.id, ErrorInfo("CorruptJob", reason), now)
                self.queue.quarantine(cur, corrupt)
        return [job for job, _ in claimed]

    def settle(self, outcomes: Sequence[Outcome]) -> None:
        with self.store.transaction() as cur:
            self.results.note_outcomes(cur, outcomes, self.queue.clock.time())
            self.queue.finish(cur, outcomes)

    def cancel(self, job_id: str) -> bool:
        with self.store.transaction() as cur:
            if not self.queue.remove_waiting(cur, job_id):
                return False
            self.results.note_cancelled(cur, job_id, self.queue.clock.time())
        return True
