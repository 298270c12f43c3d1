"""A kill storm: three workers, one SIGKILLed every 1-3 s and replaced, 2,000 jobs.

Every job must end SUCCESS (or FAILED only after it really ran: its executions
were lost with their workers), none stays waiting or running, and none fails
without having run once: an attempt a dead worker only prefetched is not
charged against the job.
"""

from __future__ import annotations

import random
import signal
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from nuvom.job import FINAL_STATUSES, JobStatus

from .helpers import STARTED_TEXT, Proc, Project, posix_only, wait_for
from .servers import engine_env

JOBS = 2_000
WORKERS = 3
LEASE_SECS = 3.0
STORM_SECS = 12.0  # how long workers keep being killed
KILL_EVERY_SECS = (1.0, 3.0)
SETTLE_WITHIN_SECS = 90.0  # after the storm, every job ends within this

STORM_TASKS = """
import os
import time

from nuvom import task


@task
def work(i, folder):
    # One short O_APPEND write per execution: a line survives its worker being killed.
    fd = os.open(os.path.join(folder, "ran"), os.O_WRONLY | os.O_APPEND | os.O_CREAT)
    try:
        os.write(fd, f"{i}\\n".encode())
    finally:
        os.close(fd)
    time.sleep(0.002)
    return i
"""


@pytest.fixture(params=["sqlite", "file", "postgres", "redis"])
def engine(request: pytest.FixtureRequest) -> Iterator[dict[str, str]]:
    """The settings of one engine (queue and results on it), as environment variables."""
    with engine_env(request.param) as env:
        yield env


def _ran(folder: Path) -> set[int]:
    path = folder / "ran"
    if not path.exists():
        return set()
    return {int(line) for line in path.read_text().split() if line.isdigit()}


@posix_only
@pytest.mark.slow
@pytest.mark.timeout(240)
def test_a_kill_storm_loses_nothing_and_fails_nothing_that_never_ran(
    project: Project, engine: dict[str, str]
) -> None:
    project.write("tasks.py", STORM_TASKS)
    settings = {name.removeprefix("NUVOM_").lower(): value for name, value in engine.items()}
    runtime = project.configure(**settings)
    env = dict(project.env, **engine, NUVOM_LEASE_SECS=str(LEASE_SECS))
    folder = str(project.root)
    from nuvom.job import Job
    from nuvom.queue import enqueue_many

    jobs = enqueue_many([Job("work", args=[i, folder]) for i in range(JOBS)])
    by_id = {handle.id: i for i, handle in enumerate(jobs)}
    workers: list[Proc] = [project.start_worker(env=env) for _ in range(WORKERS)]
    rng = random.Random(7)
    killed = 0
    stop = threading.Event()
    storm_ends = threading.Timer(STORM_SECS, stop.set)
    storm_ends.start()
    try:
        while not stop.wait(rng.uniform(*KILL_EVERY_SECS)):  # the storm's pace, not a sync
            victim = workers.pop(rng.randrange(len(workers)))
            victim.send(signal.SIGKILL)
            victim.wait()
            killed += 1
            workers.append(project.start_worker(env=env, wait=False))
    finally:
        storm_ends.cancel()

    left = set(by_id)

    def all_final() -> bool:
        for job_id in list(left):
            if runtime.results.get_status(job_id) in FINAL_STATUSES:
                left.discard(job_id)
        return not left

    wait_for(all_final, timeout=SETTLE_WITHIN_SECS, what="every job to end")
    for worker in workers:
        worker.wait_for_output(STARTED_TEXT)  # its signal handlers are in: SIGTERM is a stop
        worker.send(signal.SIGTERM)
    for worker in workers:
        assert worker.wait() == 0, worker.describe()

    ran = _ran(project.root)
    statuses = {job_id: runtime.results.get_status(job_id) for job_id in by_id}
    failed = [job_id for job_id, status in statuses.items() if status is not JobStatus.SUCCESS]
    never_ran = [job_id for job_id in failed if by_id[job_id] not in ran]
    assert killed >= 3, "the storm killed workers"
    assert never_ran == [], f"{len(never_ran)} jobs failed without running once"
    assert all(status is not None for status in statuses.values()), "a record was lost"
    assert len(failed) <= JOBS // 100, f"{len(failed)} of {JOBS} failed: {failed[:5]}"
