"""Plugins across real processes: a result backend from ``.nuvom_plugins.toml`` and one from
an installed distribution's entry point, each used by a producer and by ``nuvom runworker``;
a broken backend plugin stops the worker with one line; scaffold → plugin test round trip.
"""

from __future__ import annotations

import json
import sys

import pytest

from .helpers import TASKS, Project, assert_one_line_error
from .plugin_helpers import BROKEN_PLUGIN, JSON_RESULTS_PLUGIN, install_distribution

PRODUCE = """
from tasks import add
print(add.delay(19, 23).id)
"""
READ_RESULT = """
import sys
from nuvom.result_store import wait_for_result
print(wait_for_result(sys.argv[1], timeout=10))
"""


def _produce_run_read(project: Project, **env: str) -> tuple[str, str]:
    """A producer enqueues add(19, 23), a burst worker runs it, a third process reads 42."""
    produced = project.python(PRODUCE, **env)
    assert produced.returncode == 0, produced.stderr
    job_id = produced.stdout.strip()
    worker = project.start_worker("--burst", wait=False, **env)
    assert worker.wait() == 0, worker.describe()
    read = project.run([sys.executable, "-c", READ_RESULT, job_id], **env)
    assert read.returncode == 0, read.stderr
    assert read.stdout.strip() == "42"
    stored = json.loads((project.root / ".jsonresults" / f"{job_id}.json").read_text())
    assert stored == {"result": 42}, "the plugin's backend, not SQLite, kept the result"
    return job_id, worker.stderr


@pytest.mark.slow
@pytest.mark.timeout(90)
def test_a_toml_plugin_backend_serves_producer_and_worker(project: Project) -> None:
    project.write("tasks.py", TASKS)
    project.write("json_results.py", JSON_RESULTS_PLUGIN)
    project.write(
        ".nuvom_plugins.toml", '[plugins]\nresult_backend = ["json_results:JsonFilePlugin"]\n'
    )

    _, stderr = _produce_run_read(project, NUVOM_RESULT_BACKEND="jsonfiles")

    assert "plugin jsonfiles loaded from .nuvom_plugins.toml: plugins.result_backend" in stderr
    assert "results jsonfiles" in stderr  # the worker's start line names the backend


@pytest.mark.slow
@pytest.mark.timeout(90)
def test_an_entry_point_plugin_backend_serves_producer_and_worker(project: Project) -> None:
    project.write("tasks.py", TASKS)
    site = project.root / "site"
    install_distribution(site, "ep_json_results", JSON_RESULTS_PLUGIN, version="0.3.1")
    env = {"NUVOM_RESULT_BACKEND": "jsonfiles", "PYTHONPATH": str(site)}

    _, stderr = _produce_run_read(project, **env)

    assert "plugin jsonfiles 0.3.1 loaded from entry point 'jsonfiles' of nuvom-jsonfiles" in stderr
    status = project.nuvom("plugin", "status", "--format", "json", **env)
    assert status.returncode == 0, status.stderr
    assert status.stderr == "", "the report is the table or JSON, not log lines"
    (shown,) = json.loads(status.stdout)["plugins"]
    assert shown["source"] == "entry point 'jsonfiles' of nuvom-jsonfiles 0.3.1"
    assert (shown["version"], shown["state"], shown["provides"]) == (
        "0.3.1",
        "loaded",
        ["result_backend"],
    )

    off = project.nuvom("plugin", "status", "--format", "json", NUVOM_PLUGINS_AUTOLOAD="0", **env)
    assert json.loads(off.stdout)["plugins"] == []


@pytest.mark.slow
@pytest.mark.timeout(90)
def test_a_broken_backend_plugin_stops_the_worker_but_not_the_cli(project: Project) -> None:
    project.write("tasks.py", TASKS)
    project.write("broken_results.py", BROKEN_PLUGIN)
    project.write(".nuvom_plugins.toml", '[plugins]\nresult_backend = ["broken_results:Plugin"]\n')

    refused = project.nuvom("runworker", "--burst", NUVOM_RESULT_BACKEND="jsonfiles")
    assert refused.returncode == 2, refused.stderr
    assert_one_line_error(
        refused,
        "NUVOM_RESULT_BACKEND",
        "broken_results:Plugin",
        "needs a driver that is not installed",
    )

    # The same broken plugin does not stop a worker on a built-in backend.
    fine = project.nuvom("runworker", "--burst")
    assert fine.returncode == 0, fine.stderr
    assert "broken_results:Plugin" in fine.stderr

    status = project.nuvom("plugin", "status")
    assert status.returncode == 0, status.stderr
    assert "failed" in status.stdout
    assert "needs a driver that is not installed" in status.stdout


@pytest.mark.slow
@pytest.mark.timeout(120)
@pytest.mark.parametrize("kind", ["result_backend", "queue_backend", "monitoring"])
def test_scaffold_writes_a_plugin_that_plugin_test_and_its_own_test_pass(
    project: Project, kind: str
) -> None:
    made = project.nuvom("plugin", "scaffold", "acme-store", "--kind", kind)
    assert made.returncode == 0, made.stderr
    assert (project.root / "acme_store.py").exists()

    tested = project.nuvom("plugin", "test", "acme_store:AcmeStorePlugin")
    assert tested.returncode == 0, tested.stdout + tested.stderr
    assert "every check passed" in tested.stdout
    if kind != "monitoring":
        assert "concurrent_claimers" in tested.stdout or "outcomes_are_stored" in tested.stdout

    own = project.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "test_acme_store.py"]
    )
    assert own.returncode == 0, own.stdout + own.stderr
    assert "1 passed" in own.stdout

    again = project.nuvom("plugin", "scaffold", "acme-store", "--kind", kind)
    assert again.returncode == 1
    assert_one_line_error(again, "already exists")


@pytest.mark.slow
@pytest.mark.timeout(60)
def test_plugin_test_exits_1_and_says_why_for_a_broken_plugin(project: Project) -> None:
    project.write("broken_results.py", BROKEN_PLUGIN)

    result = project.nuvom("plugin", "test", "broken_results:Plugin")

    assert result.returncode == 1
    assert "needs a driver that is not installed" in result.stdout
    assert "Traceback" not in result.stdout + result.stderr
