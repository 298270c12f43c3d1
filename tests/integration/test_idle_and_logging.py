"""What a running worker costs and says: ~0% CPU when idle, quick to wake, quiet logs by default."""

from __future__ import annotations

import subprocess
import sys
import time

import pytest

from nuvom.job import Job
from nuvom.queue import enqueue, enqueue_many

from .helpers import TASKS, Project, cpu_seconds

IDLE_WINDOW_SECS = 2.0
IDLE_CPU_BUDGET_SECS = 0.1
JOBS = 20


@pytest.mark.slow
@pytest.mark.timeout(60)
@pytest.mark.skipif(
    not sys.platform.startswith("linux"), reason="reads CPU time from /proc/<pid>/stat"
)
def test_an_idle_worker_uses_almost_no_cpu_and_wakes_fast(project: Project) -> None:
    project.write("tasks.py", TASKS)
    project.configure()
    worker = project.start_worker()
    enqueue(Job("add", args=[0, 0])).get(timeout=10)  # start-up and first job done

    before = cpu_seconds(worker.pid)
    with pytest.raises(subprocess.TimeoutExpired):
        worker.popen.wait(IDLE_WINDOW_SECS)  # measure an idle window; the worker must stay up
    used = cpu_seconds(worker.pid) - before
    assert used < IDLE_CPU_BUDGET_SECS, f"idle worker used {used:.3f}s CPU in {IDLE_WINDOW_SECS}s"

    enqueued_at = time.monotonic()
    assert enqueue(Job("add", args=[2, 3])).get(timeout=5) == 5
    assert time.monotonic() - enqueued_at < 2, "an idle worker should wake at once"


def _burst_over_jobs(project: Project, **env: str) -> tuple[list[str], str]:
    project.write("tasks.py", TASKS)
    project.configure()
    jobs = enqueue_many([Job("add", args=[n, n]) for n in range(JOBS)])
    worker = project.start_worker("--burst", wait=False, **env)
    assert worker.wait() == 0, worker.describe()
    assert f"processed {JOBS}: {JOBS} ok" in worker.stderr
    return [job.id for job in jobs], worker.stderr


@pytest.mark.slow
@pytest.mark.timeout(60)
def test_the_default_log_level_prints_no_line_per_job(project: Project) -> None:
    ids, stderr = _burst_over_jobs(project)

    assert len(stderr.splitlines()) < 10, stderr
    assert not [job_id for job_id in ids if job_id in stderr]


@pytest.mark.slow
@pytest.mark.timeout(60)
def test_debug_logging_prints_each_job(project: Project) -> None:
    ids, stderr = _burst_over_jobs(project, NUVOM_LOG_LEVEL="DEBUG")

    assert [job_id for job_id in ids if job_id in stderr] == ids


@pytest.mark.slow
@pytest.mark.timeout(60)
def test_a_real_environment_variable_beats_dotenv(project: Project) -> None:
    project.write(".env", "NUVOM_LOG_LEVEL=DEBUG\n")
    ids, stderr = _burst_over_jobs(project, NUVOM_LOG_LEVEL="WARNING")

    assert not [job_id for job_id in ids if job_id in stderr]
    assert "started:" not in stderr  # INFO is below WARNING too
