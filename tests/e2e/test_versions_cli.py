"""Task versions and signatures through the CLI: ``discover tasks --check`` for CI,
``--export`` for workers, and ``list tasks`` showing both."""

from __future__ import annotations

import json
from typing import Any

from .helpers import Project

V1 = """
from nuvom import task


@task
def charge(order_id: int, amount_cents: int):
    ...


@task(version=3)
def refund(order_id):
    ...
"""
CHANGED = V1.replace("amount_cents: int)", "amount_cents: int, currency: str = 'EUR')")
BUMPED = CHANGED.replace("@task\ndef charge", "@task(version=2)\ndef charge")


def _out(result: Any) -> str:
    assert "Traceback" not in result.stderr, result.stderr
    return str(result.stdout)


def test_check_fails_on_a_changed_signature_without_a_bump(project: Project) -> None:
    project.write("billing.py", V1)
    assert project.nuvom("discover", "tasks").returncode == 0
    manifest = (project.root / ".nuvom" / "manifest.json").read_text()
    same = project.nuvom("discover", "tasks", "--check")
    assert same.returncode == 0, same.stdout + same.stderr
    assert "no signature changed without a version bump" in _out(same)

    project.write("billing.py", CHANGED)
    changed = project.nuvom("discover", "tasks", "--check", env={"COLUMNS": "200"})
    assert changed.returncode == 1
    assert (
        "charge: parameters changed ((order_id: int, amount_cents: int) → (order_id: int, "
        "amount_cents: int, currency: str = 'EUR')) but version is still 1" in _out(changed)
    )
    assert (project.root / ".nuvom" / "manifest.json").read_text() == manifest, (
        "--check writes no manifest"
    )  # fmt: skip

    project.write("billing.py", BUMPED)
    bumped = project.nuvom("discover", "tasks", "--check", "--format", "json")
    assert bumped.returncode == 0
    report = json.loads(_out(bumped))
    assert report["ok"] is True
    assert report["bumped"][0].startswith("charge: version 1 → 2")


def test_export_and_list_show_versions_and_signatures(project: Project) -> None:
    project.write("billing.py", V1)
    result = project.nuvom("discover", "tasks", "--export", ".nuvom_tasks.json")
    assert result.returncode == 0, result.stderr
    exported = json.loads((project.root / ".nuvom_tasks.json").read_text())
    by_name = {t["name"]: t for t in exported["tasks"]}
    assert [p["name"] for p in by_name["charge"]["params"]] == ["order_id", "amount_cents"]
    assert by_name["refund"]["options"]["version"] == 3

    listed = json.loads(
        _out(
            project.nuvom(
                "list",
                "tasks",
                "--format",
                "json",
                env={"NUVOM_MANIFEST_PATH": ".nuvom_tasks.json"},
            )
        )
    )
    rows = {row["name"]: row for row in listed}
    assert rows["charge"]["version"] == 1
    assert rows["refund"]["version"] == 3
    assert rows["charge"]["signature"] == "(order_id: int, amount_cents: int)"
    table = _out(project.nuvom("list", "tasks", env={"COLUMNS": "160"}))
    assert "(order_id: int, amount_cents: int)" in table


def test_check_warns_of_a_removed_task_whose_jobs_still_wait(project: Project) -> None:
    project.write("billing.py", V1)
    assert project.nuvom("discover", "tasks").returncode == 0
    sent = project.python("from billing import refund\nrefund.delay(1)\nrefund.delay(2)\n")
    assert sent.returncode == 0, sent.stderr
    project.write("billing.py", V1.split("@task(version=3)")[0])
    result = project.nuvom("discover", "tasks", "--check", COLUMNS="200")
    assert result.returncode == 0, "a removal is a warning, not an error"
    assert "refund: removed from the source, and 2 of its jobs still wait in the store" in (
        result.stderr
    )


def test_a_worker_starts_from_the_exported_list_without_importing_tasks(project: Project) -> None:
    project.write("billing.py", V1.replace("from nuvom import task",
                                           "from nuvom import task\nopen('imported', 'w')"))  # fmt: skip
    assert project.nuvom("discover", "tasks", "--export", "tasks.json").returncode == 0
    assert not (project.root / "imported").exists(), "discovery reads source, imports nothing"
    idle = project.nuvom("runworker", "--burst", NUVOM_MANIFEST_PATH="tasks.json")
    assert idle.returncode == 0, idle.stderr
    assert not (project.root / "imported").exists(), "nothing imported before a job came"

    sent = project.python("from nuvom.job import Job\nfrom nuvom.queue import enqueue\n"
                          "enqueue(Job('charge', args=(1, 100)))\n",
                          NUVOM_MANIFEST_PATH="tasks.json")  # fmt: skip
    assert sent.returncode == 0, sent.stderr
    assert not (project.root / "imported").exists(), "enqueue by name imports nothing either"
    ran = project.nuvom("runworker", "--burst", NUVOM_MANIFEST_PATH="tasks.json")
    assert ran.returncode == 0, ran.stderr
    assert (project.root / "imported").exists(), "the first job of the task imported it"
