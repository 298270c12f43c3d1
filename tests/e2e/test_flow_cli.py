"""Flow control through the CLI in a project folder, on the SQLite store: a paused queue
stays paused for a worker started later, ``queue stats`` shows the pause and the jobs a
rate limit held back, and ``inspect job`` says why a job waits."""

from __future__ import annotations

import json
from typing import Any

import pytest

from .helpers import Project

TASKS = """
from nuvom import task


@task(rate_limit="2/m", queue="partner")
def call_api(i):
    return i


@task(queue="emails")
def send(i):
    return i
"""

PRODUCER = """
from tasks import call_api, send

print(" ".join(h.id for h in call_api.map(range(4))))
print(" ".join(h.id for h in send.map(range(3))))
"""


def _ok(result: Any) -> str:
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    return str(result.stdout)


@pytest.mark.timeout(120)
def test_pause_resume_and_why_a_job_waits(project: Project) -> None:
    project.write("tasks.py", TASKS)
    _ok(project.nuvom("discover", "tasks"))
    assert "queue emails paused" in _ok(project.nuvom("queue", "pause", "emails"))
    assert "already paused" in _ok(project.nuvom("queue", "pause", "emails"))
    limited, mails = (line.split() for line in _ok(project.python(PRODUCER)).splitlines())

    _ok(project.nuvom("runworker", "--burst"))  # the pause is in the store: it holds
    stats = json.loads(_ok(project.nuvom("queue", "stats", "--format", "json")))
    rows = {row["queue"]: row for row in stats["queues"]}
    assert rows["emails"]["paused"] is True
    assert rows["emails"]["pending"] == 3
    assert stats["paused"] == ["emails"]
    assert rows["partner"]["held"] == 2, "2/m: a burst of two ran, two are held"
    assert stats["held_by_task"] == {"call_api": {"rate:call_api": 2}}
    table = _ok(project.nuvom("queue", "stats", env={"COLUMNS": "120"}))
    assert "(paused)" in table
    assert "held back: call_api: 2 held by its rate limit 2/m" in table

    held = [job for job in limited if "rate limit 2/m" in _ok(project.nuvom("inspect", "job", job))]
    assert len(held) == 2
    shown = json.loads(_ok(project.nuvom("inspect", "job", mails[0], "--format", "json")))
    assert shown["waiting_on"] == "queue emails is paused (nuvom queue resume emails)"

    assert "resumed" in _ok(project.nuvom("queue", "resume", "emails"))
    _ok(project.nuvom("runworker", "--burst"))
    for job in mails:
        shown = json.loads(_ok(project.nuvom("inspect", "job", job, "--format", "json")))
        assert shown["status"] == "SUCCESS"
