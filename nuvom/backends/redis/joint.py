"""The Redis queue and results on one server: each step is one script.

Each of the four steps runs one of the queue's scripts with the result backend's
save script embedded, so its record changes happen in the same atomic step: the
jobs' records on submit (and the dependencies already finished of the jobs it
parks, resolved), RUNNING on claim, the outcomes on settle (and the dependents of
the jobs it acks, resolved), CANCELLED on cancel (and what waits for the job).
Submit and settle send the script by its digest (``by_digest``).
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence

from nuvom.backends.contract import Duplicates, JointWriter, Queues
from nuvom.backends.redis import scripts as lua
from nuvom.backends.redis.client import by_digest, retried, translated
from nuvom.backends.redis.queue import RedisJobQueue, duplicates, pairs, stored_rows
from nuvom.backends.redis.results import SAVE_SCRIPT, RedisResultBackend
from nuvom.job import Job
from nuvom.records import ErrorInfo, Outcome

CLAIM_AND_START_ROW = 7  # the claim row, then 1 if the job had a record (now RUNNING), else 0


class RedisJointWriter(JointWriter):
    def __init__(self, queue: RedisJobQueue, results: RedisResultBackend) -> None:
        self.queue = queue
        self.results = results
        client = queue.client
        self._enqueue_and_record = client.register_script(lua.enqueue_and_record(SAVE_SCRIPT))
        self._claim_and_start = client.register_script(lua.claim_and_start(SAVE_SCRIPT))
        self._settle_and_record = client.register_script(lua.settle_and_record(SAVE_SCRIPT))
        self._cancel_and_record = client.register_script(lua.cancel_and_record(SAVE_SCRIPT))

    def _record_args(self) -> list[object]:
        results = self.results
        return [results.prefix, results.ttl_secs or 0, results.history_cap]

    def submit(self, jobs: Sequence[Job]) -> Duplicates:
        """Enqueue and record in one script: no worker can finish a job before it is recorded,
        and a duplicate (its unique key held) is neither stored nor recorded.

        It is sent again if its reply is lost; its token makes the second send write nothing
        and answer with the duplicates the first one found.
        """
        if not jobs:
            return {}
        items = self.results.item_args(self.results.enqueued_items(jobs))
        args = self.queue.enqueue_args(jobs, token=uuid.uuid4().hex)
        args[3:3] = [*self._record_args(), len(items), *items]
        client = self.queue.client
        reply = retried(self.queue.url, lambda: by_digest(client, self._enqueue_and_record, args))
        return duplicates(reply)

    def claim(
        self, n: int, *, worker_id: str, lease_secs: float, queues: Queues = None
    ) -> list[Job]:
        """Claim and mark running in one script: one round trip on the idle path."""
        queue = self.queue
        now = queue.clock.time()
        until = now + lease_secs
        refused = "\0".join(sorted(queue.refused_by(worker_id)))
        args = [queue.prefix, repr(now), repr(until), worker_id, n, *self._record_args(),
                refused, *(queues or ())]  # fmt: skip
        with translated(queue.url):
            flat, dead = self._claim_and_start(args=args)
        rows = stored_rows(flat, CLAIM_AND_START_ROW)
        flags = flat[CLAIM_AND_START_ROW - 1 :: CLAIM_AND_START_ROW]
        recorded = {row.id for (row, _), flag in zip(rows, flags, strict=True) if int(flag)}
        claimed, corrupt = queue.decode_taken(rows, worker_id, until)
        unrecorded = [job for job, _ in claimed if job.id not in recorded]
        if unrecorded:
            self.results.mark_running(unrecorded, worker_id=worker_id, started_at=now)
        for job_id, reason in [(row.id, why) for row, why in corrupt] + pairs(dead):
            self.results.set_error(job_id, ErrorInfo("CorruptJob", reason))
        return [job for job, _ in claimed]

    def settle(self, outcomes: Sequence[Outcome]) -> None:
        """The outcomes, every ack and nack, and the dependents of each job acked resolved
        (those it cancels recorded), in one script."""
        items = self.results.item_args(self.results.outcome_items(outcomes))
        args = self.queue.settle_args(outcomes)
        args[2:2] = [*self._record_args(), len(items), *items]
        with translated(self.queue.url):
            by_digest(self.queue.client, self._settle_and_record, args)

    def cancel(self, job_id: str) -> bool:
        queue = self.queue
        args = [queue.prefix, job_id, *self._record_args(), repr(queue.clock.time())]
        with translated(queue.url):
            return bool(self._cancel_and_record(args=args))
