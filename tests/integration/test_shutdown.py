"""Graceful shutdown of a real worker process on SIGTERM/SIGINT.

The first signal finishes in-flight jobs within the grace period, or releases
them for another worker; a second signal exits at once.
"""

from __future__ import annotations

import signal
import time

import pytest

from nuvom.job import Job, JobStatus
from nuvom.queue import enqueue
from nuvom.sdk import get_job

from .helpers import STOPPING_TEXT, TASKS, Proc, Project, posix_only, runs, wait_for

pytestmark = [pytest.mark.slow, posix_only, pytest.mark.timeout(60)]


def _start_holding(project: Project, *worker_args: str) -> tuple[Job, Proc]:
    project.write("tasks.py", TASKS)
    project.configure()
    job = enqueue(Job("hold", args=[str(project.root)]))
    worker = project.start_worker(*worker_args)
    wait_for(lambda: runs(project.root, "hold") == 1, what="the worker to start the job")
    return job, worker


def test_sigterm_lets_the_running_job_finish(project: Project) -> None:
    job, worker = _start_holding(project)

    worker.send(signal.SIGTERM)
    worker.wait_for_output(STOPPING_TEXT)
    (project.root / "go").touch()  # the job completes only after the signal

    assert worker.wait(timeout=15) == 0
    record = get_job(job.id)
    assert record.status is JobStatus.SUCCESS
    assert record.result == "done"
    assert "processed 1: 1 ok" in worker.stderr
    assert runs(project.root, "hold") == 1


def test_a_job_outliving_the_grace_period_is_released_to_another_worker(
    project: Project,
) -> None:
    job, worker = _start_holding(project, "--grace-secs", "0.5")

    signalled_at = time.monotonic()
    worker.send(signal.SIGTERM)
    assert worker.wait(timeout=10) == 0
    assert time.monotonic() - signalled_at < 5
    assert "1 released" in worker.stderr
    released = get_job(job.id)
    assert released.status is JobStatus.PENDING
    assert released.attempts == 0  # a released attempt is not counted against the job

    (project.root / "go").touch()
    other = project.start_worker("--burst")
    assert other.wait() == 0

    assert job.get(timeout=5) == "done"
    record = get_job(job.id)
    assert record.attempts == 1
    assert [attempt.status for attempt in record.history] == ["SUCCESS"]
    assert runs(project.root, "hold") == 2


def test_a_second_signal_exits_at_once(project: Project) -> None:
    # A grace far longer than any exit: "at once" is told from "after the grace" whatever
    # the load (a full suite on two cores once took 3.1 s to exit, a 10 s grace 3 s apart).
    job, worker = _start_holding(project, "--grace-secs", "60")

    worker.send(signal.SIGINT)
    worker.wait_for_output(STOPPING_TEXT)
    signalled_at = time.monotonic()
    worker.send(signal.SIGINT)

    assert worker.wait(timeout=15) != 0
    assert time.monotonic() - signalled_at < 10, "at once, not after the 60 s grace"
    assert get_job(job.id).status is JobStatus.PENDING  # released for others
