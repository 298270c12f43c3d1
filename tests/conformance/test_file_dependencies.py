"""Jobs that wait for others on the file queue, as separate processes see them.

Two ``FileJobQueue`` objects on one folder share nothing but the files, as two
processes would; the last test races real spawned processes. A crash is an
exception no ``except Exception`` catches, raised from the step it interrupts: what
it leaves half done, the next resolve of the same job or the sweep ends.
"""

from __future__ import annotations

import os
import shutil
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from nuvom.backends.file import store as file_store
from nuvom.backends.file.queue import NEVER_ENQUEUED_GRACE_SECS, FileJobQueue
from nuvom.backends.file.results import FileResultBackend
from nuvom.clock import FakeClock
from nuvom.job import Job, JobStatus
from nuvom.records import ErrorInfo, Outcome

from .processes import race_processes

LEASE_SECS = 30.0
MEMBERS = 24
SPAWNED = 3
WAIT_SECS = 60.0


class Crash(BaseException):
    """The process dying at this point: nothing after it runs, no handler catches it."""


def die(*args: object, **kwargs: object) -> Any:
    raise Crash


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    return tmp_path / "queue"


@pytest.fixture
def first(folder: Path, clock: FakeClock) -> FileJobQueue:
    return FileJobQueue(folder, clock=clock)


@pytest.fixture
def second(folder: Path, clock: FakeClock) -> FileJobQueue:
    return FileJobQueue(folder, clock=clock)


@pytest.fixture
def results(tmp_path: Path, clock: FakeClock) -> FileResultBackend:
    return FileResultBackend(tmp_path / "results", clock=clock)


def _job(name: str, *after: str, feed: str = "one") -> Job:
    origin = {"workflow": "wf", "after": list(after), "feed": feed} if after else None
    return Job(f"t.{name}", id=name, origin=origin)


def _claim(queue: FileJobQueue, results: FileResultBackend, worker: str = "w1") -> list[Job]:
    return queue.claim(100, worker_id=worker, lease_secs=LEASE_SECS, results=results)


def _finish(queue: FileJobQueue, results: FileResultBackend, job: Job,
            status: JobStatus = JobStatus.SUCCESS, worker: str = "w1") -> None:  # fmt: skip
    error = None if status is JobStatus.SUCCESS else ErrorInfo("ValueError", f"{job.id} broke")
    outcome = Outcome(job, status, error=error, worker_id=worker, finished_at=0.0)
    queue.settle([outcome], results)


def _left(queue: FileJobQueue) -> list[str]:
    """Every file the workflow folders still hold (folders emptied are the sweep's)."""
    folders = (queue.parked_dir, queue.deps_dir, queue.cancelled_dir)
    found = (p for f in folders for p in f.rglob("*") if p.is_file())
    return sorted(str(p.relative_to(queue.root)) for p in found)


def _age(queue: FileJobQueue) -> None:
    """Make every file of the workflow folders look older than the sweep's grace."""
    then = time.time() - NEVER_ENQUEUED_GRACE_SECS - 60
    for folder in (queue.parked_dir, queue.deps_dir, queue.cancelled_dir):
        for path in folder.rglob("*"):
            os.utime(path, (then, then))


def test_two_queues_on_one_folder_release_a_callback_exactly_once(
    first: FileJobQueue, second: FileJobQueue, results: FileResultBackend
):
    members = [_job(f"m{i:02d}") for i in range(MEMBERS)]
    first.submit([*members, _job("callback", *(m.id for m in members), feed="list")], results)
    workers = {f"w{n}": (first, second)[n % 2] for n in range(4)}
    claimed = {worker: queue.pop_batch(6, worker_id=worker, lease_secs=LEASE_SECS)
               for worker, queue in workers.items()}  # fmt: skip
    start, errors, released = threading.Barrier(len(workers)), [], []

    def settle(worker: str) -> None:
        queue = workers[worker]
        other = second if queue is first else first
        start.wait()
        try:
            for job in claimed[worker]:
                _finish(queue, results, job, worker=worker)
                released.extend(other.resolve([(job.id, True)]).released)  # a duplicate
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=settle, args=(worker,)) for worker in workers]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)

    assert errors == []
    assert released in ([], ["callback"]), "a duplicate may win the release, once"
    assert [j.id for j in _claim(second, results)] == ["callback"]
    assert _claim(first, results) == []
    assert first.parked_jobs() == second.parked_jobs() == []
    assert _left(first) == [], "nothing is left behind"


def test_a_resolve_killed_after_counting_is_ended_by_the_next_resolve(
    first: FileJobQueue, second: FileJobQueue, results: FileResultBackend, monkeypatch
):
    first.submit([_job("a"), _job("b", "a")], results)
    monkeypatch.setattr(first, "_advance", die)
    with pytest.raises(Crash):
        first.resolve([("a", True)])

    assert [j.id for j in second.parked_jobs()] == ["b"], "counted, not released yet"
    assert second.resolve([("a", True)]).released == ["b"]
    assert second.resolve([("a", True)]).released == [], "once"
    assert sorted(j.id for j in second.waiting_jobs()) == ["a", "b"]
    assert _left(second) == []


def test_a_resolve_killed_after_counting_is_ended_by_the_sweep(
    first: FileJobQueue, second: FileJobQueue, results: FileResultBackend, monkeypatch
):
    first.submit([_job("a"), _job("b", "a"), _job("c", "a", "b")], results)
    monkeypatch.setattr(first, "_advance", die)
    with pytest.raises(Crash):
        first.resolve([("a", True)])

    swept = second.sweep_dependencies(results)
    assert (swept.released, swept.cancelled) == (["b"], []), "c still waits for b"
    assert [j.id for j in second.parked_jobs()] == ["c"]
    assert second.sweep_dependencies(results).released == []


def test_an_ack_killed_before_its_resolve_runs_the_job_again(
    first: FileJobQueue, second: FileJobQueue, results: FileResultBackend, clock: FakeClock,
    monkeypatch,
):  # fmt: skip
    first.submit([_job("a"), _job("b", "a")], results)
    (a,) = _claim(first, results)
    monkeypatch.setattr(first, "resolve", die)
    with pytest.raises(Crash):
        _finish(first, results, a)

    assert second.qsize() == 0
    assert [j.id for j in second.parked_jobs()] == ["b"]
    clock.advance(LEASE_SECS + 1)
    (again,) = _claim(second, results, "w2")
    assert (again.id, again.attempts) == ("a", 2), "the ack never happened: it runs again"
    _finish(second, results, again, worker="w2")
    assert [j.id for j in _claim(second, results, "w2")] == ["b"]


def test_a_release_killed_before_its_cleanup_is_swept_once_old(
    first: FileJobQueue, second: FileJobQueue, results: FileResultBackend, monkeypatch
):
    first.submit([_job("a"), _job("b", "a")], results)
    monkeypatch.setattr(first, "_drop_parked", die)
    with pytest.raises(Crash):
        first.resolve([("a", True)])

    assert second.parked_jobs() == []
    assert second.qsize() == 2, "a, and b released once"
    assert second.resolve([("a", True)]).released == []
    assert second.sweep_dependencies(results).released == []
    assert _left(second) != [], "kept while a submit could still be writing them"
    _age(second)
    second.sweep_dependencies(results)
    assert _left(second) == []
    assert list(second.deps_dir.iterdir()) == list(second.parked_dir.iterdir()) == []
    assert second.qsize() == 2


def test_a_cascade_killed_part_way_is_ended_and_recorded_by_the_sweep(
    first: FileJobQueue, second: FileJobQueue, results: FileResultBackend, monkeypatch
):
    jobs = [_job("a"), _job("b", "a"), _job("c", "b"), _job("on_err", "b", feed="failure")]
    first.submit(jobs, results)
    (a,) = _claim(first, results)
    unlink = file_store.unlink

    def dies_unlinking_b(path: Path | str) -> bool:
        if Path(path).parent.name == "b" and str(path).endswith(".job"):
            raise Crash
        return unlink(path)

    monkeypatch.setattr(file_store, "unlink", dies_unlinking_b)
    with pytest.raises(Crash):
        _finish(first, results, a, JobStatus.FAILED)  # cancels b, and c after it
    monkeypatch.undo()

    assert [j.id for j in second.parked_jobs()] == ["b"], "b's file stays until all is done"
    assert results.get_status("c") is JobStatus.PENDING, "the crash lost c's record"
    swept = second.sweep_dependencies(results)
    assert swept.cancelled == [("b", "job a, which it waits for, did not succeed")]
    assert results.get_status("b") is JobStatus.CANCELLED
    assert second.parked_jobs() == []

    _age(second)
    second.sweep_dependencies(results)
    record = results.get_full("c")
    assert record is not None
    assert record.status is JobStatus.CANCELLED
    assert record.error_message == "job b, which it waits for, did not succeed"
    assert _left(second) == []
    assert [j.id for j in _claim(second, results)] == ["on_err"], "the errback runs, once"


def test_a_submit_killed_before_it_resolved_what_had_finished_is_ended_by_the_note_sweep(
    first: FileJobQueue, second: FileJobQueue, results: FileResultBackend, clock: FakeClock,
    monkeypatch,
):  # fmt: skip
    first.submit([_job("a"), _job("bad")], results)
    for job in _claim(first, results):
        _finish(first, results, job, JobStatus.SUCCESS if job.id == "a" else JobStatus.FAILED)
    monkeypatch.setattr(first, "resolve", die)
    with pytest.raises(Crash):
        first.submit([_job("then", "a"), _job("never", "bad")], results)

    assert [j.id for j in second.parked_jobs()] == ["never", "then"]
    clock.advance(NEVER_ENQUEUED_GRACE_SECS + 1)
    assert second.fail_never_enqueued(results) == 0, "both were queued: parked"
    assert [j.id for j in _claim(second, results)] == ["then"]
    assert results.get_status("never") is JobStatus.CANCELLED
    assert second.parked_jobs() == []


def test_a_job_never_queued_cancels_what_waits_for_it(
    first: FileJobQueue, results: FileResultBackend, clock: FakeClock, monkeypatch
):
    monkeypatch.setattr(first, "enqueue_many", die)
    with pytest.raises(Crash):
        first.submit([_job("lost")], results)
    monkeypatch.undo()
    first.submit([_job("after_lost", "lost")], results)

    clock.advance(NEVER_ENQUEUED_GRACE_SECS + 1)
    assert first.fail_never_enqueued(results) == 1
    assert results.get_status("lost") is JobStatus.FAILED
    assert results.get_status("after_lost") is JobStatus.CANCELLED
    assert first.parked_jobs() == []


def test_a_store_of_the_previous_version_opens_and_parks(
    folder: Path, clock: FakeClock, results: FileResultBackend
):
    FileJobQueue(folder, clock=clock).close()
    for name in ("parked", "deps", "cancelled"):
        shutil.rmtree(folder / name)
    looking = FileJobQueue(folder, clock=clock, read_only=True)
    assert looking.parked_jobs() == []
    assert looking.qsize() == 0

    queue = FileJobQueue(folder, clock=clock)
    queue.submit([_job("a"), _job("b", "a")], results)
    assert [j.id for j in looking.parked_jobs()] == ["b"]
    (a,) = _claim(queue, results)
    _finish(queue, results, a)
    assert [j.id for j in _claim(queue, results)] == ["b"]


def test_ids_that_are_not_file_safe_wait_and_release(
    first: FileJobQueue, results: FileResultBackend
):
    upper, odd, long = "Dep", "a_b/c", "x" * 200
    waiting = _job("Waits_For/all", upper, odd, long)
    first.submit([_job(upper), _job(odd), _job(long), waiting], results)
    assert [j.id for j in first.parked_jobs()] == [waiting.id]
    for job in _claim(first, results):
        _finish(first, results, job)
    (released,) = _claim(first, results)
    assert (released.id, released.origin) == (waiting.id, waiting.origin)
    assert _left(first) == []


def test_a_corrupt_parked_file_is_set_aside_and_its_job_cancelled(
    first: FileJobQueue, results: FileResultBackend
):
    first.submit([_job("a"), _job("b", "a"), _job("c", "b")], results)
    (parked,) = (first.parked_dir / "b").glob("*.job")
    parked.write_bytes(b"garbage")

    resolved = first.resolve([("a", True)])

    assert [job_id for job_id, _ in resolved.cancelled] == ["b", "c"]
    assert "cannot be decoded" in resolved.cancelled[0][1]
    assert list(first.corrupt_dir.rglob("*.corrupt")) != []
    assert first.parked_jobs() == []


# -- real processes ----------------------------------------------------------------
def resolve_every_member(folder: str, ids: list[str], go: Any, reports: Any, name: str) -> None:
    """A spawned process: once ``go`` is set, resolve every member; report what it released."""
    try:
        queue = FileJobQueue(folder)
        if not go.wait(WAIT_SECS):
            raise TimeoutError("the test never said go")
        released = []
        for job_id in ids:
            released += queue.resolve([(job_id, True)]).released
        queue.close()
    except BaseException as exc:
        reports.put((name, f"{type(exc).__name__}: {exc}"))
        raise
    reports.put((name, released))


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_processes_resolving_at_once_release_the_callback_exactly_once(folder: Path):
    queue = FileJobQueue(folder)
    ids = [f"m{i:02d}" for i in range(MEMBERS)]
    queue.enqueue_many([_job("callback", *ids, feed="list")])
    names = [f"proc-{n}" for n in range(SPAWNED)]
    arguments = [(str(folder), ids[n::SPAWNED] + ids) for n in range(SPAWNED)]
    outcomes = race_processes(resolve_every_member, arguments, WAIT_SECS)

    errors = {name: got for name, got in outcomes.items() if isinstance(got, str)}
    assert not errors, errors
    assert sorted(outcomes) == names
    assert [job_id for got in outcomes.values() for job_id in got] == ["callback"]
    assert [job.id for job in queue.waiting_jobs()] == ["callback"]
    assert queue.parked_jobs() == []
    assert _left(queue) == []
