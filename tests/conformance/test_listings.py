"""Listings for people, on every engine: job records found by status, queue, task, time
and a search, newest first and paged by keyset; what ended in a window; a finished job's
record deleted; a queue purged."""

from __future__ import annotations

from nuvom.backends.contract import JobQuery
from nuvom.job import Job, JobStatus
from nuvom.records import ErrorInfo, Outcome

from .conftest import Backends

LEASE_SECS = 30.0


def _run(backends: Backends, jobs: list[Job], *, fail: set[str] = frozenset()) -> None:  # type: ignore[assignment]
    """Submit ``jobs``, claim and settle each (one second apart), failing those in ``fail``."""
    backends.queue.submit(jobs, backends.results)
    for _ in jobs:
        [claimed] = backends.queue.claim(1, worker_id="w", lease_secs=LEASE_SECS,
                                         results=backends.results)  # fmt: skip
        backends.clock.advance(0.5)
        failed = claimed.id in fail
        outcome = Outcome(claimed, JobStatus.FAILED if failed else JobStatus.SUCCESS,
                          result=claimed.args[0], worker_id="w",
                          error=ErrorInfo("ValueError", "no") if failed else None,
                          started_at=backends.clock.time() - 0.5,
                          finished_at=backends.clock.time())  # fmt: skip
        backends.queue.settle([outcome], backends.results)
        backends.clock.advance(0.5)


def _ids(records: list) -> list[str]:  # type: ignore[type-arg]
    return [r.id for r in records]


def _jobs() -> list[Job]:
    return [
        Job("shop.charge", id="a1", args=("alice", 10), queue="billing"),
        Job("shop.charge", id="a2", args=("bob", 20), queue="billing"),
        Job("shop.ship", id="a3", args=("alice",), queue="post"),
        Job("shop.ship", id="a4", args=("carol",), queue="post"),
    ]


def test_found_newest_first_and_filtered(backends: Backends):
    start = backends.clock.time()
    _run(backends, _jobs(), fail={"a2"})
    results = backends.results

    assert _ids(results.find_jobs(JobQuery())) == ["a4", "a3", "a2", "a1"]
    assert _ids(results.find_jobs(JobQuery(status=JobStatus.FAILED))) == ["a2"]
    assert _ids(results.find_jobs(JobQuery(queue="post"))) == ["a4", "a3"]
    assert _ids(results.find_jobs(JobQuery(tasks=("shop.charge",)))) == ["a2", "a1"]
    assert _ids(results.find_jobs(JobQuery(search="alice"))) == ["a3", "a1"], "in the arguments"
    assert _ids(results.find_jobs(JobQuery(search="a4"))) == ["a4"], "in the id"
    assert _ids(results.find_jobs(JobQuery(since=start + 2, until=start + 3.5))) == ["a3"]


def test_pages_follow_the_keyset(backends: Backends):
    _run(backends, _jobs())
    results = backends.results
    first = results.find_jobs(JobQuery(limit=3))
    assert _ids(first) == ["a4", "a3", "a2"]
    last = first[-1]
    after = results.find_jobs(JobQuery(limit=3, before=(last.updated_at or 0.0, last.id)))
    assert _ids(after) == ["a1"], "the next page starts right after the last one shown"


def test_activity_counts_what_ended_per_bucket_and_run_times_per_task(backends: Backends):
    start = backends.clock.time()
    _run(backends, _jobs(), fail={"a2"})
    activity = backends.results.activity(since=start, until=start + 4, bucket_secs=2.0)
    assert [b["SUCCESS"] for b in activity.buckets] == [1, 2, 0]
    assert [b["FAILED"] for b in activity.buckets] == [1, 0, 0]
    p50, p95, count = activity.run_times["shop.ship"]
    assert count == 2
    assert abs(p50 - 0.5) < 1e-6
    assert abs(p95 - 0.5) < 1e-6


def test_a_finished_jobs_record_can_be_deleted(backends: Backends):
    _run(backends, _jobs()[:1])
    backends.queue.submit([Job("shop.charge", id="w1", args=("x", 1))], backends.results)
    assert backends.results.delete_job("w1") is False, "a waiting job is cancelled, not deleted"
    assert backends.results.delete_job("a1") is True
    assert backends.results.get_full("a1") is None
    assert backends.results.delete_job("a1") is False


def test_a_purge_cancels_one_queues_waiting_jobs(backends: Backends):
    backends.queue.submit(_jobs(), backends.results)
    [claimed] = backends.queue.claim(1, worker_id="w", lease_secs=LEASE_SECS,
                                     results=backends.results)  # fmt: skip
    assert claimed.id == "a1"
    assert backends.queue.purge("billing", backends.results) == 1, "the claimed one stays"
    assert backends.results.get_status("a2") is JobStatus.CANCELLED
    assert backends.queue.qsize() == 2
