"""The README quickstart in an empty folder: ``@task``, ``nuvom runworker``, ``.delay()``, the CLI."""

from __future__ import annotations

import json
import signal
import time

import pytest

from .helpers import Project, assert_one_line_error, posix_only

QUICKSTART_TASKS = """
from nuvom import task


@task(retries=2, retry_delay_secs=5, timeout_secs=3, store_result=True)
def add(x, y):
    return x + y


@task
def divide(x, y):
    return x / y
"""

# Runs in its own process, as a web app enqueueing work would.
PRODUCER = """
import json

from tasks import add

job = add.delay(5, 7)
assert job.get(timeout=30) == 12
mapped = add.map([(1, 2), (3, 4)])
print(json.dumps({
    "id": job.id,
    "mapped": [m.id for m in mapped],
    "results": [m.get(timeout=30) for m in mapped],
}))
"""


@pytest.mark.slow
@posix_only
@pytest.mark.timeout(90)
def test_quickstart_worker_producer_and_cli(project: Project) -> None:
    project.write("tasks.py", QUICKSTART_TASKS)
    worker = project.start_worker()

    produced = project.python(PRODUCER)
    assert produced.returncode == 0, produced.stderr
    report = json.loads(produced.stdout)
    assert report["results"] == [3, 7]
    job_id = report["id"]
    all_ids = {job_id, *report["mapped"]}

    status = project.nuvom("status", job_id)
    assert status.returncode == 0, status.stderr
    assert status.stdout.strip() == "12"

    shown = project.nuvom("inspect", "job", job_id)
    assert shown.returncode == 0, shown.stderr
    assert "SUCCESS" in shown.stdout
    assert "add(5, 7)" in shown.stdout
    assert job_id in shown.stdout

    shown_json = project.nuvom("inspect", "job", job_id, "--format", "json")
    assert shown_json.returncode == 0, shown_json.stderr
    record = json.loads(shown_json.stdout)
    assert record["id"] == job_id
    assert record["status"] == "SUCCESS"
    assert record["func_name"] == "add"
    assert record["args"] == [5, 7]
    assert record["result"] == 12
    assert record["attempts"] == 1
    assert [attempt["status"] for attempt in record["history"]] == ["SUCCESS"]

    recent = project.nuvom(
        "history", "recent", "--limit", "10", "--status", "SUCCESS", "--format", "json"
    )
    assert recent.returncode == 0, recent.stderr
    listed = json.loads(recent.stdout)
    assert {r["id"] for r in listed} == all_ids
    assert {r["status"] for r in listed} == {"SUCCESS"}
    assert sorted(r["result"] for r in listed) == [3, 7, 12]

    # "Tables never cut a job id short", even on a narrow terminal.
    table = project.nuvom("history", "recent", COLUMNS="80")
    assert table.returncode == 0, table.stderr
    for one_id in all_ids:
        assert one_id in table.stdout

    interrupted_at = time.monotonic()
    worker.send(signal.SIGINT)
    assert worker.wait(timeout=10) == 0, worker.describe()
    assert time.monotonic() - interrupted_at < 5
    assert "processed 3: 3 ok" in worker.stderr
    assert "Traceback" not in worker.stderr


@pytest.mark.slow
def test_config_says_where_each_setting_came_from(project: Project) -> None:
    project.write(".env", "NUVOM_BATCH_SIZE=7\n")
    result = project.nuvom("config", "--format", "json", NUVOM_MAX_WORKERS="3")
    assert result.returncode == 0, result.stderr
    settings = json.loads(result.stdout)
    assert settings["max_workers"] == {
        "variable": "NUVOM_MAX_WORKERS",
        "value": 3,
        "source": "environment",
    }
    assert settings["batch_size"]["value"] == 7
    assert settings["batch_size"]["source"] == ".env"
    assert settings["lease_secs"]["source"] == "default"


@pytest.mark.slow
def test_runtestworker_runs_one_job_in_process(project: Project) -> None:
    project.write("tasks.py", QUICKSTART_TASKS)
    project.write("job.json", '{"func_name": "add", "args": [2, 3]}')

    result = project.nuvom("runtestworker", "run", "job.json")

    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "5"
    assert not project.db_path.exists()  # no queue involved


@pytest.mark.slow
def test_runtestworker_exits_1_when_the_task_fails(project: Project) -> None:
    project.write("tasks.py", QUICKSTART_TASKS)
    project.write("job.json", '{"func_name": "divide", "args": [1, 0]}')

    result = project.nuvom("runtestworker", "run", "job.json")

    assert result.returncode == 1, result.stdout + result.stderr
    assert "FAILED ZeroDivisionError" in result.stdout


@pytest.mark.slow
def test_runtestworker_rejects_malformed_json_in_one_line(project: Project) -> None:
    project.write("tasks.py", QUICKSTART_TASKS)
    project.write("job.json", '{"func_name": "add", "args": [2, 3]')

    result = project.nuvom("runtestworker", "run", "job.json")

    assert result.returncode == 2, result.stdout + result.stderr
    assert_one_line_error(result, "job.json", "not valid JSON")


@pytest.mark.slow
@pytest.mark.parametrize(
    "prelude",
    [
        "",
        "import nuvom.task",
        "from nuvom.task import task as decorator",
        "import nuvom; nuvom.task",
    ],
    ids=["fresh", "submodule-first", "from-submodule-first", "attribute-first"],
)
def test_from_nuvom_import_task_is_the_decorator_in_any_import_order(
    project: Project, prelude: str
) -> None:
    """A fresh interpreter each time: which module loads first is process-wide state."""
    result = project.python(
        f"""
        {prelude}
        import nuvom
        from nuvom import task

        @task
        def bare(x):
            return x

        @task(retries=1)
        def with_options(x):
            return x

        @nuvom.task
        def through_the_package(x):
            return x

        print(bare(1), with_options.retries, through_the_package.name)
        """
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["1", "1", "through_the_package"]
