"""The PostgreSQL queue and results in one schema: each step commits in one transaction.

On the paths an idle system waits on (one ``.delay()``, a claim), the step is a
single statement sent outside an explicit transaction: one round trip, and
still all or nothing, as the server wraps one statement in its own transaction.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from nuvom.backends.common import decode_claimed, queue_rows
from nuvom.backends.contract import Duplicates, Queues, waits
from nuvom.backends.postgres import sql
from nuvom.backends.postgres.queue import PostgresJobQueue, claim_rows, stored_rows
from nuvom.backends.sqlbase import SQLJointWriter, in_claim_order, limit_columns
from nuvom.errors import BackendError
from nuvom.job import Job
from nuvom.records import StoredJob

log = logging.getLogger("nuvom.postgres")


class PostgresJointWriter(SQLJointWriter):
    queue: PostgresJobQueue

    def submit(self, jobs: Sequence[Job]) -> Duplicates:
        if len(jobs) != 1 or waits(jobs) or jobs[0].unique is not None:
            return super().submit(jobs)
        (job,) = jobs
        now = self.queue.clock.time()
        rows = queue_rows(jobs, self.queue.payloads, now)
        (record,) = self.results.enqueued_rows(jobs, rows, now)
        if job.limited:
            params = (*rows[0], *limit_columns(job), *record, self.store.channel)
            self.store.execute_alone(sql.SUBMIT_LIMITED_ONE, params)
        else:
            self.store.execute_alone(sql.SUBMIT_ONE, (*rows[0], *record, self.store.channel))
        return {}

    def claim(
        self, n: int, *, worker_id: str, lease_secs: float, queues: Queues = None
    ) -> list[Job]:
        """Claim and mark running in one statement: one round trip on the idle path.

        A job without a record yet gets its full RUNNING record, and a corrupt
        payload is quarantined, in a second transaction (both are rare). When the
        statement left limited jobs (flow control), a transaction of its own decides on
        them (``SQLJobQueue.take_limited``) and records those it claims.
        """
        params = self.queue.claim_params(n, worker_id, lease_secs, queues)
        statement = sql.for_queues(
            queues, sql.CLAIM_AND_START_ANY_QUEUE, sql.CLAIM_AND_START_FROM_QUEUE,
            sql.CLAIM_AND_START_FROM_QUEUES,
        )  # fmt: skip
        rows, limited_left = claim_rows(self.store.execute_alone(statement, params))
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
        if limited_left and len(claimed) < n:
            seqs = {row[1]: row[0] for row in rows}
            claimed = self.claim_limited(claimed, seqs, n, worker_id, lease_secs, queues)
        return [job for job, _ in claimed]

    def claim_limited(
        self,
        claimed: list[tuple[Job, StoredJob]],
        seqs: dict[str, int],
        n: int,
        worker_id: str,
        lease_secs: float,
        queues: Queues,
    ) -> list[tuple[Job, StoredJob]]:
        """The claim's second step, after its statement committed ``claimed``: should it
        fail, those are returned all the same (they are claimed and recorded RUNNING)."""
        try:
            with self.store.transaction() as cur:
                more = self.queue.take_limited(
                    cur, n - len(claimed), worker_id, lease_secs, queues, self.queue.clock.time()
                )
                self.record_claimed(cur, [(job, row) for job, row, _ in more[0]], more[1],
                                    worker_id)  # fmt: skip
        except BackendError as exc:
            if not claimed:
                raise
            log.warning("claiming limited jobs failed (%s); running the %d others claimed",
                        exc, len(claimed))  # fmt: skip
            return claimed
        return in_claim_order(claimed, seqs, more)[0]
