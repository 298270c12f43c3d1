"""Jobs that cannot run or cannot be stored: a clear outcome, and the worker keeps going."""

from __future__ import annotations

import pytest

from nuvom.errors import BackendError, JobFailed, SerializationError
from nuvom.job import Job, JobStatus
from nuvom.queue import enqueue_many
from nuvom.sdk import get_job
from nuvom.task import task

from .helpers import TASKS, Project


class Opaque:
    """Not data: nuvom must refuse to store it."""


@pytest.mark.slow
@pytest.mark.timeout(60)
def test_an_unknown_task_fails_its_job_and_the_worker_runs_the_next(project: Project) -> None:
    project.write("tasks.py", TASKS)
    project.configure()
    missing, known = enqueue_many([Job("no_such_task", args=[1]), Job("add", args=[2, 3])])

    worker = project.start_worker("--burst", "--workers", "1")
    assert worker.wait() == 0, worker.describe()

    with pytest.raises(JobFailed) as failure:
        missing.get(timeout=5)
    assert failure.value.error_type == "TaskNotFound"
    assert "no_such_task" in (failure.value.error_message or "")
    assert known.get(timeout=5) == 5
    assert get_job(missing.id).status is JobStatus.FAILED
    assert "processed 2: 1 ok, 1 failed" in worker.stderr
    assert "Traceback" not in worker.stderr


def test_a_non_serializable_argument_is_refused_at_delay(project: Project) -> None:
    runtime = project.configure()

    @task(registry=runtime.registry)
    def describe(thing: object, label: str = "") -> str:
        return f"{label}{thing}"

    with pytest.raises(SerializationError) as refused:
        describe.delay(Opaque())
    assert refused.value.argument == "argument 0"
    assert "argument 0 of describe()" in str(refused.value)
    assert "Opaque" in str(refused.value)

    with pytest.raises(SerializationError) as refused_kwarg:
        describe.delay(1, label=Opaque())  # type: ignore[arg-type]
    assert refused_kwarg.value.argument == "argument 'label'"

    # One bad call in a batch: the whole batch stays out.
    with pytest.raises(SerializationError):
        describe.map([(1,), (2,), (Opaque(),)])

    assert runtime.queue.qsize() == 0
    assert runtime.results.list_jobs() == []


def test_a_producer_refuses_a_garbage_database_file(project: Project) -> None:
    project.db_path.parent.mkdir()
    project.db_path.write_text("not a database\n" * 40)
    before = project.db_path.read_bytes()
    project.configure()

    with pytest.raises(BackendError, match="is not a SQLite database"):
        enqueue_many([Job("add", args=[1, 2])])

    assert project.db_path.read_bytes() == before
    assert sorted(p.name for p in project.db_path.parent.iterdir()) == ["nuvom.db"]
