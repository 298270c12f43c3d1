"""``nuvom dead list|reinject|delete``: the records a worker set aside, seen and acted on.

The story: producers sign jobs with one key, a worker is deployed with another and
quarantines them ("bad signature"). Once the worker's key is fixed, one job is re-injected
and runs; the other is deleted.
"""

from __future__ import annotations

import json

from .dead_letters import RIGHT_KEY, WRONG_KEY, quarantined
from .helpers import Project


def test_dead_letters_are_listed_reinjected_and_deleted(project: Project) -> None:
    ada, bob = quarantined(project, "ada", "bob")

    listed = project.nuvom("dead", "list", "--format", "json")
    assert listed.returncode == 0, listed.stderr
    letters = {d["id"]: d for d in json.loads(listed.stdout)}
    assert set(letters) == {ada, bob}
    assert "signature" in letters[ada]["reason"]
    table = project.nuvom("dead", "list", env=dict(project.env, COLUMNS="80"))
    assert ada in table.stdout, "ids in full at 80 columns"
    assert bob in table.stdout

    refused = project.nuvom("dead", "reinject", ada, **WRONG_KEY)
    assert refused.returncode == 1
    assert "signature" in refused.stderr + refused.stdout, "says why it still cannot be read"

    put_back = project.nuvom("dead", "reinject", ada, **RIGHT_KEY)
    assert put_back.returncode == 0, put_back.stderr
    assert f"dead letter {ada} re-injected" in put_back.stdout
    deleted = project.nuvom("dead", "delete", bob)
    assert deleted.returncode == 0
    assert f"dead letter {bob} deleted" in deleted.stdout
    again = project.nuvom("dead", "delete", bob)
    assert again.returncode == 1
    assert "no dead letter" in again.stderr + again.stdout

    assert project.nuvom("runworker", "--burst", **RIGHT_KEY).returncode == 0
    status = project.nuvom("status", ada, "--format", "json")
    assert json.loads(status.stdout)["status"] == "SUCCESS", status.stdout
    empty = project.nuvom("dead", "list")
    assert "no dead letters" in empty.stdout
