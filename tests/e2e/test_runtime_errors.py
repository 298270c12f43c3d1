"""Errors that point at the cause, through real processes: a ``tasks.py`` that does not
import, a task that fails, jobs left in a producer's memory queue, the worker's banner."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest

from nuvom.errors import JobFailed
from nuvom.job import Job
from nuvom.queue import enqueue, enqueue_many

from .helpers import Project

# Line 11 lacks its colon: ``ast`` cannot parse the file, so discovery skips it.
BROKEN_TASKS = """
\"\"\"Two tasks, and a typo that breaks both.\"\"\"
from nuvom import task


@task
def good(x):
    return x * 2


@task
def other(x)
    return x
"""

FIXED_TASKS = BROKEN_TASKS.replace("def other(x)", "def other(x):")

FAILING_TASKS = """
from nuvom import task


@task(retries=2, retry_delay_secs=0)
def boom():
    raise RuntimeError("kaboom")
"""

ADD_TASKS = """
from nuvom import task


@task
def add(x, y):
    return x + y
"""

LOST_JOBS_TEXT = "job(s) still in this process's memory queue are lost as it exits"
MEMORY_WORKER_TEXT = "only sees jobs enqueued in its own process"


def level_lines(stderr: str, level: str) -> list[str]:
    """The log lines of ``level`` in a worker's stderr (Rich prints the level as a word and
    pads each line to the terminal's width)."""
    lines = [line.rstrip() for line in stderr.splitlines()]
    return [line for line in lines if re.search(rf"\b{level}\b", line)]


def inspect_json(project: Project, job_id: str) -> dict[str, Any]:
    shown = project.nuvom("inspect", "job", job_id, "--format", "json")
    assert shown.returncode == 0, shown.stderr
    record: dict[str, Any] = json.loads(shown.stdout)
    return record


# -- a tasks.py that does not import -------------------------------------------


@pytest.mark.slow
@pytest.mark.timeout(90)
def test_a_syntax_error_fails_each_job_with_the_import_error_logged_once(project: Project) -> None:
    project.write("tasks.py", BROKEN_TASKS)
    project.configure()
    jobs = enqueue_many([Job("good", args=[n]) for n in range(3)] + [Job("other", args=[1])])
    ghost = enqueue(Job("ghost"))

    worker = project.start_worker("--burst", "--workers", "2", wait=False)
    assert worker.wait() == 0, worker.describe()

    for job in jobs:
        record = inspect_json(project, job.id)
        assert record["status"] == "FAILED"
        assert record["error_type"] == "TaskImportError", record
        assert record["error_message"] == "tasks.py line 11: expected ':'"
        [attempt] = record["history"]
        assert attempt["error_type"] == "TaskImportError"
        assert 'tasks.py", line 11' in attempt["traceback"]
        assert "SyntaxError: expected ':'" in attempt["traceback"]
    # A task no file declares is still not found, and the message names the skipped file.
    missing = inspect_json(project, ghost.id)
    assert missing["error_type"] == "TaskNotFound"
    assert "tasks.py:11: expected ':'" in missing["error_message"]

    errors = level_lines(worker.stderr, "ERROR")
    assert len(errors) == 1, worker.stderr  # once per worker, not once per job
    assert "tasks.py line 11: expected ':'" in errors[0]
    assert "no task named 'good'" not in worker.stderr


@pytest.mark.slow
@pytest.mark.timeout(90)
def test_a_running_worker_loads_a_fixed_tasks_py_again(project: Project) -> None:
    project.write("tasks.py", BROKEN_TASKS)
    project.configure()
    worker = project.start_worker("--workers", "1")

    for n in (1, 2):
        with pytest.raises(JobFailed) as failed:
            enqueue(Job("good", args=[n])).get(timeout=30)
        assert failed.value.error_type == "TaskImportError"
        assert failed.value.error_message == "tasks.py line 11: expected ':'"

    project.write("tasks.py", FIXED_TASKS)
    assert enqueue(Job("good", args=[3])).get(timeout=30) == 6
    assert enqueue(Job("other", args=[4])).get(timeout=30) == 4
    assert len(level_lines(worker.stderr, "ERROR")) == 1, worker.describe()


# -- a task that fails ---------------------------------------------------------


@pytest.mark.slow
@pytest.mark.timeout(90)
def test_each_failed_attempt_is_one_warning_at_info(project: Project) -> None:
    project.write("tasks.py", FAILING_TASKS)
    project.configure()
    job = enqueue(Job("boom"))

    worker = project.start_worker("--burst", "--workers", "1", wait=False)
    assert worker.wait() == 0, worker.describe()

    warnings = [line for line in level_lines(worker.stderr, "WARNING") if job.id in line]
    assert len(warnings) == 3, worker.stderr  # retries=2: three attempts
    for attempt, line in enumerate(warnings, 1):
        assert "task boom" in line
        assert f"attempt {attempt}" in line
        assert "RuntimeError: kaboom" in line
    assert [line.endswith("retrying in 0 s") for line in warnings] == [True, True, False]
    assert warnings[-1].endswith("failed for good")
    assert "Traceback" not in worker.stderr  # that is for DEBUG
    assert inspect_json(project, job.id)["status"] == "FAILED"


@pytest.mark.slow
@pytest.mark.timeout(90)
def test_debug_logging_shows_the_failed_attempts_traceback(project: Project) -> None:
    project.write("tasks.py", FAILING_TASKS)
    project.configure()
    job = enqueue(Job("boom", max_retries=0))

    worker = project.start_worker("--burst", "--workers", "1", wait=False, NUVOM_LOG_LEVEL="DEBUG")
    assert worker.wait() == 0, worker.describe()

    assert f"traceback of job {job.id}, attempt 1:" in worker.stderr
    assert "Traceback (most recent call last):" in worker.stderr
    assert 'raise RuntimeError("kaboom")' in worker.stderr


# -- the memory queue ----------------------------------------------------------


@pytest.mark.slow
@pytest.mark.timeout(60)
@pytest.mark.parametrize(
    "logging_setup",
    ["", "import logging; logging.basicConfig()"],
    ids=["no-logging-configured", "basic-config"],
)
def test_a_producer_exiting_with_jobs_in_its_memory_queue_warns(
    project: Project, logging_setup: str
) -> None:
    project.write("tasks.py", ADD_TASKS)
    produced = project.python(
        f"{logging_setup}\nfrom tasks import add; add.delay(5, 7); add.delay(1, 2)",
        NUVOM_QUEUE_BACKEND="memory",
    )
    assert produced.returncode == 0, produced.stderr
    assert f"2 {LOST_JOBS_TEXT}" in produced.stderr
    assert "NUVOM_QUEUE_BACKEND=memory" in produced.stderr
    assert "Traceback" not in produced.stderr


@pytest.mark.slow
@pytest.mark.timeout(60)
def test_a_process_that_runs_its_own_memory_jobs_exits_quietly(project: Project) -> None:
    project.write("tasks.py", ADD_TASKS)
    produced = project.python(
        """
        from tasks import add
        from nuvom.worker import Worker

        job = add.delay(5, 7)
        Worker(workers=1).run(burst=True)
        print(job.get(timeout=5))
        """,
        NUVOM_QUEUE_BACKEND="memory",
        NUVOM_RESULT_BACKEND="memory",
    )
    assert produced.returncode == 0, produced.stderr
    assert produced.stdout.strip() == "12"
    assert LOST_JOBS_TEXT not in produced.stderr


@pytest.mark.slow
@pytest.mark.timeout(60)
def test_runworker_on_the_memory_queue_warns_and_names_it(project: Project) -> None:
    project.write("tasks.py", ADD_TASKS)
    ran = project.nuvom("runworker", "--burst", NUVOM_QUEUE_BACKEND="memory")
    assert ran.returncode == 0, ran.stderr

    [banner] = [line for line in ran.stderr.splitlines() if line.startswith("nuvom worker")]
    assert " queue=memory " in banner, banner
    assert "object at 0x" not in ran.stderr
    [warning] = level_lines(ran.stderr, "WARNING")
    assert MEMORY_WORKER_TEXT in warning


@pytest.mark.slow
@pytest.mark.timeout(60)
def test_the_banner_names_the_default_queue_by_name(project: Project) -> None:
    project.write("tasks.py", ADD_TASKS)
    ran = project.nuvom("runworker", "--burst")
    assert ran.returncode == 0, ran.stderr

    [banner] = [line for line in ran.stderr.splitlines() if line.startswith("nuvom worker")]
    assert " queue=sqlite " in banner, banner
    assert MEMORY_WORKER_TEXT not in ran.stderr
