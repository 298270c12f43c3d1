"""What the CLI prints: JSON of any stored value, tables that fit 80 columns, help, literal text.

Every command runs as a user's would, in a subprocess on a real store; the
tables are read through a pipe (stdout is not a terminal) with ``COLUMNS=80``.
"""

from __future__ import annotations

import json
import re
import subprocess

import pytest

from .helpers import Project, assert_one_line_error

NARROW = {"COLUMNS": "80"}
NARROW_WIDTH = 80

TASKS = """
from nuvom import task


@task
def takes(value):
    return value


@task(retries=0)
def breaks(message):
    raise ValueError(message)


@task(retries=1, retry_delay_secs=3600)
def flaps(message):
    raise RuntimeError(message)


@task(tags=["mail", "slow"], retries=3, timeout_secs=20)
def send_the_quarterly_report_to_every_subscriber_on_the_list(subscriber_id):
    \"\"\"Send the quarterly report, rendered and signed, to one subscriber of the list.\"\"\"
"""

# Long enough that any column narrower than the whole message has to cut it.
LONG_ERROR = (
    "the upstream service answered 503 three times in a row while we were uploading "
    "the nightly export, so the batch was abandoned and will need a manual retry"
)

PRODUCER = f"""
import datetime as dt
import json

from tasks import breaks, flaps, takes

print(json.dumps({{
    "tuple_key": takes.delay({{(1, 2): 3}}).id,
    "mixed": takes.delay({{
        "raw": b"\\x00\\x01\\xff",
        "numbers": {{3, 1, 2}},
        "when": dt.datetime(2024, 1, 2, 3, 4, 5),
        "pair": (1, "a"),
        "odd": {{1, "a"}},
    }}).id,
    "plain": takes.delay(42).id,
    "failed": breaks.delay({LONG_ERROR!r}).id,
    "retrying": flaps.delay("temporary outage, [bold]not[/] markup").id,
    "markup": breaks.delay("[bold]loud[/] and [/] stray").id,
}}))
"""


def _produce_and_run(project: Project) -> dict[str, str]:
    project.write("tasks.py", TASKS)
    produced = project.python(PRODUCER)
    assert produced.returncode == 0, produced.stderr
    ids: dict[str, str] = json.loads(produced.stdout)
    ran = project.nuvom("runworker", "--burst")
    assert ran.returncode == 0, ran.stderr
    return ids


def _ok(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr, result.stderr
    return result.stdout


def _assert_fits(text: str, width: int = NARROW_WIDTH) -> None:
    too_wide = [line for line in text.splitlines() if len(line) > width]
    assert not too_wide, "\n".join([f"lines over {width} columns:", *too_wide, "---", text])


# -- 1. JSON renders whatever .delay() accepted ----------------------------------------------
@pytest.mark.slow
@pytest.mark.timeout(90)
def test_json_renders_every_stored_value(project: Project) -> None:
    ids = _produce_and_run(project)

    for _ in range(2):  # the second listing used to fail too, while the odd job was listed
        listed = json.loads(_ok(project.nuvom("history", "recent", "--format", "json")))
        by_id = {record["id"]: record for record in listed}
        assert set(ids.values()) <= set(by_id)

    tuple_key = by_id[ids["tuple_key"]]
    assert tuple_key["args"] == [[[[1, 2], 3]]]  # a dict with a non-str key: [key, value] pairs
    assert tuple_key["result"] == [[[1, 2], 3]]
    assert by_id[ids["mixed"]]["result"] == {
        "raw": {"$bytes": "AAH/"},
        "numbers": [1, 2, 3],
        "when": "2024-01-02T03:04:05",
        "pair": [1, "a"],
        "odd": ["a", 1],  # not sortable: ordered by repr, the same every time
    }
    assert by_id[ids["plain"]]["result"] == 42

    inspected = json.loads(_ok(project.nuvom("inspect", "job", ids["tuple_key"], "-f", "json")))
    assert inspected["result"] == [[[1, 2], 3]]
    status = json.loads(_ok(project.nuvom("status", ids["mixed"], "--format", "json")))
    assert status["result"]["raw"] == {"$bytes": "AAH/"}


def test_a_record_that_cannot_be_shown_does_not_hide_the_others(
    capsys: pytest.CaptureFixture[str],
) -> None:
    from nuvom.cli.output import print_json

    looped: list[object] = []
    looped.append(looped)  # no JSON form at all
    print_json([{"id": "a" * 32, "result": looped}, {"id": "b" * 32, "result": {(1,): b"x"}}])

    shown = json.loads(capsys.readouterr().out)
    assert shown[0]["id"] == "a" * 32
    assert "cannot show this record" in shown[0]["render_error"]
    assert shown[1] == {"id": "b" * 32, "result": [[[1], {"$bytes": "eA=="}]]}


# -- 2. tables read at 80 columns through a pipe ---------------------------------------------
@pytest.mark.slow
@pytest.mark.timeout(120)
def test_tables_fit_80_columns_through_a_pipe(project: Project) -> None:
    ids = _produce_and_run(project)

    history = _ok(project.nuvom("history", "recent", **NARROW))
    _assert_fits(history)
    for job_id in ids.values():
        assert job_id in history  # whole, on one line
    for status in ("SUCCESS", "FAILED", "RETRYING"):
        assert re.search(rf"\b{status}\b", history), history
    assert "…" in history  # the long error is cut, not wrapped one word per line

    for key, status in (("failed", "FAILED"), ("retrying", "RETRYING"), ("mixed", "SUCCESS")):
        inspected = _ok(project.nuvom("inspect", "job", ids[key], **NARROW))
        _assert_fits(inspected)
        assert ids[key] in inspected
        assert re.search(rf"\b{status}\b", inspected), inspected
        shown = _ok(project.nuvom("status", ids[key], **NARROW))
        _assert_fits(shown)
        assert status in shown or key == "mixed"

    stats = _ok(project.nuvom("queue", "stats", **NARROW))
    _assert_fits(stats)
    assert re.search(r"\bdefault\b", stats)
    assert "quarantined" in stats

    tasks = _ok(project.nuvom("list", "tasks", **NARROW))
    _assert_fits(tasks)
    assert "send_the_quarterly_report_to_every_subscriber_on_the_list" in tasks

    worker = project.start_worker("--hostname", "build-agent-07.eu-west.example.internal")
    listed = json.loads(_ok(project.nuvom("workers", "--format", "json")))
    worker_ids = [w["id"] for w in listed if w["status"] == "live"]
    assert worker_ids, listed
    workers = _ok(project.nuvom("workers", **NARROW))
    _assert_fits(workers)
    for worker_id in worker_ids:
        assert worker_id in workers
    assert re.search(r"\blive\b", workers)
    worker.kill()

    for command in (["config"], ["plugin", "status"]):
        _assert_fits(_ok(project.nuvom(*command, **NARROW)))


# -- 3. help reads like a well-kept CLI's ----------------------------------------------------
RUNWORKER_TEXT = [
    *("--workers", "-w", "--batch-size", "--queues", "-Q", "--burst", "--pool"),
    *("--max-tasks-per-child", "--max-memory-per-child", "--grace-secs", "--hostname", "--dev"),
    *("NUVOM_MAX_WORKERS", "NUVOM_BATCH_SIZE", "NUVOM_WORKER_POOL"),  # the defaults, not eaten
]
HELP_SCREENS = {
    "nuvom": ([], ["runworker", "status", "history", "inspect", "queue", "workers", "plugin"]),
    "runworker": (["runworker"], RUNWORKER_TEXT),
    "status": (["status"], ["JOB_ID", "--format"]),
    "history recent": (["history", "recent"], ["--limit", "--status", "--format"]),
    "list tasks": (["list", "tasks"], ["--tag", "--refresh"]),
    "discover tasks": (["discover", "tasks"], ["PATH", "the current one", "--include"]),
    "plugin scaffold": (["plugin", "scaffold"], ["NAME", "--kind", "--dir", "--force"]),
}


@pytest.mark.slow
@pytest.mark.parametrize("screen", sorted(HELP_SCREENS))
def test_help_reads_well_at_80_columns(project: Project, screen: str) -> None:
    command, expected = HELP_SCREENS[screen]

    shown = _ok(project.nuvom(*command, "--help", **NARROW))

    _assert_fits(shown)
    assert "<bool>" not in shown
    assert "<list[" not in shown
    assert "<int range>" not in shown
    assert "<float range>" not in shown
    assert not re.search(r"<(str|int|float|path)>", shown), shown
    assert not re.search(r"\{\w+\}", shown), shown  # {job_id}: an unfilled placeholder
    for text in expected:
        assert text in shown, f"{text!r} missing from\n{shown}"


# -- 4. literal text stays literal -----------------------------------------------------------
@pytest.mark.slow
def test_scaffold_names_the_plugins_table(project: Project) -> None:
    shown = _ok(project.nuvom("plugin", "scaffold", "my_store", "--dir", "plugins"))

    assert '= ["my_store:MyStorePlugin"] under [plugins] in .nuvom_plugins.toml' in shown


@pytest.mark.slow
@pytest.mark.timeout(90)
def test_markup_in_data_and_messages_prints_as_written(project: Project) -> None:
    ids = _produce_and_run(project)
    written = "[bold]loud[/] and [/] stray"

    assert written in _ok(project.nuvom("history", "recent"))
    inspected = _ok(project.nuvom("inspect", "job", ids["markup"]))
    assert f"ValueError: {written}" in inspected
    assert f"breaks('{written}')" in inspected
    assert written in _ok(project.nuvom("status", ids["markup"]))
    assert "temporary outage, [bold]not[/] markup" in _ok(
        project.nuvom("inspect", "job", ids["retrying"])
    )

    missing = project.nuvom("status", "[bold]no-such-job")
    assert missing.returncode == 1
    assert_one_line_error(missing, "'[bold]no-such-job'")
    spec = "[red]nowhere:Plugin"
    tested = project.nuvom("plugin", "test", spec)
    assert tested.returncode == 1
    assert f"{spec}: 1 check(s) failed" in tested.stdout
