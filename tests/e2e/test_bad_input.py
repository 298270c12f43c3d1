"""Bad settings and unusable stores through the CLI: one clear line and an exit code, no traceback."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from .helpers import Project, assert_one_line_error

GARBAGE = "this is a text file, not a database\n" * 40


def _listing(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in folder.iterdir()}


@pytest.mark.slow
@pytest.mark.parametrize("command", [["status", "some-job"], ["runworker", "--burst"]])
def test_a_bad_setting_value_names_the_variable(project: Project, command: list[str]) -> None:
    result = project.nuvom(*command, NUVOM_LEASE_SECS="abc")

    assert result.returncode == 2
    assert_one_line_error(result, "NUVOM_LEASE_SECS", "'abc'")


@pytest.mark.slow
def test_an_unknown_setting_is_refused(project: Project) -> None:
    result = project.nuvom("status", "some-job", NUVOM_FOO="1")

    assert result.returncode == 2
    assert_one_line_error(result, "NUVOM_FOO", "unknown setting")


@pytest.mark.slow
def test_a_misspelt_setting_gets_a_suggestion(project: Project) -> None:
    result = project.nuvom("status", "some-job", NUVOM_LEASE_SEC="5")

    assert result.returncode == 2
    assert_one_line_error(result, "NUVOM_LEASE_SEC", "did you mean NUVOM_LEASE_SECS?")


@pytest.mark.slow
def test_a_misspelt_setting_in_dotenv_gets_a_suggestion(project: Project) -> None:
    project.write(".env", "NUVOM_LOG_LEVL=DEBUG\nOTHER_APP_KEY=kept\n")

    result = project.nuvom("status", "some-job")

    assert result.returncode == 2
    assert_one_line_error(result, "NUVOM_LOG_LEVL", ".env", "did you mean NUVOM_LOG_LEVEL?")


@pytest.mark.slow
@pytest.mark.parametrize("command", [["status", "some-job"], ["runworker", "--burst"]])
def test_a_garbage_database_file_is_reported_and_left_alone(
    project: Project, command: list[str]
) -> None:
    project.db_path.parent.mkdir()
    project.db_path.write_text(GARBAGE)
    before = _listing(project.db_path.parent)

    result = project.nuvom(*command)

    assert result.returncode == 1
    assert_one_line_error(result, "not a SQLite database", str(Path(".nuvom", "nuvom.db")))
    assert _listing(project.db_path.parent) == before  # same bytes, no -wal/-shm beside it


@pytest.mark.slow
def test_an_unwritable_store_location_is_a_clear_error(project: Project) -> None:
    folder = project.db_path.parent
    if os.name == "posix" and os.geteuid() != 0:
        folder.mkdir()
        folder.chmod(stat.S_IRUSR | stat.S_IXUSR | stat.S_IRGRP | stat.S_IXGRP)  # 0o550
        needles = ("cannot write to", "nuvom.db")
    else:
        # root writes through any mode bits (and Windows ignores them): make the
        # store's folder a regular file instead, so it cannot be created at all.
        folder.write_text("in the way\n")
        needles = ("cannot create", ".nuvom")
    try:
        # Not `status`: commands that only look create nothing (test_first_hour_cli.py).
        result = project.nuvom("cancel", "some-job")
        worker = project.nuvom("runworker", "--burst")
    finally:
        if folder.is_dir():
            folder.chmod(stat.S_IRWXU)

    assert result.returncode == 1
    assert_one_line_error(result, *needles)
    assert worker.returncode == 1
    assert_one_line_error(worker, *needles)
