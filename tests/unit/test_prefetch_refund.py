"""A job a worker only prefetched does not use up an attempt: its claim's attempt is given
back at the next heartbeat and counted again when it starts.

Under worker churn, jobs claimed but never started used to end FAILED ``LostAttempts``
without having run once: each dead worker's claim counted against them.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

import nuvom
from nuvom.job import Job, JobStatus
from nuvom.queue_backends.memory_queue import MemoryJobQueue
from nuvom.records import Outcome
from nuvom.registry import TaskRegistry
from nuvom.result_backends.memory_backend import MemoryResultBackend
from nuvom.task import task
from nuvom.worker import Worker

DEADLINE_SECS = 10.0


def _poll(condition: Any, what: str) -> None:
    deadline = time.monotonic() + DEADLINE_SECS
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.01)


def test_prefetched_jobs_are_refunded_and_charged_again_when_they_start():
    queue, results = MemoryJobQueue(), MemoryResultBackend()
    nuvom.configure(queue_backend=queue, result_backend=results, registry=TaskRegistry())
    gate, started = threading.Event(), threading.Event()
    attempts_seen: list[int] = []

    @task
    def hold(n: int) -> int:
        started.set()
        gate.wait(DEADLINE_SECS)
        return n

    real_adjust = queue.adjust_attempts
    charged: list[str] = []

    def adjust(deltas: Any, *, worker_id: str) -> list[str]:
        charged.extend(i for i, d in deltas.items() if d > 0)
        return real_adjust(deltas, worker_id=worker_id)

    queue.adjust_attempts = adjust  # type: ignore[method-assign]
    handles = hold.map([(n,) for n in range(4)])
    worker = Worker(
        workers=1,
        prefetch=3,
        lease_secs=0.3,
        on_outcome=lambda o: attempts_seen.append(o.job.attempts),
    )
    thread = threading.Thread(target=worker.run, kwargs={"burst": True})
    thread.start()
    try:
        started.wait(DEADLINE_SECS)
        first = next(h.id for h in handles if queue._claimed[h.id].attempts == 1)  # type: ignore[attr-defined]
        waiting = [h.id for h in handles if h.id != first]

        _poll(lambda: all(queue._claimed[i].attempts == 0 for i in waiting), "the refunds")  # type: ignore[attr-defined]
        assert queue._claimed[first].attempts == 1, "the running job keeps its attempt"  # type: ignore[attr-defined]
    finally:
        gate.set()
        thread.join(DEADLINE_SECS)

    assert [h.get(timeout=5) for h in handles] == [0, 1, 2, 3]
    assert sorted(charged) == sorted(waiting), "each refunded job is counted when it starts"
    assert attempts_seen == [1, 1, 1, 1]


def test_a_job_settled_during_a_heartbeat_is_not_reported_lost(caplog):
    queue, results = MemoryJobQueue(), MemoryResultBackend()
    nuvom.configure(queue_backend=queue, result_backend=results, registry=TaskRegistry())
    worker = Worker(workers=1, lease_secs=30)
    settled, lost = Job("add"), Job("add")
    queue.enqueue_many([settled, lost])
    claimed = queue.claim_batch(2, worker_id=worker.worker_id, lease_secs=30).jobs
    worker.held.add(claimed)
    real_heartbeat = queue.heartbeat

    def heartbeat(job_ids: Any, *, worker_id: str, lease_secs: float) -> list[str]:
        # The dispatcher acks one job while the heartbeat is on its way; the other job's
        # lease really was lost (taken by another worker).
        queue.ack(settled.id, worker_id=worker_id)
        worker.held.settled([Outcome(settled, JobStatus.SUCCESS, worker_id=worker_id)])
        queue.ack(lost.id)
        return real_heartbeat(job_ids, worker_id=worker_id, lease_secs=lease_secs)

    queue.heartbeat = heartbeat  # type: ignore[method-assign]
    with caplog.at_level(logging.WARNING, logger="nuvom.worker"):
        worker._heartbeat()

    warnings = [r.getMessage() for r in caplog.records if "lost the lease" in r.getMessage()]
    assert warnings == [f"lost the lease on 1 job(s): {lost.id}"]
