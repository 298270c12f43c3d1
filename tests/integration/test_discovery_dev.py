"""``nuvom runworker --dev``: a real worker process picks up new and edited task files in place."""

from __future__ import annotations

from pathlib import Path

import pytest

from .helpers import Project, wait_for

TASKS_V1 = """
import time
from pathlib import Path

from nuvom import task

HOLD_CAP_SECS = 60  # a held task never outlives a broken test by much


@task
def version():
    return 1


@task
def hold(folder):
    (Path(folder) / "holding").write_text("yes")
    deadline = time.monotonic() + HOLD_CAP_SECS
    while not (Path(folder) / "go").exists():
        if time.monotonic() > deadline:
            raise TimeoutError("the test never created the go marker")
        time.sleep(0.01)
    return "held"
"""


@pytest.mark.slow
@pytest.mark.timeout(90)
def test_dev_worker_reloads_edited_tasks_and_finds_new_files(project: Project) -> None:
    from nuvom.job import Job
    from nuvom.queue import enqueue

    project.write("tasks.py", TASKS_V1)
    worker = project.start_worker("--dev", "--workers", "2")
    worker.wait_for_output("dev reload: watching")
    project.configure()

    assert enqueue(Job("version")).get(timeout=30) == 1
    held = enqueue(Job("hold", args=[str(project.root)]))
    wait_for(lambda: (project.root / "holding").exists(), what="the held job to start")

    project.write("tasks.py", TASKS_V1.replace("return 1", "return 2"))
    worker.wait_for_output("reloaded tasks")
    assert enqueue(Job("version")).get(timeout=30) == 2

    project.write("fresh.py", "from nuvom import task\n\n@task\ndef fresh():\n    return 'new'\n")
    worker.wait_for_output("added fresh")
    assert enqueue(Job("fresh")).get(timeout=30) == "new"

    # The job that was running across both reloads still finishes.
    Path(project.root / "go").write_text("go")
    assert held.get(timeout=30) == "held"
    assert "Traceback" not in worker.stderr
