"""Workflows through the CLI in a project folder, on the SQLite store: a chord a producer
sent runs under a burst worker and ``nuvom inspect workflow`` draws it; ``nuvom cancel``
with a workflow's id cancels every member still waiting."""

from __future__ import annotations

import json
from typing import Any

import pytest

from .helpers import Project

TASKS = """
from nuvom import task


@task
def add(x, y):
    return x + y


@task
def total(values):
    return sum(values)
"""

PRODUCER = """
from nuvom.workflow import chord
from tasks import add, total

handle = chord([add.s(i, i) for i in range(5)], total.s()).delay()
print(handle.id)
"""


def _ok(result: Any) -> str:
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    return str(result.stdout)


def _nodes(project: Project, workflow_id: str) -> dict[str, Any]:
    shown = _ok(project.nuvom("inspect", "workflow", workflow_id, "--format", "json"))
    return dict(json.loads(shown))


@pytest.mark.timeout(120)
def test_a_chord_runs_and_its_graph_is_drawn(project: Project) -> None:
    project.write("tasks.py", TASKS)
    _ok(project.nuvom("discover", "tasks"))
    workflow_id = _ok(project.python(PRODUCER)).strip()

    waiting = _nodes(project, workflow_id)
    assert waiting["status"] == "PENDING"
    assert len(waiting["nodes"]) == 6
    stats = json.loads(_ok(project.nuvom("queue", "stats", "--format", "json")))
    assert (stats["totals"]["pending"], stats["totals"]["parked"]) == (5, 1)
    assert "parked" in _ok(project.nuvom("queue", "stats", env={"COLUMNS": "120"}))

    _ok(project.nuvom("runworker", "--burst"))

    done = _nodes(project, workflow_id)
    assert done["status"] == "SUCCESS"
    assert {node["status"] for node in done["nodes"]} == {"SUCCESS"}
    (body,) = [node for node in done["nodes"] if node["id"] == workflow_id]
    assert body["func_name"] == "total"
    assert len(body["after"]) == 5
    assert _ok(project.nuvom("status", workflow_id)).strip() == "20"

    drawn = _ok(project.nuvom("inspect", "workflow", workflow_id, env={"COLUMNS": "200"}))
    assert "total" in drawn
    assert "6 job(s): 6 SUCCESS" in drawn


@pytest.mark.timeout(120)
def test_cancelling_a_workflow_cancels_every_waiting_member(project: Project) -> None:
    project.write("tasks.py", TASKS)
    _ok(project.nuvom("discover", "tasks"))
    workflow_id = _ok(project.python(PRODUCER)).strip()

    said = _ok(project.nuvom("cancel", workflow_id))
    assert "6 waiting job(s) cancelled" in said
    _ok(project.nuvom("runworker", "--burst"))

    nodes = _nodes(project, workflow_id)["nodes"]
    assert {node["status"] for node in nodes} == {"CANCELLED"}


def test_an_id_that_is_no_workflow_is_one_clear_line(project: Project) -> None:
    result = project.nuvom("inspect", "workflow", "no-such-id")
    assert result.returncode == 1
    assert "no workflow with id 'no-such-id'" in result.stderr


def test_a_signature_of_a_task_no_source_declares_is_refused_at_delay(project: Project) -> None:
    project.write("tasks.py", TASKS)
    _ok(project.nuvom("discover", "tasks"))
    result = project.python(
        """
        from nuvom.workflow import chain, signature
        try:
            chain(signature("add", 1, 2), signature("no_such_task")).delay()
        except Exception as exc:
            print(type(exc).__name__, exc)
        """
    )
    assert "WorkflowError" in result.stdout
    assert "'no_such_task'" in result.stdout
    recent = json.loads(_ok(project.nuvom("history", "recent", "--format", "json")))
    assert recent == [], "nothing of the refused workflow was enqueued"
