"""Redis claims are atomic and idempotent: garbage in a stream, a bad record mid-claim and
a command sent twice never strand, repeat or lose a job.

Each case was once reproducible: a script error part-way left its batch delivered but
never leased; entries that were not nuvom's made the group cursor lag, so claimed jobs
were chosen again; a retried enqueue stored its jobs twice.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from nuvom.backends.redis.client import retried
from nuvom.backends.redis.queue import RedisJobQueue
from nuvom.job import Job

from .servers import redis_queue_on_fake_clock

LEASE_SECS = 30.0
JOBS = 20


@pytest.fixture
def queue() -> Iterator[RedisJobQueue]:
    with redis_queue_on_fake_clock() as redis_queue:
        yield redis_queue


def _claim_all(queue: RedisJobQueue, batch: int) -> list[str]:
    """Claim until nothing comes back; every claimed id, in order."""
    ids: list[str] = []
    for _ in range(JOBS * 2):
        got = queue.claim_batch(batch, worker_id="w1", lease_secs=LEASE_SECS).jobs
        if not got:
            return ids
        ids += [job.id for job in got]
    raise AssertionError("claims never ran dry")


def _stream(queue: RedisJobQueue) -> str:
    return f"{queue.prefix}:s:default:0"


@pytest.mark.parametrize("batch", [1, 2, 7])
def test_entries_that_are_not_jobs_are_dropped_and_each_job_is_claimed_once(
    queue: RedisJobQueue, batch: int
) -> None:
    jobs = [Job("add", args=(n, n)) for n in range(JOBS)]
    client: Any = queue.client
    for n, job in enumerate(jobs):
        queue.enqueue(job)
        if n % 3 == 0:  # garbage between the jobs: foreign fields, unknown ids, a duplicate
            client.xadd(_stream(queue), {"foo": "bar"})
            client.xadd(_stream(queue), {"id": "no-such-job"})
            client.xadd(_stream(queue), {"id": jobs[0].id})

    ids = _claim_all(queue, batch)

    assert sorted(ids) == sorted(job.id for job in jobs), "each job exactly once"
    assert len(ids) == len(set(ids))
    stats = queue.stats()
    assert (stats["pending"], stats["running"]) == (0, JOBS), "the counts never go negative"


def test_a_bad_record_mid_claim_is_quarantined_and_the_rest_of_the_batch_is_leased(
    queue: RedisJobQueue,
) -> None:
    jobs = [Job("add", args=(n, n)) for n in range(JOBS)]
    queue.enqueue_many(jobs)
    poison = jobs[5]
    queue.client.hset(f"{queue.prefix}:job:{poison.id}", "priority", "1.5")

    claimed = queue.claim_batch(JOBS, worker_id="w1", lease_secs=LEASE_SECS)

    assert [job.id for job in claimed.jobs] == [job.id for job in jobs if job is not poison]
    assert [job_id for job_id, _ in claimed.quarantined] == [poison.id]
    assert "priority" in claimed.quarantined[0][1]
    held = queue.heartbeat([job.id for job in jobs], worker_id="w1", lease_secs=LEASE_SECS)
    assert sorted(held) == sorted(job.id for job in claimed.jobs), "every other job is leased"
    assert queue.stats()["quarantined"] == 1
    assert queue.claim_batch(JOBS, worker_id="w2", lease_secs=LEASE_SECS).jobs == []


def test_an_expired_lease_on_a_spoilt_record_is_quarantined_not_stranded(
    queue: RedisJobQueue,
) -> None:
    jobs = [Job("add", args=(n, n)) for n in range(3)]
    queue.enqueue_many(jobs)
    assert len(queue.claim_batch(3, worker_id="w1", lease_secs=LEASE_SECS).jobs) == 3
    queue.client.hset(f"{queue.prefix}:job:{jobs[1].id}", "attempts", "many")
    queue.clock.advance(LEASE_SECS + 1)  # type: ignore[attr-defined]

    claimed = queue.claim_batch(3, worker_id="w2", lease_secs=LEASE_SECS)

    assert [job.id for job in claimed.jobs] == [jobs[0].id, jobs[2].id]
    assert [job_id for job_id, _ in claimed.quarantined] == [jobs[1].id]


def test_an_enqueue_sent_twice_stores_its_jobs_once(queue: RedisJobQueue) -> None:
    jobs = [Job("add", args=(n, n)) for n in range(10)]
    args = queue.enqueue_args(jobs, token="retry-me")
    script = queue.script("ENQUEUE")

    assert script(args=args) == 1
    assert script(args=args) == 0, "the second send is recognised by its token"

    assert queue.qsize() == len(jobs)
    assert sorted(_claim_all(queue, 4)) == sorted(job.id for job in jobs)


def test_a_lost_reply_is_resent_and_the_jobs_are_stored_once(queue: RedisJobQueue) -> None:
    import redis

    jobs = [Job("add", args=(n, n)) for n in range(10)]
    args = queue.enqueue_args(jobs, token="lost-reply")
    sends = []

    def send() -> Any:
        sends.append(queue.script("ENQUEUE")(args=args))
        if len(sends) == 1:  # applied on the server, but the reply never came back
            raise redis.ConnectionError("reply lost")
        return sends[-1]

    retried(queue.url, send)

    assert sends == [1, 0]
    assert queue.qsize() == len(jobs)
    assert sorted(_claim_all(queue, 3)) == sorted(job.id for job in jobs)


def test_a_spoilt_scheduled_job_is_quarantined_by_a_claim_that_reports_it(
    queue: RedisJobQueue,
) -> None:
    clock: Any = queue.clock
    later = Job("add", args=(1, 1), due_at=clock.time() + 5)
    queue.enqueue(later)
    queue.client.hset(f"{queue.prefix}:job:{later.id}", "due", "soon")
    clock.advance(10)
    good = Job("add", args=(2, 2))
    queue.enqueue(good)  # an enqueue moves due jobs too, but leaves a bad one for a claim

    claimed = queue.claim_batch(5, worker_id="w1", lease_secs=LEASE_SECS)

    assert [job.id for job in claimed.jobs] == [good.id]
    assert [job_id for job_id, _ in claimed.quarantined] == [later.id], "reported, to record"
