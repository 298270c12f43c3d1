"""``nuvom cancel``, ``retry`` and ``prune`` on a real store, with a burst worker in between."""

from __future__ import annotations

import json

import pytest

from .helpers import Project, assert_one_line_error

TASKS = """
from pathlib import Path

from nuvom import task


@task
def needs_ok_file(x):
    if not Path("ok").exists():
        raise ValueError("the ok file is missing")
    return x * 2


@task
def add(x, y):
    return x + y
"""

PRODUCER = """
from tasks import add, needs_ok_file

print(needs_ok_file.delay(21).id, add.delay(1, 1).id)
"""


def _inspect(project: Project, job_id: str) -> dict[str, object]:
    result = project.nuvom("inspect", "job", job_id, "--format", "json")
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)  # type: ignore[no-any-return]


@pytest.mark.slow
@pytest.mark.timeout(90)
def test_cancel_retry_and_prune(project: Project) -> None:
    project.write("tasks.py", TASKS)
    produced = project.python(PRODUCER)
    assert produced.returncode == 0, produced.stderr
    failing, cancelled = produced.stdout.split()

    assert project.nuvom("cancel", cancelled).returncode == 0
    assert _inspect(project, cancelled)["status"] == "CANCELLED"
    again = project.nuvom("cancel", cancelled)
    assert again.returncode == 1
    assert_one_line_error(again, cancelled, "CANCELLED")

    first = project.nuvom("runworker", "--burst")
    assert first.returncode == 0, first.stderr
    assert "processed 1: 0 ok, 1 failed" in first.stderr  # the cancelled job never ran
    assert _inspect(project, failing)["status"] == "FAILED"

    (project.root / "ok").touch()
    for job_id in (failing, cancelled):
        retried = project.nuvom("retry", job_id)
        assert retried.returncode == 0, retried.stderr
        assert "re-enqueued" in retried.stdout
    second = project.nuvom("runworker", "--burst")
    assert second.returncode == 0, second.stderr

    record = _inspect(project, failing)
    assert record["status"] == "SUCCESS"
    assert record["result"] == 42
    assert [a["status"] for a in record["history"]] == ["FAILED", "SUCCESS"]  # type: ignore[union-attr]
    assert _inspect(project, cancelled)["result"] == 2
    not_failed = project.nuvom("retry", cancelled)
    assert not_failed.returncode == 1
    assert_one_line_error(not_failed, "SUCCESS")

    pruned = project.nuvom("prune", "--older-than", "0s")
    assert pruned.returncode == 0, pruned.stderr
    assert "pruned 2 job(s)" in pruned.stdout
    gone = project.nuvom("status", failing)
    assert gone.returncode == 1
    assert_one_line_error(gone, "no job with id", failing)


@pytest.mark.slow
@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["history", "recent", "--status", "bogus"], "unknown status 'bogus'"),
        (["prune", "--older-than", "7x"], "--older-than '7x'"),
        (["prune", "--status", "PENDING"], "only finished jobs can be pruned"),
    ],
)
def test_bad_arguments_exit_2_in_one_line(project: Project, args: list[str], needle: str) -> None:
    result = project.nuvom(*args)

    assert result.returncode == 2
    assert_one_line_error(result, needle)
