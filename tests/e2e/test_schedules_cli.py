"""``nuvom schedules ...`` and ``nuvom runscheduler`` in a project folder, on the SQLite store.

A schedule declared with ``@task(interval=...)`` and one a producer made with
``.schedule(..., cron=...)`` are listed, paused, resumed, triggered and removed through
the CLI; ``runscheduler`` fires a declared ``interval=1`` task's ticks as jobs (and runs
none of them) until SIGTERM.
"""

from __future__ import annotations

import itertools
import json
import signal
from typing import Any

import pytest

from .helpers import Project, assert_one_line_error, posix_only

try:
    from ..integration.helpers import STARTED_TEXT, STOPPING_TEXT, nuvom_command, wait_for
except ImportError:  # tests/ is not a package: pytest put tests/ itself on sys.path
    from integration.helpers import (  # type: ignore[no-redef]
        STARTED_TEXT,
        STOPPING_TEXT,
        nuvom_command,
        wait_for,
    )

TASKS = """
from nuvom import task


@task(interval=60)
def every_minute():
    return "tick"


@task
def add(x, y):
    return x + y
"""

PRODUCER = """
from tasks import add

schedule = add.schedule(2, 3, cron="*/5 * * * *")
print(schedule.id)
"""

BEAT = """
from nuvom import task


@task(interval=1)
def beat():
    return "beat"
"""

NARROW = {"COLUMNS": "80"}


def _ok(result: Any) -> str:
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    return str(result.stdout)


def _schedules(project: Project) -> dict[str, dict[str, Any]]:
    listed = json.loads(_ok(project.nuvom("schedules", "list", "--format", "json")))
    return {s["id"]: s for s in listed}


def _sync_declared(project: Project) -> str:
    """Start ``runscheduler`` (it upserts the declared schedules first), then stop it;
    returns what it logged."""
    proc = project.start([*nuvom_command(), "runscheduler"])
    proc.wait_for_output(STARTED_TEXT)
    proc.send(signal.SIGTERM)
    assert proc.wait() == 0, proc.describe()
    return proc.stderr


def _jobs(project: Project, task_name: str) -> list[dict[str, Any]]:
    recent = project.nuvom("history", "recent", "--limit", "500", "--format", "json")
    if recent.returncode != 0:
        return []
    return [j for j in json.loads(recent.stdout) if j["func_name"] == task_name]


@posix_only
@pytest.mark.slow
@pytest.mark.timeout(120)
def test_declared_and_produced_schedules_are_listed_paused_triggered_and_removed(
    project: Project,
) -> None:
    project.write("tasks.py", TASKS)
    produced = _ok(project.python(PRODUCER)).strip()
    _sync_declared(project)

    schedules = _schedules(project)
    assert len(schedules) == 2
    (declared_id,) = [i for i, s in schedules.items() if s["declared"]]
    declared, cron = schedules[declared_id], schedules[produced]
    assert (declared["func_name"], declared["interval"], declared["cron"]) == ("every_minute", 60.0, None)  # fmt: skip
    assert (cron["func_name"], cron["args"], cron["cron"], cron["timezone"]) == ("add", [2, 3], "*/5 * * * *", "UTC")  # fmt: skip
    assert cron["timetable"] == "*/5 * * * *"
    assert declared["timetable"] == "every 1m"
    assert not cron["paused"]
    assert cron["next_run_at"] > 0

    tasks = _ok(project.nuvom("list", "tasks", **NARROW))
    assert "every 1m" in tasks, tasks  # the declared timetable, read from source
    listed = {t["name"]: t for t in json.loads(_ok(project.nuvom("list", "tasks", "--format", "json")))}  # fmt: skip
    assert listed["every_minute"]["schedule"] == {"cron": None, "interval": 60, "timezone": "UTC"}
    assert listed["add"]["schedule"] is None

    table = _ok(project.nuvom("schedules", "list", **NARROW))
    assert max(len(line) for line in table.splitlines()) <= 80
    for whole in (produced, declared_id, "every_minute", "*/5 * * * *", "every 1m"):
        assert whole in table, f"{whole!r} cut short at 80 columns:\n{table}"

    paused = _ok(project.nuvom("schedules", "pause", produced))
    assert f"schedule {produced} paused" in paused
    assert _schedules(project)[produced]["paused"] is True
    assert "paused" in _ok(project.nuvom("schedules", "list", **NARROW))
    assert f"schedule {produced} resumed" in _ok(project.nuvom("schedules", "resume", produced))
    assert _schedules(project)[produced]["paused"] is False

    triggered = _ok(project.nuvom("schedules", "trigger", produced)).split()
    job_id = triggered[1]
    assert triggered[0] == "job", triggered
    assert len(job_id) == 32, triggered
    job = json.loads(_ok(project.nuvom("inspect", "job", job_id, "--format", "json")))
    assert (job["func_name"], job["args"], job["status"]) == ("add", [2, 3], "PENDING")

    assert "removed" in _ok(project.nuvom("schedules", "remove", produced))
    assert set(_schedules(project)) == {declared_id}
    removed_declared = _ok(project.nuvom("schedules", "remove", declared_id))
    assert "declared with @task" in removed_declared, "it comes back when a worker starts"
    assert _schedules(project) == {}

    for command in ("pause", "resume", "remove", "trigger"):
        unknown = project.nuvom("schedules", command, produced)
        assert unknown.returncode == 1, (command, unknown.stderr)
        assert_one_line_error(unknown, f"no schedule with id {produced!r}")

    burst = project.nuvom("runworker", "--burst")  # the triggered run is an ordinary job
    assert burst.returncode == 0, burst.stderr
    done = json.loads(_ok(project.nuvom("inspect", "job", job_id, "--format", "json")))
    assert (done["status"], done["result"]) == ("SUCCESS", 5)


@posix_only
@pytest.mark.slow
@pytest.mark.timeout(120)
def test_runscheduler_fires_a_declared_interval_and_exits_0_on_sigterm(project: Project) -> None:
    project.write("tasks.py", BEAT)
    scheduler = project.start([*nuvom_command(), "runscheduler"])
    scheduler.wait_for_output(STARTED_TEXT)

    fired = wait_for(lambda: len(_jobs(project, "beat")) >= 3 and _jobs(project, "beat"),
                     what="three ticks of beat as jobs")  # fmt: skip
    assert all(job["status"] == "PENDING" for job in fired), "runscheduler runs no jobs"
    assert len({job["id"] for job in fired}) == len(fired)
    (schedule,) = _schedules(project).values()
    assert schedule["declared"]
    assert schedule["interval"] == 1.0
    assert schedule["last_job_id"] in {job["id"] for job in _jobs(project, "beat")}

    scheduler.send(signal.SIGTERM)
    assert scheduler.wait() == 0, scheduler.describe()
    assert STOPPING_TEXT in scheduler.stderr
    assert "scheduler stopped" in scheduler.stderr
    assert "Traceback" not in scheduler.stderr
    stopped_at = len(_jobs(project, "beat"))
    jobs = _jobs(project, "beat")
    assert {job["origin"]["schedule"] for job in jobs} == {schedule["id"]}
    ticks = sorted(job["origin"]["tick"] for job in jobs)  # each job names its tick
    gaps = [later - earlier for earlier, later in itertools.pairwise(ticks)]
    assert min(gaps) == pytest.approx(1.0), "one job per tick, each on the timetable"
    assert all(gap == pytest.approx(round(gap)) for gap in gaps), "ticks are anchor + n seconds"

    burst = project.nuvom("runworker", "--burst")
    assert burst.returncode == 0, burst.stderr
    ran = _jobs(project, "beat")
    assert len(ran) >= stopped_at
    assert {job["status"] for job in ran} == {"SUCCESS"}


TWO_DECLARED = """
from nuvom import task


@task(interval=60)
def every_minute(): ...


@task(cron="0 3 * * *", timezone="America/New_York")
def nightly(): ...
"""


@posix_only
@pytest.mark.slow
@pytest.mark.timeout(120)
def test_a_declaration_taken_out_of_the_source_is_retired(project: Project) -> None:
    project.write("tasks.py", TWO_DECLARED)
    _sync_declared(project)
    before = {s["func_name"]: s for s in _schedules(project).values()}
    assert set(before) == {"every_minute", "nightly"}
    assert before["nightly"]["timezone"] == "America/New_York"
    _ok(project.nuvom("schedules", "pause", before["nightly"]["id"]))

    _sync_declared(project)  # unchanged source: nothing moves, the pause stays
    assert {s["func_name"]: s for s in _schedules(project).values()} == {
        **before, "nightly": {**before["nightly"], "paused": True}
    }  # fmt: skip

    project.write("tasks.py", TWO_DECLARED.replace("@task(interval=60)", "@task"))
    logged = _sync_declared(project)
    assert [s["func_name"] for s in _schedules(project).values()] == ["nightly"]
    assert "retired" in logged

    (project.root / "tasks.py").unlink()  # no tasks at all: the wrong folder, more likely
    logged = _sync_declared(project)
    assert [s["func_name"] for s in _schedules(project).values()] == ["nightly"]
    assert "no tasks found" in logged
