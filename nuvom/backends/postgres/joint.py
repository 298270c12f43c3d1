"""The PostgreSQL queue and results in one schema: each step commits in one transaction.

On the paths an idle system waits on (one ``.delay()``, a claim), the step is a
single statement sent outside an explicit transaction: one round trip, and
still all or nothing, as the server wraps one statement in its own transaction.
"""

from __future__ import annotations

from collections.abc import Sequence

from nuvom.backends.common import decode_claimed, queue_rows
from nuvom.backends.contract import Queues, waits
from nuvom.backends.postgres import sql
from nuvom.backends.postgres.queue import PostgresJobQueue, stored_rows
from nuvom.backends.sqlbase import SQLJointWriter
from nuvom.job import Job


class PostgresJointWriter(SQLJointWriter):
    queue: PostgresJobQueue

    def submit(self, jobs: Sequence[Job]) -> None:
        if len(jobs) != 1 or waits(jobs):
            super().submit(jobs)
            return
        now = self.queue.clock.time()
        rows = queue_rows(jobs, self.queue.payloads, now)
        (record,) = self.results.enqueued_rows(jobs, rows, now)
        self.store.execute_alone(sql.SUBMIT_ONE, (*rows[0], *record, self.store.channel))

    def claim(
        self, n: int, *, worker_id: str, lease_secs: float, queues: Queues = None
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
        unrecorded = [(job, row) for job, row in claimed if job.id not in recorded]
        if unrecorded or corrupt:
            with self.store.transaction() as cur:
                for row, _ in corrupt:  # the statement started an attempt it never made
                    cur.execute(sql.UNCOUNT_ATTEMPT, {"id": row.id})
                    cur.execute(sql.UNCOUNT_START, {"id": row.id})
                self.record_claimed(cur, unrecorded, corrupt, worker_id)
                self.queue.quarantine(cur, corrupt)
        return [job for job, _ in claimed]
