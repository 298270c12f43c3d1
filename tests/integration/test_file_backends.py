"""Real processes on the embedded stores: races, producers, SIGKILL and a poison pill.

Every process is started with the ``spawn`` context (what Windows runs) or as
a ``nuvom runworker`` subprocess; every wait has a deadline.
"""

from __future__ import annotations

import multiprocessing
import queue as queue_module
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from nuvom.job import Job, JobStatus
from nuvom.queue_backends.base import BaseJobQueue
from nuvom.queue_backends.file_queue import FileJobQueue
from nuvom.queue_backends.sqlite_queue import SQLiteJobQueue
from nuvom.sdk import get_job

from .helpers import DEFAULT_WAIT_SECS, TASKS, Project, runs, wait_for

CLAIMERS = 4
RACE_JOBS = 400
PRODUCERS = 4
JOBS_PER_PRODUCER = 300
LEASE_SECS = 1.0  # short leases keep crash recovery quick
FILE_ENV = {"NUVOM_QUEUE_BACKEND": "file", "NUVOM_RESULT_BACKEND": "file"}
POISON_TASKS = (
    TASKS
    + '''

@task(retries=0)
def poison():
    """Kills the process that runs it, every time."""
    _record_run(os.environ["POISON_TEST_FOLDER"], "poison")
    os._exit(1)
'''
)


def open_queue(kind: str, folder: str) -> BaseJobQueue:
    if kind == "file":
        return FileJobQueue(Path(folder) / "queue")
    return SQLiteJobQueue(Path(folder) / "queue.db")


def claim_all(kind: str, folder: str, go: Any, reports: Any, name: str) -> None:
    """A spawned claimer: once ``go`` is set, claim in small batches until the queue is empty."""
    try:
        queue = open_queue(kind, folder)
        if not go.wait(DEFAULT_WAIT_SECS):
            raise TimeoutError("the test never said go")
        claimed: list[str] = []
        while batch := queue.pop_batch(3, worker_id=name, lease_secs=600):
            claimed.extend(job.id for job in batch)
        queue.close()
    except BaseException as exc:
        reports.put((name, f"{type(exc).__name__}: {exc}"))
        raise
    reports.put((name, claimed))


def enqueue_all(kind: str, folder: str, count: int, go: Any, reports: Any, name: str) -> None:
    """A spawned producer: once ``go`` is set, enqueue ``count`` jobs one at a time."""
    try:
        queue = open_queue(kind, folder)
        if not go.wait(DEFAULT_WAIT_SECS):
            raise TimeoutError("the test never said go")
        ids = []
        for number in range(count):
            job = Job("add", args=[number, number])
            queue.enqueue(job)
            ids.append(job.id)
        queue.close()
    except BaseException as exc:
        reports.put((name, f"{type(exc).__name__}: {exc}"))
        raise
    reports.put((name, ids))


def run_spawned(target: Any, args_for: Any, count: int) -> dict[str, list[str] | str]:
    """Start ``count`` spawned processes, release them at once, collect their reports."""
    context = multiprocessing.get_context("spawn")
    go = context.Event()
    reports: Any = context.Queue()
    names = [f"proc-{n}" for n in range(count)]
    procs = [
        context.Process(target=target, args=(*args_for(name), go, reports, name)) for name in names
    ]
    outcomes: dict[str, list[str] | str] = {}
    try:
        for proc in procs:
            proc.start()
        go.set()  # all of them at once
        for _ in procs:
            try:
                name, outcome = reports.get(timeout=DEFAULT_WAIT_SECS * 2)
            except queue_module.Empty:
                break
            outcomes[name] = outcome
        for proc in procs:
            proc.join(timeout=DEFAULT_WAIT_SECS)
        assert [proc.exitcode for proc in procs] == [0] * count, outcomes
    finally:
        for proc in procs:
            if proc.is_alive():
                proc.kill()
                proc.join()
        reports.close()
    errors = {name: outcome for name, outcome in outcomes.items() if isinstance(outcome, str)}
    assert not errors, errors
    assert sorted(outcomes) == names
    return outcomes


@pytest.mark.slow
@pytest.mark.timeout(120)
@pytest.mark.parametrize("kind", ["file", "sqlite"])
def test_claimers_in_four_processes_claim_every_job_exactly_once(tmp_path: Path, kind: str):
    queue = open_queue(kind, str(tmp_path))
    jobs = [Job("race", args=(n,)) for n in range(RACE_JOBS)]
    queue.enqueue_many(jobs)
    queue.close()

    outcomes = run_spawned(claim_all, lambda name: (kind, str(tmp_path)), CLAIMERS)

    every = [job_id for claimed in outcomes.values() for job_id in claimed]
    twice = [job_id for job_id, count in Counter(every).items() if count > 1]
    assert twice == [], "no job may be held by two claimers"
    assert sorted(every) == sorted(job.id for job in jobs), "every job is claimed"


@pytest.mark.slow
@pytest.mark.timeout(120)
@pytest.mark.parametrize("kind", ["file", "sqlite"])
def test_producers_in_four_processes_store_every_job(tmp_path: Path, kind: str):
    outcomes = run_spawned(
        enqueue_all, lambda name: (kind, str(tmp_path), JOBS_PER_PRODUCER), PRODUCERS
    )

    enqueued = {job_id for ids in outcomes.values() for job_id in ids}
    assert len(enqueued) == PRODUCERS * JOBS_PER_PRODUCER
    queue = open_queue(kind, str(tmp_path))
    assert queue.qsize() == PRODUCERS * JOBS_PER_PRODUCER
    claimed = queue.pop_batch(2 * PRODUCERS * JOBS_PER_PRODUCER, worker_id="w", lease_secs=60)
    assert {job.id for job in claimed} == enqueued
    queue.close()


@pytest.mark.slow
@pytest.mark.timeout(60)
def test_a_sigkilled_file_worker_job_runs_again_after_its_lease(project: Project) -> None:
    project.env.update(FILE_ENV)
    project.write("tasks.py", TASKS)
    project.configure(queue_backend="file", result_backend="file")
    from nuvom.queue import enqueue

    job = enqueue(Job("hold", args=[str(project.root)]))
    first = project.start_worker(NUVOM_LEASE_SECS=str(LEASE_SECS))
    wait_for(lambda: runs(project.root, "hold") == 1, what="the first worker to start the job")

    first.popen.kill()  # SIGKILL on POSIX, TerminateProcess on Windows: nothing is released
    first.wait()
    assert get_job(job.id).status is JobStatus.RUNNING
    (project.root / "go").touch()  # the next attempt finishes at once
    project.start_worker(NUVOM_LEASE_SECS=str(LEASE_SECS))

    assert job.get(timeout=30) == "done"
    record = get_job(job.id)
    assert record.status is JobStatus.SUCCESS
    assert record.attempts == 2
    assert [attempt.status for attempt in record.history] == ["LOST", "SUCCESS"]
    assert runs(project.root, "hold") == 2


@pytest.mark.slow
@pytest.mark.timeout(120)
@pytest.mark.parametrize("kind", ["file", "sqlite"])
def test_a_poison_pill_ends_failed_while_other_jobs_keep_flowing(
    project: Project, kind: str
) -> None:
    project.env.update(POISON_TEST_FOLDER=str(project.root))
    if kind == "file":
        project.env.update(FILE_ENV)
    project.write("tasks.py", POISON_TASKS)
    runtime = project.configure(queue_backend=kind, result_backend=kind)
    from nuvom.queue import enqueue

    pill = enqueue(Job("poison"))
    others: list[Job] = []
    worker_exits: list[int] = []
    deadline_runs = 8  # far more worker lives than the pill may take
    for _ in range(deadline_runs):
        # More work arrives between crashes; retries cover being held when a worker dies.
        others.extend(enqueue(Job("add", args=[n, n], max_retries=3)) for n in range(5))
        worker = project.start_worker(
            "--burst", "--workers", "1", "--batch-size", "1", NUVOM_LEASE_SECS=str(LEASE_SECS)
        )
        worker_exits.append(worker.wait())
        if get_job(pill.id).status is JobStatus.FAILED:
            break
        # The dead worker's claim comes back once its lease runs out.
        wait_for(
            lambda: runtime.queue.stats()["expired"] + runtime.queue.qsize() > 0,
            what="the poisoned job to be claimable again",
        )
        wait_for(lambda: runtime.queue.stats()["running"] == 0, what="the lease to run out")

    record = get_job(pill.id)
    assert record.status is JobStatus.FAILED, worker_exits
    assert record.error_type == "LostAttempts"
    assert runs(project.root, "poison") == 3, "one run plus the two lost deliveries allowed"
    assert worker_exits.count(1) == 3, worker_exits
    if worker_exits[-1] != 0:  # the last crash left other jobs behind: drain them
        assert project.start_worker("--burst", NUVOM_LEASE_SECS=str(LEASE_SECS)).wait() == 0
    for job in others:
        assert job.get(timeout=30) == job.args[0] * 2
