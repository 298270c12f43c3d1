"""The CLI on the file backends: ``queue stats``, ``cancel``, ``retry`` and a burst worker."""

from __future__ import annotations

import json
from typing import Any

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


@task(queue="emails")
def send(to):
    return f"sent to {to}"
"""

PRODUCER = """
from tasks import needs_ok_file, send

print(needs_ok_file.delay(21).id, send.delay("a@b.c").id, send.schedule("later", in_=3600).id)
"""

FILE_BACKENDS = {"NUVOM_QUEUE_BACKEND": "file", "NUVOM_RESULT_BACKEND": "file"}


def _json(project: Project, *args: str) -> Any:
    result = project.nuvom(*args, "--format", "json")
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


@pytest.mark.slow
@pytest.mark.timeout(90)
def test_queue_stats_cancel_and_retry_on_the_file_backends(project: Project) -> None:
    project.env.update(FILE_BACKENDS)
    project.write("tasks.py", TASKS)
    produced = project.python(PRODUCER)
    assert produced.returncode == 0, produced.stderr
    failing, cancelled, later = produced.stdout.split()

    stats = _json(project, "queue", "stats")
    assert (stats["queue_backend"], stats["result_backend"]) == ("file", "file")
    rows = {row["queue"]: row for row in stats["queues"]}
    assert (rows["default"]["pending"], rows["emails"]["pending"]) == (1, 1)
    assert rows["emails"]["scheduled"] == 1
    assert stats["totals"]["failed"] == 0

    assert project.nuvom("cancel", cancelled).returncode == 0
    assert _json(project, "inspect", "job", cancelled)["status"] == "CANCELLED"
    again = project.nuvom("cancel", cancelled)
    assert again.returncode == 1
    assert_one_line_error(again, cancelled, "CANCELLED")

    first = project.nuvom("runworker", "--burst")
    assert first.returncode == 0, first.stderr
    assert _json(project, "inspect", "job", failing)["status"] == "FAILED"
    stats = _json(project, "queue", "stats")
    assert stats["totals"] == {
        "pending": 0, "scheduled": 1, "held": 0, "parked": 0, "running": 0, "expired": 0,
        "quarantined": 0, "failed": 1,
    }  # fmt: skip

    (project.root / "ok").touch()
    for job_id in (failing, cancelled):
        retried = project.nuvom("retry", job_id)
        assert retried.returncode == 0, retried.stderr
    second = project.nuvom("runworker", "--burst")
    assert second.returncode == 0, second.stderr

    record = _json(project, "inspect", "job", failing)
    assert record["status"] == "SUCCESS"
    assert record["result"] == 42
    assert [a["status"] for a in record["history"]] == ["FAILED", "SUCCESS"]
    assert _json(project, "inspect", "job", cancelled)["result"] == "sent to a@b.c"
    assert _json(project, "inspect", "job", later)["status"] == "SCHEDULED"
    table = project.nuvom("queue", "stats")
    assert table.returncode == 0, table.stderr
    assert "emails" in table.stdout
    assert "file" in table.stdout


@pytest.mark.slow
@pytest.mark.timeout(60)
def test_queue_stats_shows_lease_owners_and_quarantine(project: Project) -> None:
    project.write("tasks.py", TASKS)
    runtime = project.configure(queue_backend="file", result_backend="file")
    from nuvom.job import Job

    runtime.queue.enqueue_many([Job("needs_ok_file", args=[n]) for n in range(3)])
    runtime.queue.pop_batch(2, worker_id="host-a:123", lease_secs=3600)
    (bad,) = list(runtime.queue.pending_dir.rglob("*.job"))
    bad.write_bytes(b"not a job")
    assert runtime.queue.pop_batch(1, worker_id="host-b:9", lease_secs=3600) == []

    project.env.update(FILE_BACKENDS)
    stats = _json(project, "queue", "stats")

    (row,) = stats["queues"]
    assert row["running"] == 2
    assert row["lease_owners"] == {"host-a:123": 2}
    assert row["quarantined"] == 1
