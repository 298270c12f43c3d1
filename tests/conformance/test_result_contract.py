"""The result backend contract, run against every built-in result backend."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from nuvom.clock import FakeClock
from nuvom.job import Job, JobStatus
from nuvom.queue_backends.memory_queue import MemoryJobQueue
from nuvom.records import ErrorInfo, Outcome
from nuvom.result_backends.base import BaseResultBackend
from nuvom.result_backends.file_backend import FileResultBackend
from nuvom.result_backends.memory_backend import MemoryResultBackend
from nuvom.result_backends.sqlite_backend import SQLiteResultBackend

LEASE_SECS = 10.0


@pytest.fixture(params=["memory", "sqlite", "file", "postgres", "redis"])
def results(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[BaseResultBackend]:
    clock = FakeClock()
    backend: BaseResultBackend
    if request.param in ("postgres", "redis"):  # a schema / key prefix of this test's own
        from .conftest import BUILDERS

        built = BUILDERS[request.param](tmp_path, clock)
        yield built.results
        built.close()
        return
    if request.param == "memory":
        backend = MemoryResultBackend(clock=clock)
    elif request.param == "file":
        backend = FileResultBackend(tmp_path / "results", clock=clock)
    else:
        backend = SQLiteResultBackend(tmp_path / "results.db", clock=clock)
    yield backend
    backend.close()


def clock_of(results: BaseResultBackend) -> FakeClock:
    clock = results.clock  # type: ignore[attr-defined]
    assert isinstance(clock, FakeClock)
    return clock


def test_set_result_then_get_result(results):
    results.set_result("job-1", {"total": 3, "items": [1, 2]})

    assert results.get_result("job-1") == {"total": 3, "items": [1, 2]}
    record = results.get_full("job-1")
    assert record is not None
    assert record.status is JobStatus.SUCCESS
    assert record.has_result is True
    assert results.get_error("job-1") is None


def test_a_none_result_is_told_apart_from_an_unfinished_job(results):
    finished, unfinished = Job("t", id="finished"), Job("t", id="unfinished")
    results.record_enqueued([finished, unfinished])

    results.set_result("finished", None)

    assert results.get_result("finished") is None
    assert results.get_result("unfinished") is None
    done = results.get_full("finished")
    waiting = results.get_full("unfinished")
    assert done is not None
    assert waiting is not None
    assert (done.status, done.has_result) == (JobStatus.SUCCESS, True)
    assert (waiting.status, waiting.has_result) == (JobStatus.PENDING, False)


def test_unknown_job_has_nothing(results):
    assert results.get_full("nope") is None
    assert results.get_result("nope") is None
    assert results.get_error("nope") is None


@pytest.mark.parametrize(
    ("error", "expected_type", "expected_text"),
    [
        (ValueError("bad input"), "ValueError", "ValueError: bad input"),
        (ErrorInfo("KeyError", "'x'", "Traceback ..."), "KeyError", "KeyError: 'x'"),
        ("TimeoutError: too slow", "TimeoutError", "TimeoutError: too slow"),
    ],
)
def test_set_error_then_get_error(results, error, expected_type, expected_text):
    results.set_error("job-1", error)

    assert results.get_error("job-1") == expected_text
    assert results.get_result("job-1") is None
    record = results.get_full("job-1")
    assert record is not None
    assert record.status is JobStatus.FAILED
    assert record.error_type == expected_type


def test_record_enqueued_keeps_the_call_and_scheduled_status(results):
    now = clock_of(results).time()
    job = Job("mail.send", args=("a@b.c",), kwargs={"n": 2}, queue="emails", priority=3)
    later = Job("mail.send", due_at=now + 60)

    results.record_enqueued([job, later])

    record = results.get_full(job.id)
    assert record is not None
    assert record.status is JobStatus.PENDING
    assert (record.func_name, record.queue, record.priority) == ("mail.send", "emails", 3)
    assert record.args == ["a@b.c"]
    assert record.kwargs == {"n": 2}
    scheduled = results.get_full(later.id)
    assert scheduled is not None
    assert scheduled.status is JobStatus.SCHEDULED
    assert scheduled.due_at == now + 60


def test_a_record_keeps_where_its_job_came_from(results):
    # A workflow is followed through its members' origins (nuvom/workflow.py: walk);
    # the file engine dropped them.
    origin = {"workflow": "w", "after": ["a", "b"], "feed": "list"}
    job = Job("wf.body", origin=origin)

    results.record_enqueued([job])
    results.mark_running([job], worker_id="w1", started_at=clock_of(results).time())

    record = results.get_full(job.id)
    assert record is not None
    assert record.origin == origin


def test_list_jobs_newest_first_filtered_by_status(results):
    clock = clock_of(results)
    results.set_result("a", 1)
    clock.advance(1)
    results.set_error("b", ValueError("no"))
    clock.advance(1)
    results.set_result("c", 3)

    assert [r.id for r in results.list_jobs()] == ["c", "b", "a"]
    assert [r.id for r in results.list_jobs(status=JobStatus.SUCCESS)] == ["c", "a"]
    assert [r.id for r in results.list_jobs(status=JobStatus.FAILED)] == ["b"]
    assert [r.id for r in results.list_jobs(status=JobStatus.CANCELLED)] == []
    assert [r.id for r in results.list_jobs(limit=2)] == ["c", "b"]
    assert [r.id for r in results.list_jobs(limit=2, offset=1)] == ["b", "a"]


def test_prune_deletes_old_finished_jobs_only(results):
    clock = clock_of(results)
    results.set_result("old-ok", 1)
    results.set_error("old-failed", ValueError("x"))
    results.record_enqueued([Job("t", id="old-pending")])
    clock.advance(100)
    results.set_result("new-ok", 2)

    assert results.prune(older_than=clock.time() - 50, statuses=[JobStatus.FAILED]) == 1
    assert results.get_full("old-failed") is None
    assert results.prune(older_than=clock.time() - 50) == 1

    assert results.get_full("old-ok") is None
    assert results.get_full("old-pending") is not None, "unfinished jobs are never pruned"
    assert results.get_result("new-ok") == 2
    assert results.prune(older_than=clock.time() - 50) == 0


def test_mark_cancelled(results):
    results.record_enqueued([Job("t", id="doomed")])

    results.mark_cancelled("doomed", at=clock_of(results).time())

    record = results.get_full("doomed")
    assert record is not None
    assert record.status is JobStatus.CANCELLED


def test_attempt_history_marks_an_expired_lease_lost(results):
    clock = clock_of(results)
    queue = MemoryJobQueue(clock=clock)
    job = Job("t", args=(1,))
    queue.submit([job], results)
    queue.claim(1, worker_id="dead-worker", lease_secs=LEASE_SECS, results=results)
    clock.advance(LEASE_SECS)

    (again,) = queue.claim(1, worker_id="live-worker", lease_secs=LEASE_SECS, results=results)
    queue.settle([Outcome(again, JobStatus.SUCCESS, result="ok", worker_id="live-worker")], results)

    record = results.get_full(job.id)
    assert record is not None
    assert record.status is JobStatus.SUCCESS
    assert record.attempts == 2
    assert [(a.number, a.status, a.worker_id) for a in record.history] == [
        (1, "LOST", "dead-worker"),
        (2, "SUCCESS", "live-worker"),
    ]


def test_history_keeps_each_attempts_error(results):
    clock = clock_of(results)
    queue = MemoryJobQueue(clock=clock)
    job = Job("t")
    queue.submit([job], results)
    for number in (1, 2):
        (claimed,) = queue.claim(1, worker_id="w", lease_secs=LEASE_SECS, results=results)
        status = JobStatus.RETRYING if number == 1 else JobStatus.FAILED
        error = ErrorInfo("ValueError", f"attempt {number}", f"Traceback {number}")
        queue.settle(
            [Outcome(claimed, status, error=error, worker_id="w", retry_at=clock.time())], results
        )

    record = results.get_full(job.id)
    assert record is not None
    assert record.status is JobStatus.FAILED
    assert [(a.status, a.error_message, a.traceback) for a in record.history] == [
        ("RETRYING", "attempt 1", "Traceback 1"),
        ("FAILED", "attempt 2", "Traceback 2"),
    ]
