"""A producer killed mid-submit on the file engine leaves no record PENDING for ever.

The file pair writes a submit in two steps, the records then the job files; a
producer that dies in between leaves records no file backs. Its note in
``queue/submitting/`` lets the next claim past ``NEVER_ENQUEUED_GRACE_SECS``
record those jobs FAILED ``NeverEnqueued``; the jobs whose files made it run.
Time moves by ``FakeClock``: nobody waits out the grace.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

import pytest

import nuvom
from nuvom.backends.file.queue import (
    NEVER_ENQUEUED,
    NEVER_ENQUEUED_GRACE_SECS,
    SWEEP_EVERY_SECS,
    FileJobQueue,
)
from nuvom.backends.file.results import FileResultBackend
from nuvom.clock import FakeClock
from nuvom.job import Job, JobStatus
from nuvom.records import JobRecord
from nuvom.registry import TaskRegistry
from nuvom.task import task
from nuvom.worker import Worker

from .helpers import TASKS, Project, wait_for

BATCH = 400  # jobs per .map(): big enough that a kill usually lands inside one
KILL_TRIES = 10  # producers killed, at most, until one leaves a record stranded
FILE_ENV = {"NUVOM_QUEUE_BACKEND": "file", "NUVOM_RESULT_BACKEND": "file"}
PRODUCER = f"""
import nuvom
from tasks import add

nuvom.configure(queue_backend="file", result_backend="file")
batch = 0
while True:  # until the test kills it
    add.map([(batch, n) for n in range({BATCH})])
    batch += 1
"""


class Crash(BaseException):
    """The producer's death between its two writes (no ``except Exception`` catches it)."""


def _records(results: FileResultBackend) -> dict[str, JobRecord]:
    return {record.id: record for record in results.list_jobs(limit=10**9)}


def _queued_ids(queue: FileJobQueue) -> set[str]:
    held = queue.claimed_dir.rglob("*.job")
    return {job.id for job in queue.waiting_jobs()} | {p.name[:-4].rsplit("_")[-1] for p in held}


def _stranded(queue: FileJobQueue, results: FileResultBackend) -> set[str]:
    queued = _queued_ids(queue)
    return {
        job_id
        for job_id, record in _records(results).items()
        if record.status is JobStatus.PENDING and job_id not in queued
    }


def _record_count(folder: Path) -> int:
    try:
        return sum(1 for _ in folder.iterdir())
    except FileNotFoundError:
        return 0


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_producers_killed_mid_map_leave_every_record_final(project: Project) -> None:
    project.env.update(FILE_ENV)
    project.write("tasks.py", TASKS)
    queue_dir, results_dir = project.root / ".nuvom" / "queue", project.root / ".nuvom" / "results"
    jobs_dir = results_dir / "jobs"
    # The producers run on the real clock; the test looks from far enough ahead of it.
    clock = FakeClock(time.time() + NEVER_ENQUEUED_GRACE_SECS + SWEEP_EVERY_SECS + 3600)
    queue = FileJobQueue(queue_dir, clock=clock)
    results = FileResultBackend(results_dir, clock=clock)

    stranded: set[str] = set()
    for _ in range(KILL_TRIES):
        enough = _record_count(jobs_dir) + BATCH + BATCH // 3  # part-way through its 2nd .map()
        producer = project.start([sys.executable, "-c", PRODUCER])
        wait_for(
            lambda: _record_count(jobs_dir) >= enough or producer.popen.poll(),  # noqa: B023
            what="the producer to be part-way through its second .map()",
        )
        assert producer.popen.poll() is None, producer.describe()
        producer.popen.kill()  # SIGKILL: nothing after this line of its runs
        producer.wait()
        stranded = _stranded(queue, results)
        if stranded:
            break
    assert stranded, "no kill landed between a submit's two writes"
    recorded = set(_records(results))
    queued = _queued_ids(queue)
    assert queued <= recorded, "a job file always has its record (records are written first)"

    nuvom.configure(
        queue_backend=queue, result_backend=results, registry=TaskRegistry(), clock=clock
    )

    @task
    def add(x: int, y: int) -> int:
        return x + y

    Worker(workers=4).run(burst=True)

    after = _records(results)
    assert set(after) == recorded, "no record lost, none made up"
    by_status: dict[JobStatus, set[str]] = {}
    for job_id, record in after.items():
        by_status.setdefault(record.status, set()).add(job_id)
    assert set(by_status) <= {JobStatus.SUCCESS, JobStatus.FAILED}, by_status.keys()
    assert by_status[JobStatus.SUCCESS] == queued, "every queued job ran"
    assert by_status[JobStatus.FAILED] == stranded == recorded - queued
    for job_id in stranded:
        record = after[job_id]
        assert record.error_type == NEVER_ENQUEUED
        assert "producer" in (record.error_message or "")
        assert record.history == [], "a job never queued never ran"
    for job_id in queued:
        record = after[job_id]
        assert record.result == record.args[0] + record.args[1]
    assert queue.qsize() == 0
    assert list(queue.claimed_dir.rglob("*.job")) == []
    assert list(queue.submitting_dir.iterdir()) == [], "each dead producer's note is swept"


# -- the same, in one process, step by step ----------------------------------------
@pytest.fixture
def pair(tmp_path: Path) -> Any:
    clock = FakeClock()
    queue = FileJobQueue(tmp_path / "queue", clock=clock)
    results = FileResultBackend(tmp_path / "results", clock=clock)
    yield queue, results, clock
    queue.close()
    results.close()


def _die_after_writing(queue: FileJobQueue, monkeypatch: pytest.MonkeyPatch, files: int) -> None:
    """Make the next ``enqueue_many`` write its first ``files`` jobs and then die."""
    real = queue.enqueue_many

    def dying(jobs: Any) -> None:
        real(jobs[:files])
        raise Crash

    monkeypatch.setattr(queue, "enqueue_many", dying)


def test_a_submit_that_dies_half_way_fails_the_jobs_it_never_queued(pair, monkeypatch):
    queue, results, clock = pair
    jobs = [Job("t", args=(n,)) for n in range(5)]
    _die_after_writing(queue, monkeypatch, files=2)
    with pytest.raises(Crash):
        queue.submit(jobs, results)
    monkeypatch.undo()
    (note,) = queue.submitting_dir.iterdir()

    clock.advance(NEVER_ENQUEUED_GRACE_SECS - 1)
    assert queue.claim(10, worker_id="w", lease_secs=3600, results=results) != []
    assert note.exists(), "a submit this young may still be writing its files"
    assert results.get_status(jobs[4].id) is JobStatus.PENDING

    clock.advance(SWEEP_EVERY_SECS)
    assert queue.claim(10, worker_id="w", lease_secs=10, results=results) == []

    assert not note.exists()
    for job in jobs[2:]:
        record = results.get_full(job.id)
        assert record is not None
        assert (record.status, record.error_type) == (JobStatus.FAILED, NEVER_ENQUEUED)
    assert [results.get_status(job.id) for job in jobs[:2]] == [JobStatus.RUNNING] * 2
    assert queue.fail_never_enqueued(results) == 0, "idempotent"


def test_a_note_whose_jobs_are_queued_or_done_fails_nothing(pair, monkeypatch):
    queue, results, clock = pair
    done, later = Job("t"), Job("t", due_at=clock.time() + 10 * NEVER_ENQUEUED_GRACE_SECS)
    _die_after_writing(queue, monkeypatch, files=2)
    with pytest.raises(Crash):  # died after the files, before removing its note
        queue.submit([done, later], results)
    monkeypatch.undo()
    (claimed,) = queue.claim(10, worker_id="w", lease_secs=10, results=results)
    results.set_result(claimed.id, 1)
    queue.ack(claimed.id)

    clock.advance(NEVER_ENQUEUED_GRACE_SECS + 1)
    assert queue.fail_never_enqueued(results) == 0

    assert list(queue.submitting_dir.iterdir()) == []
    assert results.get_status(done.id) is JobStatus.SUCCESS
    assert results.get_status(later.id) is JobStatus.SCHEDULED


def test_a_submit_that_ends_or_is_refused_leaves_no_note(pair):
    queue, results, _ = pair
    queue.submit([Job("t"), Job("t")], results)
    bad = Job("t")
    bad.due_at = float("nan")

    with pytest.raises(Exception, match="due_at"):
        queue.submit([bad], results)

    assert list(queue.submitting_dir.iterdir()) == []


def test_a_note_that_cannot_be_read_is_set_aside(pair):
    queue, results, _ = pair
    (queue.submitting_dir / f"{0:017d}_1-abc.sub").write_bytes(b"garbage")

    assert queue.fail_never_enqueued(results) == 0

    assert [p.name for p in queue.submitting_dir.iterdir()] == [f"{0:017d}_1-abc.sub.corrupt"]
