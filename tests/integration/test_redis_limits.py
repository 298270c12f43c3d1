"""Flow control on Redis: limits kept by the claim and submit scripts across processes, and
stored state that is old, odd or damaged.

Claimers in spawned processes, each with its own connection, never hold more jobs of a
concurrency key than its limit, and producers racing on one unique key store one job. A
store written before limits existed keeps working; a job whose limits cannot be read is
quarantined alone; flow-control keys of the wrong type never fail a claim; a heartbeat
keeps a slot; a pause outlives the queue object that set it; a resent submit answers with
the duplicates its first send found.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import pytest

from nuvom.backends.redis.queue import RedisJobQueue
from nuvom.backends.redis.results import RedisResultBackend
from nuvom.clock import FakeClock
from nuvom.job import Job
from nuvom.limits import concurrency_tag, rate_tag

from .servers import drop_redis_prefix, redis_queue_on_fake_clock, require_redis, unique_name

try:
    from ..conformance.processes import race_processes
except ImportError:  # tests/ is not a package: pytest put tests/ itself on sys.path
    from conformance.processes import race_processes  # type: ignore[no-redef]

LEASE_SECS = 30.0
LIMITED = "limits.task"
SPAWNED = 6  # claimer or producer processes per race
WAIT_SECS = 60.0  # a spawned process that has not reported by then is killed


@pytest.fixture
def queue() -> Iterator[RedisJobQueue]:
    with redis_queue_on_fake_clock() as redis_queue:
        yield redis_queue


@pytest.fixture
def prefix() -> Iterator[str]:
    """A key prefix for spawned processes, on the real clock; dropped afterwards."""
    require_redis()
    name = unique_name("nuvom-test")
    yield name
    drop_redis_prefix(name)


def _job(name: str, func: str = LIMITED, **origin: Any) -> Job:
    return Job(func, id=name, args=(name,), origin=origin or None)


def _claim(queue: RedisJobQueue, n: int = 100, worker: str = "w1") -> list[str]:
    return sorted(job.id for job in queue.pop_batch(n, worker_id=worker, lease_secs=LEASE_SECS))


# -- races across processes -------------------------------------------------------------
LIMIT = 3
CONC_JOBS = 40


def claim_and_run(url: str, prefix: str, go: Any, reports: Any, name: str) -> None:
    """A spawned claimer: claim two at a time, hold each a moment, ack it; report the span
    (claimed .. acked) of every job it held."""
    try:
        queue = RedisJobQueue(url, prefix=prefix)
        if not go.wait(WAIT_SECS):
            raise TimeoutError("the test never said go")
        spans: list[tuple[str, float, float]] = []
        idle_since = time.monotonic()
        while time.monotonic() - idle_since < 1.5:
            jobs = queue.pop_batch(2, worker_id=name, lease_secs=LEASE_SECS)
            if not jobs:
                time.sleep(0.005)
                continue
            began = time.time()  # after the claim returned: inside the time it was held
            time.sleep(0.02)
            for job in jobs:
                spans.append((job.id, began, time.time()))  # before the ack is sent
                queue.ack(job.id, worker_id=name)
            idle_since = time.monotonic()
        queue.close()
    except BaseException as exc:
        reports.put((name, f"{type(exc).__name__}: {exc}"))
        raise
    reports.put((name, spans))


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_claimers_in_separate_processes_never_hold_more_than_the_limit(prefix: str):
    url = require_redis()
    queue = RedisJobQueue(url, prefix=prefix)
    queue.enqueue_many([_job(f"c{i:02}", conc=["shared", LIMIT]) for i in range(CONC_JOBS)])

    outcomes = race_processes(claim_and_run, [(url, prefix)] * SPAWNED, WAIT_SECS)

    errors = {name: got for name, got in outcomes.items() if isinstance(got, str)}
    assert not errors, errors
    spans = [span for got in outcomes.values() for span in got]
    assert sorted(job_id for job_id, _, _ in spans) == [f"c{i:02}" for i in range(CONC_JOBS)]
    edges = sorted([(start, 1) for _, start, _ in spans] + [(end, -1) for _, _, end in spans])
    most = running = 0
    for _, step in edges:
        running += step
        most = max(most, running)
    assert most <= LIMIT, f"{most} jobs of one key held at once, the limit is {LIMIT}"
    assert queue.qsize() == 0
    queue.close()


def submit_unique(url: str, prefix: str, go: Any, reports: Any, name: str) -> None:
    """A spawned producer: submit 20 jobs of one unique key (the joint submit); report the
    ids stored and the holders it was told of."""
    try:
        queue = RedisJobQueue(url, prefix=prefix)
        results = RedisResultBackend(url, prefix=prefix)
        if not go.wait(WAIT_SECS):
            raise TimeoutError("the test never said go")
        stored, holders = [], set()
        for i in range(20):
            job = _job(f"{name}-{i}", unique=["the-key", 0.0])
            duplicates = queue.submit([job], results)
            if duplicates:
                holders.add(duplicates[job.id])
            else:
                stored.append(job.id)
        queue.close()
        results.close()
    except BaseException as exc:
        reports.put((name, f"{type(exc).__name__}: {exc}"))
        raise
    reports.put((name, (stored, sorted(holders))))


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_producers_in_separate_processes_store_one_job_per_unique_key(prefix: str):
    url = require_redis()
    outcomes = race_processes(submit_unique, [(url, prefix)] * SPAWNED, WAIT_SECS)

    errors = {name: got for name, got in outcomes.items() if isinstance(got, str)}
    assert not errors, errors
    stored = [job_id for got, _ in outcomes.values() for job_id in got]
    assert len(stored) == 1, f"stored {stored}"
    holders = {holder for _, told in outcomes.values() for holder in told}
    assert holders == set(stored), "every duplicate was told the one holder"
    queue = RedisJobQueue(url, prefix=prefix)
    results = RedisResultBackend(url, prefix=prefix)
    assert queue.qsize() == 1
    assert queue.unique_holder("the-key") == stored[0]
    assert results.status_counts() == {"PENDING": 1}, "no duplicate was recorded"
    queue.close()
    results.close()


# -- stored state: old, odd or damaged --------------------------------------------------
def test_a_store_of_an_earlier_version_keeps_working_beside_limited_jobs(queue: RedisJobQueue):
    queue.enqueue_many([Job("old.task", id=f"old{i}") for i in range(2)])
    client: Any = queue.client
    assert client.hexists(f"{queue.prefix}:job:old0", "limits") == 0, "as stored before limits"
    client.set(f"{queue.prefix}:tok:q:earlier", 1)  # a token of an earlier enqueue: '1'
    again = queue.enqueue_args([_job("resent", unique=["k", 0.0])], token="earlier")
    assert queue.script("ENQUEUE")(args=again) == 0, "recognised, as before: nothing stored"
    queue.enqueue_many([_job(f"c{i}", conc=["k", 1]) for i in range(2)])

    assert _claim(queue) == ["c0", "old0", "old1"]
    assert queue.hold_of("c1") == concurrency_tag("k")
    assert queue.unique_holder("k") is None


def test_a_job_whose_limits_cannot_be_read_is_quarantined_alone(queue: RedisJobQueue):
    queue.enqueue_many([_job(f"c{i}", conc=["k", 5]) for i in range(3)])
    client: Any = queue.client
    client.hset(f"{queue.prefix}:job:c1", "limits", '{"conc": ["k", "many"]}')

    claimed = queue.claim_batch(10, worker_id="w1", lease_secs=LEASE_SECS)

    assert sorted(job.id for job in claimed.jobs) == ["c0", "c2"]
    [(job_id, why)] = claimed.quarantined
    assert job_id == "c1"
    assert "concurrency" in why
    assert queue.stats()["quarantined"] == 1


def test_flow_control_keys_of_another_type_never_fail_a_claim(queue: RedisJobQueue):
    client: Any = queue.client
    for name in ("bucket:" + LIMITED, "slots:k", "chold:k", "holds", "paused"):
        client.set(f"{queue.prefix}:{name}", "not nuvom's")
    queue.enqueue_many([_job(f"r{i}", rate=[1.0, 1], conc=["k", 2]) for i in range(3)])

    assert _claim(queue) == ["r0"], "a new bucket: one token; the slots read as empty"
    assert queue.hold_of("r1") == rate_tag(LIMITED)
    queue.clock.advance(1.0)  # type: ignore[attr-defined]
    assert _claim(queue) == ["r1"]
    assert _claim(queue) == [], "two slots taken"


def test_a_heartbeat_keeps_a_jobs_concurrency_slot(queue: RedisJobQueue):
    clock: Any = queue.clock
    queue.enqueue_many([_job(f"c{i}", conc=["k", 1]) for i in range(2)])
    assert _claim(queue) == ["c0"]
    clock.advance(LEASE_SECS - 5)
    assert queue.heartbeat(["c0"], worker_id="w1", lease_secs=LEASE_SECS) == ["c0"]
    clock.advance(10)  # past the first lease, inside the one the heartbeat gave

    assert _claim(queue, worker="w2") == [], "c0 still holds the one slot"
    assert queue.hold_of("c1") == concurrency_tag("k")


def test_a_job_a_worker_gave_back_loses_its_tag_once_claimed(queue: RedisJobQueue):
    from nuvom.backends.contract import Hold

    clock: Any = queue.clock
    queue.enqueue_many([Job("t", id="v")])  # no limits of its own
    assert _claim(queue) == ["v"]
    assert queue.hold([Hold("v", "version:t:2", clock.time())], worker_id="w1") == ["v"]
    assert queue.hold_of("v") == "version:t:2"
    assert _claim(queue, worker="w2") == ["v"]
    queue.nack("v", retry_at=clock.time() + 60, worker_id="w2")

    assert queue.hold_of("v") is None, "waiting again, for a retry, not held"
    assert [row.held for row in queue.queue_stats()] == [{}]


def test_a_pause_is_kept_by_the_store_not_the_queue_object(queue: RedisJobQueue):
    queue.enqueue_many([Job("t", id="mail", queue="emails")])
    assert queue.pause_queue("emails")
    again = RedisJobQueue(queue.url, prefix=queue.prefix, clock=queue.clock)
    try:
        assert again.paused_queues() == ["emails"]
        assert _claim(again) == [], "a worker started after the pause takes nothing"
        again.pause_queue("emails", False)
        assert _claim(queue) == ["mail"]
    finally:
        again.close()


def test_a_resent_submit_answers_with_the_duplicates_its_first_send_found(
    queue: RedisJobQueue,
):
    queue.enqueue_many([_job("holder", unique=["k", 0.0])])
    args = queue.enqueue_args([_job("dup", unique=["k", 0.0]), _job("free")], token="lost")
    script = queue.script("ENQUEUE")
    first = script(args=args)
    [claimed] = queue.pop_batch(1, worker_id="w1", lease_secs=LEASE_SECS)
    queue.ack(claimed.id, worker_id="w1")  # the key is free by the time of the resend

    assert first == script(args=args) == [b"dup", b"holder"]
    assert queue.qsize() == 1, "the resend stored nothing: only 'free' waits"


def test_queue_stats_count_each_queue_in_pages_with_its_holds(queue: RedisJobQueue):
    clock: Any = queue.clock
    later = [Job("t", id=f"s{i:04}", queue="later", due_at=clock.time() + 60) for i in range(1200)]
    queue.enqueue_many(later)
    queue.enqueue_many([_job(f"r{i}", rate=[1.0, 1]) for i in range(3)])
    assert _claim(queue) == ["r0"]
    queue.pause_queue("idle")

    rows = {row.queue: row for row in queue.queue_stats()}

    assert sorted(rows) == ["default", "idle", "later"]
    assert (rows["later"].scheduled, rows["later"].pending) == (1200, 0)
    assert rows["default"].running == 1
    assert rows["default"].lease_owners == {"w1": 1}
    assert rows["default"].held == {rate_tag(LIMITED): 2}
    assert rows["idle"].paused
    assert not rows["default"].paused


def test_failed_jobs_are_counted_per_queue_for_the_stats_rows():
    require_redis()
    prefix = unique_name("nuvom-test")
    results = RedisResultBackend(require_redis(), prefix=prefix, clock=FakeClock())
    try:
        jobs = [Job("t", id=f"f{i}", queue="emails" if i % 3 else "reports") for i in range(9)]
        results.record_enqueued(jobs)
        for job in jobs[:7]:
            results.set_error(job.id, "ValueError: no")
        assert results.failed_by_queue() == {"emails": 4, "reports": 3}
    finally:
        results.close()
        drop_redis_prefix(prefix)


def test_limits_go_to_the_store_as_the_scripts_read_them():
    from nuvom.backends.redis.queue import limits_arg

    job = _job("j", rate=[2.5, 3], conc=["export[tenant='é']", 2], unique=["u", 1.5])
    assert json.loads(limits_arg(job)) == {
        "rate": [LIMITED, 2.5, 3],
        "conc": ["export[tenant='é']", 2],
        "unique": ["u", 1.5],
    }
    assert limits_arg(Job("t")) == ""


def test_a_fake_clock_moves_a_unique_keys_keep_time(queue: RedisJobQueue):
    clock: FakeClock = queue.clock  # type: ignore[assignment]
    queue.enqueue_many([_job("u1", unique=["k", 10.0])])
    [claimed] = queue.pop_batch(1, worker_id="w1", lease_secs=LEASE_SECS)
    queue.ack(claimed.id, worker_id="w1")
    assert queue.unique_holder("k") == "u1", "kept 10 s after it finished"
    clock.advance(10)
    assert queue.unique_holder("k") is None
    assert queue.enqueue_many([_job("u2", unique=["k", 10.0])]) == {}
