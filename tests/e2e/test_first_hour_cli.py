"""The first hour with the CLI: looking creates nothing, answers say where they looked,
``discover tasks PATH`` keeps the rest of the project, and the demo's hints show something."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from .helpers import Project, assert_one_line_error

TASKS = """
from nuvom.task import task


@task(retries=2, retry_delay_secs=0)
def boom(x):
    raise ValueError("boom always fails")


@task
def add(x, y):
    return x + y
"""

LOOKING = (
    ["history", "recent"],
    ["history", "recent", "--status", "FAILED"],
    ["history", "recent", "--format", "json"],
    ["inspect", "job", "nope"],
    ["status", "nope"],
    ["queue", "stats"],
    ["queue", "stats", "--format", "json"],
)


def _everything_under(folder: Path) -> set[str]:
    return {str(path.relative_to(folder)) for path in folder.rglob("*")}


@pytest.mark.slow
@pytest.mark.parametrize(
    ("backend", "store"),
    [("sqlite", Path(".nuvom", "nuvom.db")), ("file", Path(".nuvom", "results"))],
)
def test_looking_where_there_is_no_store_creates_nothing_and_says_where_it_looked(
    project: Project, backend: str, store: Path
) -> None:
    env = {"NUVOM_QUEUE_BACKEND": backend, "NUVOM_RESULT_BACKEND": backend}
    for args in LOOKING:
        result = project.nuvom(*args, **env)
        assert "Traceback" not in result.stderr, result.stderr
        assert _everything_under(project.root) == set(), (args, _everything_under(project.root))
        if args[0] in ("inspect", "status"):
            assert result.returncode == 1
            assert_one_line_error(result, "no job with id 'nope'", f"in {store}", "no such")
        else:
            assert result.returncode == 0, result.stderr
    assert project.nuvom("history", "recent", **env).stdout.startswith(f"no jobs yet in {store}")
    failed = project.nuvom("history", "recent", "--status", "failed", **env)
    assert failed.stdout.startswith(f"no FAILED jobs in {store}")
    assert project.nuvom("history", "recent", "--format", "json", **env).stdout.strip() == "[]"
    stats = json.loads(project.nuvom("queue", "stats", "--format", "json", **env).stdout)
    assert stats["totals"]["pending"] == 0


@pytest.mark.slow
def test_looking_at_a_store_leaves_it_as_it_was(project: Project) -> None:
    project.write("tasks.py", TASKS)
    produced = project.python("from tasks import add; print(add.delay(1, 2).id)")
    assert produced.returncode == 0, produced.stderr
    job_id = produced.stdout.strip()
    before = {path: path.stat().st_mtime_ns for path in project.db_path.parent.iterdir()}

    for args in (["status", job_id], ["inspect", "job", job_id], ["history", "recent"],
                 ["queue", "stats"], ["inspect", "job", "nope"]):  # fmt: skip
        result = project.nuvom(*args)
        assert "Traceback" not in result.stderr, result.stderr
    assert "PENDING" in project.nuvom("status", job_id).stdout
    missing = project.nuvom("inspect", "job", "nope")
    assert_one_line_error(missing, "no job with id 'nope'", f"in {project.db_path.relative_to(project.root)}")  # fmt: skip
    assert "no such" not in missing.stderr
    after = {path: path.stat().st_mtime_ns for path in project.db_path.parent.iterdir()}
    assert after == before  # no file added (no manifest, no -wal/-shm), none written


def test_looking_at_a_store_an_older_nuvom_wrote_leaves_it_as_it_was(project: Project) -> None:
    import sqlite3

    from nuvom.backends.sqlite import sql

    project.db_path.parent.mkdir(parents=True)
    with sqlite3.connect(project.db_path) as conn:  # the schema before schedules existed
        for statement in sql.SCHEMA:
            if "nuvom_schedules" not in statement and "nuvom_ticks" not in statement:
                conn.execute(statement)
        conn.execute(sql.SET_SCHEMA_VERSION, (str(sql.SCHEMA_VERSION),))
    conn.close()
    before = project.db_path.read_bytes()

    listed = project.nuvom("schedules", "list")

    assert listed.returncode == 0, listed.stderr
    assert "no schedules" in listed.stdout
    assert project.db_path.read_bytes() == before, "a read added no table to the file"


def _names(project: Project) -> set[str]:
    listed = project.nuvom("list", "tasks", "--format", "json")
    assert listed.returncode == 0, listed.stderr
    return {task["name"] for task in json.loads(listed.stdout)}


@pytest.mark.slow
def test_discover_a_folder_rescans_it_into_the_one_manifest_of_the_project(
    project: Project,
) -> None:
    project.write("tasks.py", "from nuvom import task\n@task\ndef top(): return 'top'\n")
    project.write("project/__init__.py", "")
    project.write("project/jobs.py", "from nuvom import task\n@task\ndef inner(): ...\n")
    project.write("project/old.py", "from nuvom import task\n@task\ndef old(): ...\n")
    project.write(".nuvomignore", "project/ignored/\n")
    project.write("project/ignored/x.py", "from nuvom import task\n@task\ndef ignored(): ...\n")

    whole = project.nuvom("discover", "tasks", "--format", "json")
    assert whole.returncode == 0, whole.stderr
    full = json.loads((project.root / ".nuvom" / "manifest.json").read_text())
    assert _names(project) == {"top", "inner", "old"}

    (project.root / "project" / "old.py").unlink()
    project.write("project/new.py", "from nuvom import task\n@task(retries=1)\ndef new(): ...\n")
    (project.root / "tasks.py").unlink()  # outside the folder scanned: kept until a full scan
    part = project.nuvom("discover", "tasks", "project", "--format", "json")
    assert part.returncode == 0, part.stderr
    assert _names(project) == {"top", "inner", "new"}
    manifest = json.loads((project.root / ".nuvom" / "manifest.json").read_text())
    assert manifest["root"] == full["root"] == str(project.root.resolve())
    report = json.loads(part.stdout)
    assert (report["added"], report["removed"], report["scanned"]) == (["new"], ["old"], "project")
    assert report["files"] == 3  # project/__init__.py, jobs.py, new.py: not the ignored folder
    inner = {t["name"]: t for t in manifest["tasks"]}["inner"]
    assert inner == {t["name"]: t for t in full["tasks"]}["inner"]  # same module, same file

    table = project.nuvom("discover", "tasks", "project/")
    assert "project/: 2 tasks in 3 files" in table.stdout
    assert "3 tasks in all" in table.stdout

    outside = project.nuvom("discover", "tasks", "..")
    assert outside.returncode == 2
    assert_one_line_error(outside, "outside this project")


@pytest.mark.slow
def test_a_first_discover_of_a_folder_roots_the_manifest_here(project: Project) -> None:
    project.write("tasks.py", "from nuvom import task\n@task\ndef top(x): return x + 1\n")
    project.write("project/jobs.py", "from nuvom import task\n@task\ndef inner(): ...\n")
    first = project.nuvom("discover", "tasks", "project/")
    assert first.returncode == 0, first.stderr
    manifest = json.loads((project.root / ".nuvom" / "manifest.json").read_text())
    assert manifest["root"] == str(project.root.resolve())
    assert [t["file"] for t in manifest["tasks"]] == ["project/jobs.py"]

    # A worker here finds a task outside project/ (its rescan covers the whole root).
    project.write("job.json", '{"func_name": "top", "args": [41]}')
    ran = project.nuvom("runtestworker", "run", "job.json")
    assert ran.returncode == 0, ran.stderr
    assert ran.stdout.strip() == "42"


@pytest.mark.slow
@pytest.mark.timeout(90)
def test_inspect_shows_the_retries_a_job_gets_from_its_task(project: Project) -> None:
    project.write("tasks.py", TASKS)
    produced = project.python(
        """
        from nuvom.job import Job
        from nuvom.queue import enqueue
        from tasks import boom

        print(boom.delay(1).id, enqueue(Job("boom", args=[2], max_retries=0)).id)
        """
    )
    assert produced.returncode == 0, produced.stderr
    from_task, overridden = produced.stdout.split()

    def max_retries(job_id: str) -> object:
        shown = project.nuvom("inspect", "job", job_id, "--format", "json")
        assert shown.returncode == 0, shown.stderr
        return json.loads(shown.stdout)["max_retries"]

    # Before any worker ran: read from the source, without importing it or writing a manifest.
    assert max_retries(from_task) == 2
    assert max_retries(overridden) == 0
    assert not (project.root / ".nuvom" / "manifest.json").exists()

    worked = project.nuvom("runworker", "--burst")
    assert worked.returncode == 0, worked.stderr
    assert max_retries(from_task) == 2
    table = project.nuvom("inspect", "job", from_task)
    assert "3 (retries allowed: 2)" in table.stdout
    history = json.loads(project.nuvom("history", "recent", "--format", "json").stdout)
    assert {r["id"]: r["max_retries"] for r in history} == {from_task: 2, overridden: 0}


@pytest.mark.slow
def test_tasks_list_is_the_old_spelling_of_list_tasks(project: Project) -> None:
    project.write("tasks.py", TASKS)
    old = project.nuvom("tasks", "list", "--format", "json")
    assert old.returncode == 0, old.stderr
    assert {t["name"] for t in json.loads(old.stdout)} == {"boom", "add"}
    assert old.stdout == project.nuvom("list", "tasks", "--format", "json").stdout
    helped = project.nuvom("--help")
    assert not re.search(r"^\W*tasks\s", helped.stdout, re.MULTILINE)  # one spelling advertised


@pytest.mark.slow
@pytest.mark.timeout(90)
def test_every_command_the_demo_suggests_shows_something(project: Project) -> None:
    demo = project.nuvom("demo", "--jobs", "40", "--workers", "2", timeout=60)
    assert demo.returncode == 0, demo.stderr
    suggested = [line.strip() for line in demo.stdout.splitlines() if line.startswith("  nuvom ")]
    assert len(suggested) >= 3, demo.stdout
    for command in suggested:
        result = project.nuvom(*command.split()[1:])
        assert result.returncode == 0, (command, result.stderr)
        shown = result.stdout.strip()
        assert shown, command
        assert shown != "[]", command
        assert "no jobs" not in shown, command
    retried = next(c for c in suggested if c.startswith("nuvom inspect job "))
    shown = project.nuvom(*retried.split()[1:], "--format", "json")
    record = json.loads(shown.stdout)
    assert [a["status"] for a in record["history"]] == ["RETRYING", "SUCCESS"]
    assert record["max_retries"] == 2
