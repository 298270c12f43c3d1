"""Redis keeps the records a job that comes after others will be fed, whatever the TTL says.

A finished job's hash normally expires ``NUVOM_RESULT_TTL_SECS`` after it finished; while a
job that comes after it (parked, released, running or retrying) has not finished for good,
it does not expire and ``prune`` passes it by. Once the last of those finished, it gets its
normal expiry. Checked on real Redis by its TTLs (``-1``: no expiry), on a ``FakeClock``.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from nuvom.backends.contract import BaseJobQueue
from nuvom.backends.memory.queue import MemoryJobQueue
from nuvom.backends.redis.queue import RedisJobQueue
from nuvom.backends.redis.results import RedisResultBackend
from nuvom.job import Job, JobStatus
from nuvom.records import ErrorInfo, Outcome

from .helpers import wait_for
from .servers import redis_queue_on_fake_clock

LEASE_SECS = 30.0
TTL_SECS = 60
NO_EXPIRY = -1  # what TTL says of a key that never expires


@pytest.fixture
def queue() -> Iterator[RedisJobQueue]:
    with redis_queue_on_fake_clock() as redis_queue:
        yield redis_queue


@pytest.fixture
def results(queue: RedisJobQueue) -> Iterator[RedisResultBackend]:
    backend = RedisResultBackend(queue.url, prefix=queue.prefix, clock=queue.clock,
                                 ttl_secs=TTL_SECS)  # fmt: skip
    yield backend
    backend.close()


def _job(name: str, *after: str, feed: str = "one") -> Job:
    origin = {"workflow": "wf", "after": list(after), "feed": feed} if after else None
    return Job("redis.retention", id=name, origin=origin)


def _claim(queue: BaseJobQueue, results: RedisResultBackend) -> dict[str, Job]:
    jobs = queue.claim(100, worker_id="w1", lease_secs=LEASE_SECS, results=results)
    return {job.id: job for job in jobs}


def _settle(
    queue: BaseJobQueue,
    results: RedisResultBackend,
    job: Job,
    status: JobStatus = JobStatus.SUCCESS,
    *,
    retry_at: float | None = None,
) -> None:
    error = None if status is JobStatus.SUCCESS else ErrorInfo("ValueError", f"{job.id} broke")
    outcome = Outcome(job, status, result=job.id, error=error, worker_id="w1",
                      finished_at=results.clock.time(), retry_at=retry_at)  # fmt: skip
    queue.settle([outcome], results)


def _ttls(results: RedisResultBackend, *ids: str) -> dict[str, int]:
    """Each job's record's TTL in seconds (-1: kept for ever, -2: gone); its attempts list,
    when it has one, must say the same."""
    client, prefix = results.client, results.prefix
    ttls = {}
    for job_id in ids:
        ttl = client.ttl(f"{prefix}:r:{job_id}")
        if client.exists(f"{prefix}:a:{job_id}"):
            assert client.ttl(f"{prefix}:a:{job_id}") == ttl, f"{job_id}'s attempts expire alike"
        ttls[job_id] = ttl
    return ttls


def _expiring(ttl: int) -> bool:
    return 0 < ttl <= TTL_SECS


def _kept_keys(results: RedisResultBackend) -> list[str]:
    return sorted(k.decode() for k in results.client.scan_iter(f"{results.prefix}:keep:*"))


def test_a_chords_members_are_kept_until_its_body_finished_for_good(
    queue: RedisJobQueue, results: RedisResultBackend
) -> None:
    queue.submit([_job("a"), _job("b"), _job("body", "a", "b", feed="list"), _job("alone")],
                 results)  # fmt: skip
    claimed = _claim(queue, results)
    assert sorted(claimed) == ["a", "alone", "b"]
    for job_id in ("a", "alone"):
        _settle(queue, results, claimed[job_id])

    ttls = _ttls(results, "a", "alone")
    assert ttls["a"] == NO_EXPIRY, "the body is fed its result"
    assert _expiring(ttls["alone"])
    _settle(queue, results, claimed["b"])  # the last member: the body is released
    assert _ttls(results, "a", "b") == {"a": NO_EXPIRY, "b": NO_EXPIRY}, "the body is not done"

    queue.clock.advance(10 * TTL_SECS)  # type: ignore[attr-defined]
    assert results.prune(older_than=queue.clock.time()) == 1, "only the job no one waits for"
    assert results.get_status("alone") is None
    assert results.get_status("a") is JobStatus.SUCCESS

    (body,) = _claim(queue, results).values()
    assert _ttls(results, "a", "b") == {"a": NO_EXPIRY, "b": NO_EXPIRY}, "released, running"
    _settle(queue, results, body, JobStatus.RETRYING, retry_at=queue.clock.time())
    assert results.get_status("body") is JobStatus.RETRYING
    assert _ttls(results, "a", "b") == {"a": NO_EXPIRY, "b": NO_EXPIRY}, "it runs again"
    assert results.prune(older_than=queue.clock.time() + 1) == 0

    (body,) = _claim(queue, results).values()
    _settle(queue, results, body)

    ttls = _ttls(results, "a", "b", "body")
    assert all(_expiring(ttl) for ttl in ttls.values()), ttls
    assert _kept_keys(results) == []
    assert results.prune(older_than=queue.clock.time() + 1) == 3


def test_a_chains_steps_are_all_kept_until_its_last_step_finished(
    queue: RedisJobQueue, results: RedisResultBackend
) -> None:
    """A step is let go of once what comes after it is let go of: none is pruned while the
    workflow runs (its handle walks back along them)."""
    queue.submit([_job("a"), _job("b", "a"), _job("c", "b")], results)
    for step in ("a", "b"):
        (job,) = _claim(queue, results).values()
        assert job.id == step
        _settle(queue, results, job)
        ttls = _ttls(results, "a", "b")
        assert ttls["a"] == NO_EXPIRY, (step, ttls)
        assert ttls["b"] == NO_EXPIRY, (step, ttls)
        assert results.prune(older_than=queue.clock.time() + 1) == 0

    (c,) = _claim(queue, results).values()
    _settle(queue, results, c)

    ttls = _ttls(results, "a", "b", "c")
    assert all(_expiring(ttl) for ttl in ttls.values()), ttls
    assert _kept_keys(results) == []


def test_a_failed_member_is_kept_for_the_errback_until_it_ran(
    queue: RedisJobQueue, results: RedisResultBackend
) -> None:
    queue.submit([_job("a"), _job("b", "a"), _job("on_err", "a", "b", feed="failure")], results)
    (a,) = _claim(queue, results).values()
    _settle(queue, results, a, JobStatus.FAILED)  # b is cancelled, on_err released

    assert results.get_status("b") is JobStatus.CANCELLED
    assert _ttls(results, "a", "b") == {"a": NO_EXPIRY, "b": NO_EXPIRY}, "on_err reads them"
    assert results.prune(older_than=queue.clock.time() + 1) == 0

    (on_err,) = _claim(queue, results).values()
    _settle(queue, results, on_err)

    ttls = _ttls(results, "a", "b", "on_err")
    assert all(_expiring(ttl) for ttl in ttls.values()), ttls


def test_an_errback_not_needed_lets_go_of_the_members_it_was_cancelled_for(
    queue: RedisJobQueue, results: RedisResultBackend
) -> None:
    queue.submit([_job("a"), _job("b", "a"), _job("on_err", "a", "b", feed="failure")], results)
    (a,) = _claim(queue, results).values()
    _settle(queue, results, a)
    assert _ttls(results, "a") == {"a": NO_EXPIRY}
    (b,) = _claim(queue, results).values()
    _settle(queue, results, b)  # every member succeeded: the errback is cancelled

    assert results.get_status("on_err") is JobStatus.CANCELLED
    ttls = _ttls(results, "a", "b", "on_err")
    assert all(_expiring(ttl) for ttl in ttls.values()), ttls


def test_a_dependency_finished_before_its_dependent_was_submitted_is_kept_again(
    queue: RedisJobQueue, results: RedisResultBackend
) -> None:
    queue.submit([_job("a")], results)
    (a,) = _claim(queue, results).values()
    _settle(queue, results, a)
    assert _expiring(_ttls(results, "a")["a"])

    queue.submit([_job("then", "a")], results)  # handle.then on a finished job
    assert _ttls(results, "a") == {"a": NO_EXPIRY}
    (then,) = _claim(queue, results).values()
    _settle(queue, results, then)

    assert _expiring(_ttls(results, "a")["a"])


def test_cancelling_the_job_that_waits_lets_its_dependency_expire(
    queue: RedisJobQueue, results: RedisResultBackend
) -> None:
    queue.submit([_job("a"), _job("b"), _job("c", "a", "b"), _job("d", "a")], results)
    claimed = _claim(queue, results)
    _settle(queue, results, claimed["a"])
    assert queue.cancel_job("c", results) is True

    assert _ttls(results, "a") == {"a": NO_EXPIRY}, "d still waits for it"
    (d,) = _claim(queue, results).values()
    _settle(queue, results, d)
    assert _expiring(_ttls(results, "a")["a"])
    _settle(queue, results, claimed["b"])
    assert _expiring(_ttls(results, "b")["b"]), "c, which waited for it, was cancelled"
    assert _kept_keys(results) == []


def test_a_resubmitted_dependent_lets_go_of_what_it_no_longer_waits_for(
    queue: RedisJobQueue, results: RedisResultBackend
) -> None:
    queue.submit([_job("a"), _job("b"), _job("c", "a")], results)
    claimed = _claim(queue, results)
    _settle(queue, results, claimed["a"])
    _settle(queue, results, claimed["b"])
    ttls = _ttls(results, "a", "b")
    assert ttls["a"] == NO_EXPIRY
    assert _expiring(ttls["b"])

    queue.submit([_job("c", "b")], results)  # replaces c: it waits for b now, not a

    assert _expiring(_ttls(results, "a")["a"])
    assert _ttls(results, "b") == {"b": NO_EXPIRY}


def test_a_redis_result_backend_keeps_them_for_another_queue_too(
    results: RedisResultBackend,
) -> None:
    queue = MemoryJobQueue(clock=results.clock)  # two steps: the records are written alone
    queue.submit([_job("a"), _job("b", "a")], results)
    (a,) = _claim(queue, results).values()
    _settle(queue, results, a)
    assert _ttls(results, "a") == {"a": NO_EXPIRY}
    (b,) = _claim(queue, results).values()
    _settle(queue, results, b)

    assert _expiring(_ttls(results, "a")["a"])


def test_a_kept_record_expires_once_let_go(queue: RedisJobQueue) -> None:
    results = RedisResultBackend(queue.url, prefix=queue.prefix, clock=queue.clock, ttl_secs=1)
    try:
        queue.submit([_job("a"), _job("b", "a")], results)
        (a,) = _claim(queue, results).values()
        _settle(queue, results, a)
        (b,) = _claim(queue, results).values()
        assert results.client.pttl(f"{results.prefix}:r:a") == NO_EXPIRY
        _settle(queue, results, b)

        wait_for(lambda: results.get_status("a") is None, timeout=10, what="a's record to expire")
    finally:
        results.close()


def test_a_workflow_recorded_by_the_previous_version_still_finishes(
    queue: RedisJobQueue, results: RedisResultBackend
) -> None:
    """What a store written before this change holds: records with no list of what their
    job waits for, and no keep sets. Nothing is kept, as then, and nothing breaks."""
    queue.submit([_job("a"), _job("b", "a")], results)
    results.client.hdel(f"{results.prefix}:r:b", "after")
    for key in _kept_keys(results):
        results.client.delete(key)
    (a,) = _claim(queue, results).values()
    _settle(queue, results, a)
    assert _expiring(_ttls(results, "a")["a"])
    (b,) = _claim(queue, results).values()
    _settle(queue, results, b)

    assert results.get_status("b") is JobStatus.SUCCESS
    assert _expiring(_ttls(results, "b")["b"])


def test_with_no_ttl_prune_still_passes_by_what_a_job_to_come_needs(queue: RedisJobQueue) -> None:
    results = RedisResultBackend(queue.url, prefix=queue.prefix, clock=queue.clock, ttl_secs=0)
    member = 'm"é\\1'  # any id: the list of what a job waits for is JSON
    try:
        queue.submit([_job(member), _job("body", member, feed="list"), _job("alone")], results)
        claimed = _claim(queue, results)
        _settle(queue, results, claimed[member])
        _settle(queue, results, claimed["alone"])
        assert _ttls(results, member, "alone") == {member: NO_EXPIRY, "alone": NO_EXPIRY}

        assert results.prune(older_than=queue.clock.time() + 1) == 1
        assert results.get_status(member) is JobStatus.SUCCESS
        (body,) = _claim(queue, results).values()
        _settle(queue, results, body)

        assert _ttls(results, member, "body") == {member: NO_EXPIRY, "body": NO_EXPIRY}
        assert results.prune(older_than=queue.clock.time() + 1) == 2
        assert _kept_keys(results) == []
    finally:
        results.close()
