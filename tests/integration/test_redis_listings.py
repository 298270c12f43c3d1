"""Redis answers the dashboard's listings from its history index, a page per round trip.

``find_jobs`` walks the sorted set of job ids by last update (the status's own, for a
status filter) from the keyset down, so a page costs one round trip however many jobs
there are and however many finished since the page before; ``delete_job`` takes a record
out of every index at once. Round trips are counted on the client's connections.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import pytest
from redis.connection import AbstractConnection

from nuvom.backends.contract import JobQuery
from nuvom.backends.redis.queue import RedisJobQueue
from nuvom.backends.redis.results import RedisResultBackend
from nuvom.job import Job, JobStatus
from nuvom.records import ErrorInfo, JobRecord, Outcome

from .servers import redis_queue_on_fake_clock

LEASE_SECS = 30.0
TTL_SECS = 60
NO_EXPIRY = -1  # what TTL says of a key that never expires
BATCH = 60  # jobs settled in one script: they share one update time, ordered by id


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


@pytest.fixture
def sent(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """How many times a Redis connection has sent something since (a round trip each)."""
    count = [0]
    send = AbstractConnection.send_packed_command

    def counted(self: AbstractConnection, command: Any, check_health: bool = True) -> None:
        count[0] += 1
        send(self, command, check_health)

    monkeypatch.setattr(AbstractConnection, "send_packed_command", counted)
    return count


def _finish(
    queue: RedisJobQueue,
    results: RedisResultBackend,
    jobs: Sequence[Job],
    *,
    fail: frozenset[str] = frozenset(),
) -> None:
    """Submit ``jobs`` and settle them ``BATCH`` at a time, a second apart."""
    queue.submit(jobs, results)
    while claimed := queue.claim(BATCH, worker_id="w1", lease_secs=LEASE_SECS, results=results):
        now = queue.clock.time()
        queue.settle([_outcome(job, JobStatus.FAILED if job.id in fail else JobStatus.SUCCESS, now)
                      for job in claimed], results)  # fmt: skip
        queue.clock.advance(1.0)  # type: ignore[attr-defined]


def _outcome(job: Job, status: JobStatus, now: float, retry_at: float | None = None) -> Outcome:
    error = None if status is JobStatus.SUCCESS else ErrorInfo("ValueError", f"{job.id} broke")
    return Outcome(job, status, result=job.id, error=error, worker_id="w1", started_at=now,
                   finished_at=now, retry_at=retry_at)  # fmt: skip


def _jobs(prefix: str, count: int) -> list[Job]:
    """Jobs on two queues and two tasks, each with its number as its argument."""
    return [Job(f"listing.t{n % 2}", id=f"{prefix}{n:04d}", args=(f"arg-{n}",),
                queue="even" if n % 4 < 2 else "odd") for n in range(count)]  # fmt: skip


def _everything(results: RedisResultBackend) -> list[JobRecord]:
    """Every record newest first, read the old way (offsets into the index)."""
    return results.list_jobs(limit=100_000)


def _find(results: RedisResultBackend, sent: list[int], query: JobQuery) -> list[JobRecord]:
    before = sent[0]
    found = results.find_jobs(query)
    assert sent[0] - before == 1, f"one round trip for {query}, not {sent[0] - before}"
    return found


def _keyset(record: JobRecord) -> tuple[float, str]:
    return (record.updated_at or 0.0, record.id)


def test_keyset_pages_stay_right_while_jobs_finish_between_them(
    queue: RedisJobQueue, results: RedisResultBackend, sent: list[int]
) -> None:
    _finish(queue, results, _jobs("old", 600))
    expected = [r.id for r in _everything(results)]
    assert len(expected) == 600
    results.find_jobs(JobQuery(limit=1))  # the script is loaded: later calls send its digest

    shown: list[str] = []
    page = _find(results, sent, JobQuery(limit=45))
    for turn in range(100):
        if not page:
            break
        shown += [r.id for r in page]
        # Between two pages, newer jobs finish, and the last one shown is sometimes deleted
        # (the next page then starts after where it was, among the jobs that share its time).
        _finish(queue, results, _jobs(f"new{turn:02d}-", 7))
        if turn % 3 == 0:
            assert results.delete_job(page[-1].id)
        page = _find(results, sent, JobQuery(limit=45, before=_keyset(page[-1])))
    assert shown == expected, "each job once, newest first, ties by id descending"


def test_a_window_and_filters_read_only_what_they_need(
    queue: RedisJobQueue, results: RedisResultBackend, sent: list[int]
) -> None:
    start = queue.clock.time()
    _finish(
        queue, results, _jobs("j", 1200), fail=frozenset(f"j{n:04d}" for n in range(0, 1200, 3))
    )
    everything = _everything(results)
    results.find_jobs(JobQuery(limit=1))

    since, until = start + 5, start + 8  # the jobs of three settles, mid-history
    window = _find(results, sent, JobQuery(since=since, until=until, limit=1000))
    assert [r.id for r in window] == [r.id for r in everything
                                      if since <= (r.updated_at or 0) < until]  # fmt: skip
    assert len(window) == 3 * BATCH

    query = JobQuery(status=JobStatus.FAILED, queue="odd", tasks=("listing.t1",), limit=40)
    assert [r.id for r in _find(results, sent, query)] == [r.id for r in everything
                                                           if query.matches(r)][:40]  # fmt: skip
    found = _find(results, sent, JobQuery(search="arg-117", limit=5))
    assert [r.id for r in found] == ["j1179", "j1178", "j1177", "j1176", "j1175"]
    assert found[0].args == ["arg-1179"], "a listing reads the call from the record"


def test_a_deleted_job_leaves_no_listing_count_or_key_behind(
    queue: RedisJobQueue, results: RedisResultBackend
) -> None:
    _finish(queue, results, [Job("listing.t", id="ok", queue="q1"),
                             Job("listing.t", id="bad", queue="q2"),
                             Job("listing.t", id="bad2", queue="q2")],
            fail=frozenset({"bad", "bad2"}))  # fmt: skip
    now = queue.clock.time()
    queue.submit([Job("listing.t", id="gone"), Job("listing.t", id="later", due_at=now + 99),
                  Job("listing.t", id="run"), Job("listing.t", id="again"),
                  Job("listing.t", id="wait")], results)  # fmt: skip
    assert queue.cancel_job("gone", results)
    claimed = {j.id: j for j in queue.claim(2, worker_id="w1", lease_secs=LEASE_SECS,
                                            results=results)}  # fmt: skip
    assert sorted(claimed) == ["again", "run"]
    queue.settle([_outcome(claimed["again"], JobStatus.RETRYING, now, retry_at=now + 50)], results)
    unfinished = {"later": "SCHEDULED", "run": "RUNNING", "again": "RETRYING", "wait": "PENDING"}
    assert {i: results.get_status(i) for i in unfinished} == unfinished
    for job_id in unfinished:
        assert results.delete_job(job_id) is False, f"{job_id} is not finished: cancel it first"
    assert results.delete_job("no-such-job") is False
    assert results.status_counts()["FAILED"] == 2
    assert results.failed_by_queue() == {"q2": 2}

    for job_id in ("bad", "ok", "gone"):
        assert results.delete_job(job_id) is True
    for job_id in ("bad", "ok", "gone"):
        assert results.delete_job(job_id) is False, "already gone"
        assert results.get_full(job_id) is None
    left = {"bad2", *unfinished}
    assert {r.id for r in results.find_jobs(JobQuery())} == left
    assert {r.id for r in results.list_jobs(limit=100)} == left
    assert [r.id for r in results.find_jobs(JobQuery(status=JobStatus.FAILED))] == ["bad2"]
    assert [r.id for r in results.find_jobs(JobQuery(queue="q2"))] == ["bad2"]
    assert results.find_jobs(JobQuery(status=JobStatus.CANCELLED)) == []
    assert results.status_counts() == {"FAILED": 1, **dict.fromkeys(unfinished.values(), 1)}
    assert results.failed_by_queue() == {"q2": 1}
    client, prefix = results.client, results.prefix
    for job_id in ("bad", "ok", "gone"):
        assert not client.exists(f"{prefix}:r:{job_id}", f"{prefix}:a:{job_id}")
        index_keys = [f"{prefix}:h", *(f"{prefix}:h:{s.value}" for s in JobStatus)]
        assert all(client.zscore(key, job_id) is None for key in index_keys), job_id


def _step(name: str, *after: str) -> Job:
    origin = {"workflow": "wf", "after": list(after), "feed": "one"} if after else None
    return Job("listing.step", id=name, origin=origin)


def test_deleting_a_workflow_step_lets_go_of_what_it_held(
    queue: RedisJobQueue, results: RedisResultBackend
) -> None:
    """A step is kept while what comes after it has not finished — deleting it is refused
    then — and once deleted, the steps before it expire rather than being kept for ever."""
    queue.submit([_step("a"), _step("b", "a"), _step("c", "b")], results)
    for step in ("a", "b"):
        [job] = queue.claim(1, worker_id="w1", lease_secs=LEASE_SECS, results=results)
        assert job.id == step
        queue.settle([_outcome(job, JobStatus.SUCCESS, queue.clock.time())], results)
    client, prefix = results.client, results.prefix
    assert client.ttl(f"{prefix}:r:a") == NO_EXPIRY, "b holds it, and c holds b"

    assert not results.delete_job("b"), "c, still to run, is fed b's result"
    [c] = queue.claim(1, worker_id="w1", lease_secs=LEASE_SECS, results=results)
    queue.settle([_outcome(c, JobStatus.SUCCESS, queue.clock.time())], results)
    assert results.delete_job("b")
    assert 0 < client.ttl(f"{prefix}:r:a") <= TTL_SECS
    assert 0 < client.ttl(f"{prefix}:r:c") <= TTL_SECS
    assert list(client.scan_iter(f"{prefix}:keep:*")) == [], "nothing is kept for ever"


def test_a_store_written_by_the_current_code_keeps_listing(
    queue: RedisJobQueue, results: RedisResultBackend, sent: list[int]
) -> None:
    """Records written through both write paths (one script per step, and the result
    backend's own methods), a record with only the fields the first releases wrote, and an
    index entry whose record expired: a backend opened on the store afterwards lists them."""
    _finish(queue, results, _jobs("joint", 300))
    jobs = _jobs("plain", 300)
    results.record_enqueued(jobs)
    results.mark_running(jobs[:200], worker_id="w2", started_at=queue.clock.time())
    queue.clock.advance(1.0)  # type: ignore[attr-defined]
    results.save_outcomes([_outcome(j, JobStatus.SUCCESS, queue.clock.time()) for j in jobs[:100]])
    client, prefix = results.client, results.prefix
    client.hset(f"{prefix}:r:first", mapping={"status": "SUCCESS", "func_name": "listing.t0",
                                              "updated_at": "1.5"})  # fmt: skip
    client.zadd(f"{prefix}:h", {"first": 1.5})
    client.zadd(f"{prefix}:h:SUCCESS", {"first": 1.5})
    client.delete(f"{prefix}:r:joint0150")  # expired: its id lingers in the index a while
    everything = _everything(results)
    assert len(everything) == 600

    reopened = RedisResultBackend(results.url, prefix=prefix, clock=queue.clock)
    try:
        reopened.find_jobs(JobQuery(limit=1))
        shown: list[JobRecord] = []
        page = _find(reopened, sent, JobQuery(limit=250))
        while page:
            shown += page
            page = _find(reopened, sent, JobQuery(limit=250, before=_keyset(page[-1])))
        assert [r.id for r in shown] == [r.id for r in everything]
        assert shown[-1].id == "first"
        running = _find(reopened, sent, JobQuery(status=JobStatus.RUNNING, tasks=("listing.t0",)))
        assert [r.id for r in running] == [f"plain{n:04d}" for n in range(198, 98, -2)]
        assert reopened.delete_job("first")
        assert reopened.find_jobs(JobQuery(since=0.0, until=2.0)) == []
    finally:
        reopened.close()
