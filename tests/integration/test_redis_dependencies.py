"""Redis keeps jobs that wait for others in its own keys: what the conformance suite cannot
see from outside.

A parked record that was spoilt, or a dependency key of the wrong type, must not make a
resolve fail half-way; a resubmitted parked job replaces the old one and what it waited
for; a workflow's submit sent twice parks once; a Redis queue reporting to another result
backend resolves in its own scripts and leaves the records to the two-step writer; and the
joint submit and settle, sent by digest, still run on a server that lost its scripts.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest

import nuvom.backends.redis.joint as joint_module
from nuvom.backends.contract import BaseResultBackend, cancel_reason
from nuvom.backends.memory.results import MemoryResultBackend
from nuvom.backends.redis.client import by_digest
from nuvom.backends.redis.queue import RedisJobQueue
from nuvom.backends.redis.results import RedisResultBackend
from nuvom.job import Job, JobStatus
from nuvom.records import ErrorInfo, Outcome

from .servers import redis_queue_on_fake_clock

LEASE_SECS = 30.0


@pytest.fixture
def queue() -> Iterator[RedisJobQueue]:
    with redis_queue_on_fake_clock() as redis_queue:
        yield redis_queue


@pytest.fixture
def results(queue: RedisJobQueue) -> Iterator[RedisResultBackend]:
    backend = RedisResultBackend(queue.url, prefix=queue.prefix, clock=queue.clock)
    yield backend
    backend.close()


def _job(name: str, *after: str, feed: str = "one", **fields: object) -> Job:
    origin = {"workflow": "wf", "after": list(after), "feed": feed} if after else None
    return Job(f"redis.{name}", id=name, origin=origin, **fields)  # type: ignore[arg-type]


def _claim(queue: RedisJobQueue, results: BaseResultBackend | None = None) -> list[Job]:
    if results is None:
        return queue.claim_batch(100, worker_id="w1", lease_secs=LEASE_SECS).jobs
    return queue.claim(100, worker_id="w1", lease_secs=LEASE_SECS, results=results)


def _outcome(queue: RedisJobQueue, job: Job, status: JobStatus = JobStatus.SUCCESS) -> Outcome:
    error = None if status is JobStatus.SUCCESS else ErrorInfo("ValueError", f"{job.id} broke")
    return Outcome(job, status, result=job.id, error=error, worker_id="w1",
                   finished_at=queue.clock.time())  # fmt: skip


def _keys(queue: RedisJobQueue, pattern: str) -> list[str]:
    return sorted(k.decode() for k in queue.client.scan_iter(f"{queue.prefix}:{pattern}"))


def test_a_parked_job_is_kept_as_submitted_and_released_due_now(queue: RedisJobQueue) -> None:
    queue.enqueue_many([_job("a"), _job("b", "a", queue="other", priority=3, attempts=2)])

    (parked,) = queue.parked_jobs()
    assert (parked.queue, parked.priority, parked.attempts, parked.due_at) == ("other", 3, 2, None)
    assert parked.origin == {"workflow": "wf", "after": ["a"], "feed": "one"}
    assert queue.qsize() == 1
    assert queue.stats()["pending"] == 1

    (a,) = _claim(queue)
    queue.clock.advance(5)  # type: ignore[attr-defined]
    resolved = queue.ack_outcomes([_outcome(queue, a)])

    assert resolved is not None
    assert resolved.released == ["b"]
    (b,) = _claim(queue)
    assert (b.queue, b.priority, b.attempts, b.due_at) == ("other", 3, 3, queue.clock.time())
    assert _keys(queue, "park*") == []
    assert _keys(queue, "waits:*") == []
    assert _keys(queue, "after:*") == []


def test_acking_jobs_no_one_waits_for_resolves_nothing(queue: RedisJobQueue) -> None:
    queue.enqueue_many([_job("a"), _job("b"), _job("c", "b")])
    claimed = {job.id: job for job in _claim(queue)}

    assert queue.ack_outcomes([_outcome(queue, claimed["a"])]) is None
    assert [job.id for job in queue.parked_jobs()] == ["c"]
    assert _keys(queue, "after:*") == [f"{queue.prefix}:after:b"]


def test_a_spoilt_parked_record_is_set_aside_and_what_waits_for_it_cancelled(
    queue: RedisJobQueue,
) -> None:
    queue.enqueue_many([_job("a"), _job("b", "a"), _job("c", "b"), _job("d", "a")])
    queue.client.hset(f"{queue.prefix}:park:b", "priority", "high")
    (a,) = _claim(queue)

    resolved = queue.ack_outcomes([_outcome(queue, a)])

    assert resolved is not None
    assert resolved.released == ["d"]
    assert [job_id for job_id, _ in resolved.cancelled] == ["b", "c"]
    assert "priority high is not an int" in resolved.cancelled[0][1]
    assert resolved.cancelled[1][1] == cancel_reason("b", False)
    assert queue.parked_jobs() == []
    assert queue.stats()["quarantined"] == 1, "kept for a person to read"
    assert [job.id for job in _claim(queue)] == ["d"]


def test_a_dependency_key_of_another_type_is_dropped_not_an_error(queue: RedisJobQueue) -> None:
    queue.enqueue_many([_job("a"), _job("b"), _job("c", "a", "b"), _job("d", "a")])
    queue.client.delete(f"{queue.prefix}:waits:c", f"{queue.prefix}:after:b")
    queue.client.set(f"{queue.prefix}:waits:c", "not a set")
    queue.client.set(f"{queue.prefix}:after:b", "not a set either")
    claimed = {job.id: job for job in _claim(queue)}

    resolved = queue.ack_outcomes([_outcome(queue, claimed["a"])])

    assert resolved is not None
    assert resolved.released == ["d"]
    assert resolved.cancelled == [
        ("c", "its parked record cannot be used: what it waits for is a string, not a set")
    ], "never released on a guess"
    assert queue.client.exists(f"{queue.prefix}:waits:c") == 0
    assert queue.ack_outcomes([_outcome(queue, claimed["b"])]) is None
    assert _keys(queue, "after:*") == []
    assert queue.parked_jobs() == []


def test_parking_drops_a_key_of_another_type_before_it_writes(queue: RedisJobQueue) -> None:
    queue.client.set(f"{queue.prefix}:after:b", "not a set")
    queue.enqueue_many([_job("a"), _job("b"), _job("c", "a", "b")])

    assert [job.id for job in queue.parked_jobs()] == ["c"]
    claimed = {job.id: job for job in _claim(queue)}
    assert queue.ack_outcomes([_outcome(queue, claimed["a"])]) is None
    resolved = queue.ack_outcomes([_outcome(queue, claimed["b"])])
    assert resolved is not None
    assert resolved.released == ["c"]


def test_a_resubmitted_parked_job_replaces_the_old_one_and_what_it_waited_for(
    queue: RedisJobQueue,
) -> None:
    queue.enqueue_many([_job("a"), _job("b"), _job("c", "a")])
    queue.enqueue_many([_job("c", "b")])
    claimed = {job.id: job for job in _claim(queue)}

    assert queue.ack_outcomes([_outcome(queue, claimed["a"], JobStatus.FAILED)]) is None
    assert [job.id for job in queue.parked_jobs()] == ["c"]
    resolved = queue.ack_outcomes([_outcome(queue, claimed["b"])])
    assert resolved is not None
    assert resolved.released == ["c"]

    queue.enqueue_many([_job("e"), _job("d", "e")])
    queue.enqueue_many([_job("d")])  # a plain job of that id: no longer parked
    assert queue.parked_jobs() == []
    assert _keys(queue, "after:*") == []
    assert sorted(job.id for job in _claim(queue)) == ["c", "d", "e"]


def test_a_workflow_submit_sent_twice_parks_and_resolves_once(
    queue: RedisJobQueue, results: RedisResultBackend, monkeypatch: pytest.MonkeyPatch
) -> None:
    queue.submit([_job("a"), _job("bad")], results)
    claimed = {job.id: job for job in _claim(queue, results)}
    queue.settle([_outcome(queue, claimed["a"]), _outcome(queue, claimed["bad"], JobStatus.FAILED)],
                 results)  # fmt: skip
    sends: list[object] = []

    def twice(client: object, script: object, args: list[object]) -> object:
        sends.extend([by_digest(client, script, args), by_digest(client, script, args)])
        return sends[0]

    monkeypatch.setattr(joint_module, "by_digest", twice)
    queue.submit([_job("then", "a"), _job("never", "bad"), _job("later", "then")], results)

    assert sends == [1, 0], "the second send is recognised by its token"
    assert [job.id for job in _claim(queue, results)] == ["then"]
    assert [job.id for job in queue.parked_jobs()] == ["later"]
    never = results.get_full("never")
    assert never is not None
    assert never.status is JobStatus.CANCELLED
    assert (never.error_type, never.error_message) == ("Cancelled", cancel_reason("bad", False))


def test_the_joint_settle_records_the_cascade_it_cancels(
    queue: RedisJobQueue, results: RedisResultBackend
) -> None:
    queue.submit([_job("a"), _job("b", "a"), _job("c", "b"), _job("on_err", "b", feed="failure"),
                  _job("spare", "c", feed="failure")], results)  # fmt: skip
    (a,) = _claim(queue, results)
    queue.clock.advance(2)  # type: ignore[attr-defined]
    queue.settle([_outcome(queue, a, JobStatus.FAILED)], results)

    for job_id, dep in (("b", "a"), ("c", "b")):
        record = results.get_full(job_id)
        assert record is not None
        assert record.status is JobStatus.CANCELLED
        assert (record.error_type, record.error_message) == ("Cancelled", cancel_reason(dep, False))
        assert record.finished_at == queue.clock.time()
    assert results.get_status("on_err") is JobStatus.PENDING
    assert results.get_status("spare") is JobStatus.PENDING, "released: c did not succeed"
    assert sorted(job.id for job in _claim(queue, results)) == ["on_err", "spare"]


def test_a_redis_queue_with_another_result_backend_resolves_in_two_steps(
    queue: RedisJobQueue,
) -> None:
    results = MemoryResultBackend(clock=queue.clock)
    queue.submit([_job("a"), _job("b", "a"), _job("c", "b"), _job("d")], results)
    claimed = {job.id: job for job in _claim(queue, results)}
    assert sorted(claimed) == ["a", "d"]

    queue.settle([_outcome(queue, claimed["a"], JobStatus.FAILED)], results)

    assert queue.parked_jobs() == []
    record = results.get_full("c")
    assert record is not None
    assert record.status is JobStatus.CANCELLED
    assert record.error_message == cancel_reason("b", False)
    queue.submit([_job("e", "d")], results)
    assert queue.cancel_job("e", results) is True
    queue.settle([_outcome(queue, claimed["d"])], results)
    assert _claim(queue, results) == [], "a cancelled parked job is not released"


def test_the_result_backend_notes_dependents_cancelled_with_their_reason(
    results: RedisResultBackend,
) -> None:
    results.mark_dependents_cancelled([("x", "why x"), ("y", "why y")], at=123.0)

    for job_id in ("x", "y"):
        record = results.get_full(job_id)
        assert record is not None
        assert record.status is JobStatus.CANCELLED
        assert (record.error_type, record.error_message) == ("Cancelled", f"why {job_id}")
        assert record.finished_at == 123.0
    assert results.get_error("x") == "Cancelled: why x"


def test_a_script_the_server_does_not_have_is_sent_with_its_source(queue: RedisJobQueue) -> None:
    script = queue.client.register_script(f"-- {uuid.uuid4().hex}\nreturn ARGV[1]")

    assert by_digest(queue.client, script, ["once"]) == b"once", "NOSCRIPT ran nothing"
    assert by_digest(queue.client, script, ["twice"]) == b"twice"
