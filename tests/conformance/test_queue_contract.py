"""The delivery contract (``nuvom/backends/contract.py``), run against every queue backend.

Time moves by ``FakeClock.advance``; nothing here sleeps.
"""

from __future__ import annotations

import sqlite3
import threading
from collections import Counter
from typing import Any

import pytest

from nuvom.errors import SerializationError
from nuvom.job import Job, JobStatus
from nuvom.records import ErrorInfo, Outcome

LEASE_SECS = 10.0  # every claim here lasts this long; the FakeClock moves past it
W1, W2 = "worker-1", "worker-2"


def pop(b: Any, n: int = 100, worker: str = W1, **kw: object) -> list[Job]:
    return b.queue.pop_batch(n, worker_id=worker, lease_secs=LEASE_SECS, **kw)  # type: ignore[arg-type]


def ids(jobs: list[Job]) -> list[str]:
    return [job.id for job in jobs]


# -- enqueue and claim --------------------------------------------------------
def test_claim_returns_the_call_with_attempts_counted(backends, make_job):
    job = make_job("mail.send", args=("a@b.c", 3), kwargs={"subject": "hi"}, priority=2)
    backends.queue.enqueue(job)

    (claimed,) = pop(backends)

    assert claimed.id == job.id
    assert claimed.func_name == "mail.send"
    assert list(claimed.args) == ["a@b.c", 3]
    assert claimed.kwargs == {"subject": "hi"}
    assert claimed.priority == 2
    assert claimed.attempts == 1
    assert claimed.lease_owner == W1
    assert claimed.lease_until == backends.clock.time() + LEASE_SECS
    assert job.attempts == 0, "the caller's Job object must not be changed by the queue"


def test_empty_queue_claims_nothing(backends):
    assert pop(backends) == []
    assert backends.queue.qsize() == 0


def test_order_is_priority_then_due_time_then_fifo(backends, make_job):
    clock = backends.clock
    due_soon = make_job(due_at=clock.time() + 5)
    due_sooner = make_job(due_at=clock.time() + 3)
    backends.queue.enqueue_many([due_soon, due_sooner])
    clock.advance(10)  # both scheduled jobs are now due, before anything enqueued below
    low_first, low_second = make_job(), make_job()
    high = make_job(priority=10)
    mid = make_job(priority=5)
    backends.queue.enqueue_many([low_first, low_second, high, mid])

    claimed = pop(backends)

    assert ids(claimed) == ids([high, mid, due_sooner, due_soon, low_first, low_second])


def test_fifo_within_equal_priority_and_due_time(backends, make_job):
    jobs = [make_job() for _ in range(20)]
    for job in jobs:
        backends.queue.enqueue(job)

    assert ids(pop(backends, 7)) + ids(pop(backends, 100)) == ids(jobs)


def test_scheduled_job_is_not_claimable_until_due(backends, make_job):
    job = make_job(due_at=backends.clock.time() + 60)
    backends.queue.enqueue(job)

    assert pop(backends) == []
    assert backends.queue.qsize() == 1, "a scheduled job is waiting"
    backends.clock.advance(59.5)
    assert pop(backends) == []
    backends.clock.advance(0.5)
    assert ids(pop(backends)) == [job.id]


def test_pop_batch_claims_at_most_n(backends, make_job):
    backends.queue.enqueue_many([make_job() for _ in range(5)])

    sizes = [len(pop(backends, 2)) for _ in range(4)]

    assert sizes == [2, 2, 1, 0]


def test_two_claimers_never_get_the_same_job(backends, make_job):
    jobs = [make_job() for _ in range(5)]
    backends.queue.enqueue_many(jobs)

    first = pop(backends, 3, W1)
    second = pop(backends, 10, W2)

    assert len(first) == 3
    assert len(second) == 2
    assert set(ids(first)).isdisjoint(ids(second))
    assert sorted(ids(first) + ids(second)) == sorted(ids(jobs))


def test_concurrent_claimers_get_every_job_exactly_once(backends, make_job):
    jobs = [make_job() for _ in range(500)]
    backends.queue.enqueue_many(jobs)
    start = threading.Barrier(8)
    claimed: list[list[str]] = [[] for _ in range(8)]
    errors: list[BaseException] = []

    def claimer(index: int) -> None:
        try:
            start.wait()
            while True:
                batch = pop(backends, 7, f"thread-{index}")
                if not batch:
                    return  # nothing can come back: leases outlive the test on a FakeClock
                claimed[index].extend(ids(batch))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=claimer, args=(i,)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)

    assert errors == []
    assert not any(thread.is_alive() for thread in threads)
    every = [job_id for batch in claimed for job_id in batch]
    duplicates = [job_id for job_id, count in Counter(every).items() if count > 1]
    assert duplicates == []
    assert sorted(every) == sorted(ids(jobs))


# -- ack, nack, leases ----------------------------------------------------------
def test_ack_removes_the_job_for_good(backends, make_job):
    job = make_job()
    backends.queue.enqueue(job)
    pop(backends)

    backends.queue.ack(job.id, worker_id=W1)
    backends.queue.ack(job.id, worker_id=W1)  # idempotent

    backends.clock.advance(LEASE_SECS * 3)
    assert pop(backends, worker=W2) == []
    assert backends.queue.qsize() == 0


def test_ack_by_another_worker_leaves_the_job_held(backends, make_job):
    job = make_job()
    backends.queue.enqueue(job)
    pop(backends)

    backends.queue.ack(job.id, worker_id=W2)

    backends.clock.advance(LEASE_SECS)
    assert ids(pop(backends, worker=W2)) == [job.id], "the job was not removed by a non-holder"


def test_nack_makes_the_job_claimable_at_retry_at_keeping_attempts(backends, make_job):
    job = make_job()
    backends.queue.enqueue(job)
    pop(backends)
    retry_at = backends.clock.time() + 30

    backends.queue.nack(job.id, retry_at=retry_at, worker_id=W1)

    assert backends.queue.qsize() == 1
    assert pop(backends, worker=W2) == []
    backends.clock.advance(29.9)
    assert pop(backends, worker=W2) == []
    backends.clock.advance(0.1)
    (again,) = pop(backends, worker=W2)
    assert again.id == job.id
    assert again.attempts == 2


def test_expired_lease_lets_another_worker_claim_with_attempts_plus_one(backends, make_job):
    job = make_job()
    backends.queue.enqueue(job)
    (first,) = pop(backends, worker=W1)
    assert first.attempts == 1

    assert pop(backends, worker=W2) == [], "held under a live lease"
    backends.clock.advance(LEASE_SECS - 0.5)
    assert pop(backends, worker=W2) == [], "held under a live lease"
    backends.clock.advance(0.5)

    (second,) = pop(backends, worker=W2)
    assert second.id == job.id
    assert second.attempts == 2
    assert second.lease_owner == W2
    # The worker that lost the lease can no longer settle or renew the job.
    assert backends.queue.heartbeat([job.id], worker_id=W1, lease_secs=LEASE_SECS) == []
    backends.queue.ack(job.id, worker_id=W1)
    backends.clock.advance(LEASE_SECS)
    (third,) = pop(backends, worker=W1)
    assert third.attempts == 3


def test_heartbeat_extends_the_lease_and_returns_only_held_ids(backends, make_job):
    job, other = make_job(), make_job()
    backends.queue.enqueue_many([job, other])
    pop(backends, 1, W1)
    pop(backends, 1, W2)
    backends.clock.advance(LEASE_SECS - 2)

    held = backends.queue.heartbeat(
        [job.id, other.id, "no-such-job"], worker_id=W1, lease_secs=LEASE_SECS
    )

    assert held == [job.id]
    backends.clock.advance(LEASE_SECS - 1)  # past the first lease, inside the renewed one
    assert ids(pop(backends, worker="worker-3")) == [other.id], "only the unrenewed job expired"
    backends.clock.advance(1)
    assert ids(pop(backends, worker="worker-3")) == [job.id]


def test_adjust_attempts_changes_only_jobs_the_worker_holds(backends, make_job):
    prefetched, started, other = make_job(), make_job(), make_job()
    backends.queue.enqueue_many([prefetched, started, other])
    pop(backends, 2, W1)
    pop(backends, 1, W2)

    changed = backends.queue.adjust_attempts(
        {prefetched.id: -1, started.id: -1, other.id: -1, "no-such-job": -1}, worker_id=W1
    )
    assert sorted(changed) == sorted([prefetched.id, started.id]), "only W1's own jobs"
    assert backends.queue.adjust_attempts({started.id: 1}, worker_id=W1) == [started.id]
    assert backends.queue.adjust_attempts({prefetched.id: -5}, worker_id=W1) == [prefetched.id]

    backends.clock.advance(LEASE_SECS)  # W1 died: its prefetched job was never charged
    again = {job.id: job.attempts for job in pop(backends, 3, "worker-3")}
    assert again == {prefetched.id: 1, started.id: 2, other.id: 2}, "never below 0"


def test_every_expired_lease_comes_back_to_the_next_claim(backends, make_job):
    jobs = [make_job() for _ in range(3)]
    backends.queue.enqueue_many(jobs)
    pop(backends)
    assert backends.queue.qsize() == 0
    assert pop(backends, worker=W2) == [], "leases still hold"

    backends.clock.advance(LEASE_SECS)
    again = pop(backends, worker=W2)

    assert sorted(ids(again)) == sorted(ids(jobs))
    assert {job.attempts for job in again} == {2}


def test_qsize_counts_waiting_jobs_per_queue(backends, make_job):
    backends.queue.enqueue_many(
        [
            make_job(),
            make_job(),
            make_job(queue="emails"),
            make_job(queue="emails", due_at=backends.clock.time() + 100),
        ]
    )
    assert backends.queue.qsize() == 4
    assert backends.queue.qsize("emails") == 2
    assert backends.queue.qsize("nowhere") == 0

    pop(backends, 1)

    assert backends.queue.qsize() == 3, "claimed jobs are not waiting"
    assert backends.queue.stats()["waiting"] == 3


def test_clear_removes_waiting_and_claimed_jobs(backends, make_job):
    backends.queue.enqueue_many([make_job() for _ in range(3)])
    pop(backends, 1)

    assert backends.queue.clear() == 3

    assert backends.queue.qsize() == 0
    backends.clock.advance(LEASE_SECS)
    assert pop(backends) == []
    assert backends.queue.clear() == 0


def test_cancel_removes_only_waiting_jobs(backends, make_job):
    waiting, claimed = make_job(), make_job()
    backends.queue.enqueue_many([claimed, waiting])
    pop(backends, 1)

    assert backends.queue.cancel(waiting.id) is True
    assert backends.queue.cancel(waiting.id) is False
    assert backends.queue.cancel(claimed.id) is False
    assert backends.queue.cancel("no-such-job") is False

    assert backends.queue.qsize() == 0
    backends.clock.advance(LEASE_SECS)
    assert ids(pop(backends, worker=W2)) == [claimed.id], "a claimed job survives cancel"


def test_release_gives_the_job_back_at_once_without_counting_the_attempt(backends, make_job):
    job = make_job()
    backends.queue.enqueue(job)
    pop(backends)

    backends.queue.release([job.id], worker_id=W2)  # not the holder: nothing happens
    assert pop(backends, worker=W2) == []
    backends.queue.release([job.id], worker_id=W1)

    (again,) = pop(backends, worker=W2)
    assert again.id == job.id
    assert again.attempts == 1


def test_a_released_or_retried_job_keeps_its_place_in_claim_order(backends, make_job):
    """Given back, a job comes before those enqueued after it (a Redis stream is append-only:
    appending it again put it last)."""
    first = make_job()
    backends.queue.enqueue(first)
    backends.clock.advance(1)
    later = make_job()
    backends.queue.enqueue(later)
    assert ids(pop(backends, n=1)) == [first.id]

    backends.queue.release([first.id], worker_id=W1)
    assert ids(pop(backends, worker=W2)) == [first.id, later.id]

    retried = make_job()
    backends.queue.enqueue(retried)
    pop(backends, n=1, worker=W1)
    newer = make_job()
    backends.clock.advance(1)
    backends.queue.enqueue(newer)
    backends.queue.nack(retried.id, retry_at=backends.clock.time() - 0.5, worker_id=W1)
    assert ids(pop(backends, worker=W2)) == [retried.id, newer.id]


def test_queues_filter_claims_only_named_queues(backends, make_job):
    a1, b1, c1, a2 = (make_job(queue=q) for q in ("a", "b", "c", "a"))
    backends.queue.enqueue_many([a1, b1, c1, a2])

    picked = pop(backends, queues=["a", "c"])

    assert ids(picked) == [a1.id, c1.id, a2.id]
    assert backends.queue.qsize() == 1
    assert ids(pop(backends, queues=["nowhere"])) == []
    assert ids(pop(backends)) == [b1.id]


@pytest.mark.parametrize("names", [["it's 100%"], ["it's 100%", "%(queue)s", "a\\b ☃"]])
def test_queue_names_of_any_text_are_claimed_by_their_workers_alone(backends, make_job, names):
    """A store may write the names a worker claims from into its statements (PostgreSQL
    does, for the planner): quotes, percent signs and backslashes are names like any other."""
    mine = [make_job(queue=name) for name in names]
    other = make_job(queue="it")
    backends.queue.enqueue_many([*mine, other])

    assert ids(pop(backends, queues=names)) == [job.id for job in mine]
    assert ids(pop(backends, queues=names)) == []
    assert ids(pop(backends)) == [other.id]


def test_re_enqueueing_a_waiting_id_replaces_it(backends, make_job):
    job = make_job(args=("old",))
    backends.queue.enqueue(job)
    backends.queue.enqueue(Job(job.func_name, args=("new",), id=job.id))

    assert backends.queue.qsize() == 1
    (claimed,) = pop(backends)
    assert list(claimed.args) == ["new"]


# -- batches ----------------------------------------------------------------------
def test_enqueue_many_writes_a_batch_of_1000(backends, make_job):
    jobs = [make_job() for _ in range(1000)]

    backends.queue.enqueue_many(jobs)

    assert backends.queue.qsize() == 1000
    assert ids(pop(backends, 1000)) == ids(jobs)


def test_enqueue_many_is_all_or_nothing(backends, make_job):
    jobs = [make_job() for _ in range(999)]
    jobs.insert(500, make_job(args=(object(),)))

    with pytest.raises(SerializationError) as caught:
        backends.queue.enqueue_many(jobs)

    assert caught.value.argument == "argument 0"
    assert backends.queue.qsize() == 0
    assert pop(backends) == []


# -- with the result backend ----------------------------------------------------
def _outcome(job: Job, status: JobStatus, **fields: object) -> Outcome:
    return Outcome(job, status, worker_id=W1, **fields)  # type: ignore[arg-type]


def test_submit_claim_settle_moves_the_record_through_its_statuses(backends, make_job):
    queue, results = backends.queue, backends.results
    job = make_job("reports.build", args=(7,))

    queue.submit([job], results)
    pending = results.get_full(job.id)
    assert pending is not None
    assert pending.status is JobStatus.PENDING
    assert pending.func_name == "reports.build"
    assert pending.has_result is False

    (claimed,) = queue.claim(5, worker_id=W1, lease_secs=LEASE_SECS, results=results)
    running = results.get_full(claimed.id)
    assert running is not None
    assert running.status is JobStatus.RUNNING
    assert running.attempts == 1
    assert [a.status for a in running.history] == ["RUNNING"]

    queue.settle([_outcome(claimed, JobStatus.SUCCESS, result={"rows": 3})], results)

    done = results.get_full(job.id)
    assert done is not None
    assert done.status is JobStatus.SUCCESS
    assert done.result == {"rows": 3}
    assert done.has_result is True
    assert results.get_result(job.id) == {"rows": 3}
    assert [a.status for a in done.history] == ["SUCCESS"]
    assert queue.qsize() == 0
    backends.clock.advance(LEASE_SECS)
    assert pop(backends) == [], "a settled job is acked"


def test_submit_of_a_future_job_records_it_scheduled(backends, make_job):
    job = make_job(due_at=backends.clock.time() + 60)

    backends.queue.submit([job], backends.results)

    record = backends.results.get_full(job.id)
    assert record is not None
    assert record.status is JobStatus.SCHEDULED


def test_settling_a_retry_reschedules_the_job(backends, make_job):
    queue, results = backends.queue, backends.results
    job = make_job()
    queue.submit([job], results)
    (claimed,) = queue.claim(1, worker_id=W1, lease_secs=LEASE_SECS, results=results)
    retry_at = backends.clock.time() + 5
    error = ErrorInfo("ValueError", "try again", "Traceback ...")

    queue.settle([_outcome(claimed, JobStatus.RETRYING, error=error, retry_at=retry_at)], results)

    record = results.get_full(job.id)
    assert record is not None
    assert record.status is JobStatus.RETRYING
    assert record.error_type == "ValueError"
    assert queue.claim(1, worker_id=W2, lease_secs=LEASE_SECS, results=results) == []
    backends.clock.advance(5)
    (again,) = queue.claim(1, worker_id=W2, lease_secs=LEASE_SECS, results=results)
    assert again.attempts == 2
    record = results.get_full(job.id)
    assert record is not None
    assert record.status is JobStatus.RUNNING
    assert [a.status for a in record.history] == ["RETRYING", "RUNNING"]
    assert record.history[0].error_message == "try again"


def test_settling_a_failure_records_the_error(backends, make_job):
    queue, results = backends.queue, backends.results
    job = make_job()
    queue.submit([job], results)
    (claimed,) = queue.claim(1, worker_id=W1, lease_secs=LEASE_SECS, results=results)

    queue.settle([_outcome(claimed, JobStatus.FAILED, error=ErrorInfo("KeyError", "'x'"))], results)

    assert results.get_error(job.id) == "KeyError: 'x'"
    record = results.get_full(job.id)
    assert record is not None
    assert record.status is JobStatus.FAILED
    assert queue.qsize() == 0


def test_cancel_job_records_cancelled_only_for_waiting_jobs(backends, make_job):
    queue, results = backends.queue, backends.results
    waiting, running = make_job(), make_job()
    queue.submit([running, waiting], results)
    queue.claim(1, worker_id=W1, lease_secs=LEASE_SECS, results=results)

    assert queue.cancel_job(waiting.id, results) is True
    assert queue.cancel_job(running.id, results) is False

    record = results.get_full(waiting.id)
    assert record is not None
    assert record.status is JobStatus.CANCELLED
    still = results.get_full(running.id)
    assert still is not None
    assert still.status is JobStatus.RUNNING


# -- poison input (SQLite stores payload bytes) ----------------------------------
def test_corrupt_payload_is_quarantined_and_the_rest_still_come_out(sqlite_backends, make_job):
    b = sqlite_backends
    good_before, bad, good_after = make_job(), make_job(), make_job()
    b.queue.submit([good_before, bad, good_after], b.results)
    assert b.queue_db is not None
    with sqlite3.connect(b.queue_db) as conn:
        conn.execute("UPDATE nuvom_queue SET payload = x'00ff' WHERE id = ?", (bad.id,))
    conn.close()

    claimed = b.queue.claim(10, worker_id=W1, lease_secs=LEASE_SECS, results=b.results)

    assert ids(claimed) == [good_before.id, good_after.id]
    stats = b.queue.stats()
    assert stats["quarantined"] == 1
    assert stats["waiting"] == 0
    record = b.results.get_full(bad.id)
    assert record is not None
    assert record.status is JobStatus.FAILED
    assert record.error_type == "CorruptJob"
    b.clock.advance(LEASE_SECS)
    assert sorted(ids(pop(b, worker=W2))) == sorted([good_before.id, good_after.id])
