"""Real ``nuvom runworker`` processes: ``nuvom workers`` sees them live, then lost; no orphans.

Short leases (``NUVOM_LEASE_SECS``) make a heartbeat stale within a second or two.
"""

from __future__ import annotations

import json
import signal

import pytest

from nuvom.job import Job
from nuvom.queue import enqueue

from .helpers import TASKS, Proc, Project, posix_only, runs, wait_for
from .test_process_pool import alive

pytestmark = [pytest.mark.slow, posix_only, pytest.mark.timeout(90)]

SHORT_LEASE = {"NUVOM_LEASE_SECS": "1"}


def listed(project: Project) -> dict[int, str]:
    """pid -> live/lost, from ``nuvom workers --format json``."""
    result = project.nuvom("workers", "--format", "json")
    assert result.returncode == 0, result.stderr
    return {w["pid"]: w["status"] for w in json.loads(result.stdout)}


def test_workers_lists_two_then_shows_a_killed_one_as_lost(project: Project) -> None:
    project.write("tasks.py", TASKS)
    first = project.start_worker("--pool", "process", "--workers", "1", **SHORT_LEASE)
    second = project.start_worker("--pool", "async", **SHORT_LEASE)
    wait_for(lambda: len(listed(project)) == 2, what="both workers to register")
    assert listed(project) == {first.pid: "live", second.pid: "live"}

    second.send(signal.SIGKILL)
    second.wait()

    wait_for(lambda: listed(project).get(second.pid) == "lost", what="the heartbeat to go stale")
    assert listed(project) == {first.pid: "live", second.pid: "lost"}
    table = project.nuvom("workers")
    assert table.returncode == 0
    assert "lost" in table.stdout
    assert "live" in table.stdout

    first.send(signal.SIGTERM)
    assert first.wait() == 0
    assert first.pid not in listed(project)  # a clean stop removes its record


def _child_pids(project: Project) -> list[int]:
    path = project.root / "hold.runs"
    return [int(line) for line in path.read_text().split()] if path.exists() else []


def _hold_two(project: Project) -> tuple[list[Job], Proc]:
    project.write("tasks.py", TASKS)
    project.configure()
    jobs = [enqueue(Job("hold", args=[str(project.root)])) for _ in range(2)]
    worker = project.start_worker("--pool", "process", "--workers", "2")
    wait_for(lambda: runs(project.root, "hold") == 2, what="both jobs to start in children")
    return jobs, worker


def test_sigterm_lets_children_finish_and_leaves_none_behind(project: Project) -> None:
    jobs, worker = _hold_two(project)
    pids = _child_pids(project)
    assert len(set(pids)) == 2
    assert worker.pid not in pids

    worker.send(signal.SIGTERM)
    worker.wait_for_output("stopping:")
    (project.root / "go").touch()

    assert worker.wait() == 0
    assert [job.get(timeout=5) for job in jobs] == ["done", "done"]
    assert [pid for pid in pids if alive(pid)] == []


def test_children_of_a_killed_worker_exit_too(project: Project) -> None:
    _, worker = _hold_two(project)
    pids = _child_pids(project)

    worker.send(signal.SIGKILL)
    worker.wait()

    # Their jobs would hold them for a minute; they notice the parent is gone instead.
    wait_for(lambda: not any(alive(pid) for pid in pids), timeout=10, what="orphans to exit")
