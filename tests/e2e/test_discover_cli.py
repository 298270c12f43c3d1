"""``nuvom discover tasks`` and ``nuvom list tasks`` as a user runs them, in a fresh folder."""

from __future__ import annotations

import json

import pytest

from .helpers import Project, assert_one_line_error

TASKS = """
import nuvom as n
from nuvom.task import task as job

open("imported.txt", "w").write("the module ran")


@n.task(tags=["math"], retries=2, description="Three times x.")
def triple(x):
    return 3 * x


@job(tags=["mail"])
def send(to):
    \"\"\"Send a message.\"\"\"
"""


@pytest.mark.slow
def test_discover_writes_the_manifest_reports_broken_files_and_diffs(project: Project) -> None:
    project.write("pkg/__init__.py", "")
    project.write("pkg/deep/__init__.py", "")
    project.write("pkg/deep/jobs.py", TASKS)
    project.write("broken.py", "from nuvom import task\n\n@task\ndef oops(:\n    pass\n")
    project.write("node_modules/x.py", "from nuvom import task\n@task\ndef hidden(): ...\n")

    first = project.nuvom("discover", "tasks")
    assert first.returncode == 0, first.stderr
    assert "+ send" in first.stdout
    assert "+ triple" in first.stdout
    assert "pkg.deep.jobs:triple" in first.stdout
    assert "broken.py:4" in first.stderr
    assert "Traceback" not in first.stderr
    assert not (project.root / "imported.txt").exists()  # nothing was imported
    manifest = json.loads((project.root / ".nuvom" / "manifest.json").read_text())
    assert {t["name"] for t in manifest["tasks"]} == {"triple", "send"}

    project.write("pkg/deep/more.py", "from nuvom import task\n@task\ndef extra(): ...\n")
    second = project.nuvom("discover", "tasks", "--format", "json")
    assert second.returncode == 0, second.stderr
    report = json.loads(second.stdout)
    assert report["added"] == ["extra"]
    assert report["removed"] == report["changed"] == []
    assert report["parsed"] == 1  # only the new file; the broken one is remembered
    assert report["errors"] == [{"file": "broken.py", "line": 4, "message": "invalid syntax"}]

    listed = project.nuvom("list", "tasks", "--format", "json")
    assert listed.returncode == 0, listed.stderr
    by_name = {t["name"]: t for t in json.loads(listed.stdout)}
    assert set(by_name) == {"triple", "send", "extra"}
    assert by_name["triple"]["module"] == "pkg.deep.jobs"
    assert by_name["triple"]["tags"] == ["math"]
    assert by_name["triple"]["options"]["retries"] == 2
    assert by_name["send"]["description"] == "Send a message."

    tagged = project.nuvom("list", "tasks", "--tag", "mail")
    assert tagged.returncode == 0, tagged.stderr
    assert "send" in tagged.stdout
    assert "triple" not in tagged.stdout
    assert "Send a message." in tagged.stdout

    # The worker side: a job for a task known only through the manifest.
    project.write("job.json", '{"func_name": "triple", "args": [4]}')
    ran = project.nuvom("runtestworker", "run", "job.json")
    assert ran.returncode == 0, ran.stderr
    assert ran.stdout.strip() == "12"
    assert (project.root / "imported.txt").exists()  # now, and only now, imported


@pytest.mark.slow
def test_discover_with_patterns_and_an_ignore_file(project: Project) -> None:
    project.write("app/jobs.py", "from nuvom import task\n@task\ndef jobs(): ...\n")
    project.write("app/legacy.py", "from nuvom import task\n@task\ndef legacy(): ...\n")
    project.write("tools/tool.py", "from nuvom import task\n@task\ndef tool(): ...\n")
    project.write(".nuvomignore", "tools/\n")
    result = project.nuvom(
        "discover", "tasks", "--include", "app/*", "--exclude", "legacy.py", "--format", "json"
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["added"] == ["jobs"]


@pytest.mark.slow
def test_list_without_a_manifest_discovers_first(project: Project) -> None:
    project.write("tasks.py", "from nuvom import task\n@task(tags=['t'])\ndef only(): ...\n")
    result = project.nuvom("list", "tasks")
    assert result.returncode == 0, result.stderr
    assert "only" in result.stdout
    assert (project.root / ".nuvom" / "manifest.json").is_file()

    empty = project.nuvom("list", "tasks", "--tag", "nope")
    assert empty.returncode == 0, empty.stderr
    assert "no tasks tagged nope" in empty.stdout


@pytest.mark.slow
def test_bad_input_is_one_clear_line(project: Project) -> None:
    missing = project.nuvom("discover", "tasks", "no-such-folder")
    assert missing.returncode == 2
    assert_one_line_error(missing, "no-such-folder")

    bad_setting = project.nuvom("list", "tasks", NUVOM_LOG_LEVEL="LOUD")
    assert bad_setting.returncode == 2
    assert_one_line_error(bad_setting, "NUVOM_LOG_LEVEL")


@pytest.mark.slow
def test_patterns_apply_to_the_run_that_gives_them(project: Project) -> None:
    project.write("app/jobs.py", "from nuvom import task\n@task\ndef jobs(): ...\n")
    project.write("tools/tool.py", "from nuvom import task\n@task\ndef tool(): ...\n")
    narrow = project.nuvom("discover", "tasks", "--include", "app/", "--format", "json")
    assert json.loads(narrow.stdout)["added"] == ["jobs"]
    manifest = json.loads((project.root / ".nuvom" / "manifest.json").read_text())
    assert manifest["include"] == ["app/"]  # what a worker's rescan will reuse
    wide = project.nuvom("discover", "tasks", "--format", "json")
    assert json.loads(wide.stdout)["added"] == ["tool"]
