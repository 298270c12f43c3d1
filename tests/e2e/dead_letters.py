"""The dead letters the CLI and dashboard tests act on: jobs signed with one key, set aside
by a worker deployed with another ("bad signature")."""

from __future__ import annotations

from .helpers import Project

SIGNED_TASKS = """
from nuvom import task


@task
def greet(name):
    return f"hello {name}"
"""
RIGHT_KEY = {"NUVOM_SIGNING_KEY": "the key"}
WRONG_KEY = {"NUVOM_SIGNING_KEY": "another key"}


def quarantined(project: Project, *names: str) -> list[str]:
    """``greet(name)`` enqueued for each name under ``RIGHT_KEY``, then quarantined by a
    burst worker under ``WRONG_KEY``; the jobs' ids, in order."""
    project.write("tasks.py", SIGNED_TASKS)
    made = project.python(
        f"import tasks\nfor n in {names!r}: print(tasks.greet.delay(n).id)", **RIGHT_KEY
    )
    assert made.returncode == 0, made.stderr
    assert project.nuvom("runworker", "--burst", **WRONG_KEY).returncode == 0
    return made.stdout.split()
