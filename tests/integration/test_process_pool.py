"""The process pool in this process's worker: hard timeouts, dead children, recycling, shutdown.

Tasks live in a module written to the test's folder, so spawned children can
import it. Pids tell children apart: each task that matters returns or writes one.
"""

from __future__ import annotations

import multiprocessing
import os
import sys
import textwrap
import threading
import time
import uuid
from pathlib import Path
from types import ModuleType

import pytest

import nuvom
from nuvom.job import Job, JobStatus
from nuvom.queue import enqueue
from nuvom.registry import TaskRegistry
from nuvom.sdk import get_job
from nuvom.worker import Worker

from .helpers import wait_for

pytestmark = [pytest.mark.slow, pytest.mark.timeout(90)]

SPIN_TIMEOUT_SECS = 1.0
KILL_MARGIN_SECS = 1.0  # the bound: a hard timeout ends the job within timeout + 1 s

TASKS = f"""
import os
import time
from pathlib import Path

from nuvom import task


@task
def pid():
    return os.getpid()


@task(timeout_secs={SPIN_TIMEOUT_SECS})
def spin(folder):
    Path(folder, "spin.pid").write_text(str(os.getpid()))
    while True:
        pass


@task
def die(code):
    os._exit(code)


@task
def hold(folder):
    Path(folder, f"hold-{{os.getpid()}}.pid").write_text(str(os.getpid()))
    deadline = time.monotonic() + 60
    while not Path(folder, "go").exists() and time.monotonic() < deadline:
        time.sleep(0.01)
    return os.getpid()
"""


def alive(pid: int) -> bool:
    """True while ``pid`` runs (a zombie counts as gone)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    stat = Path(f"/proc/{pid}/stat")
    if stat.exists():
        try:
            return stat.read_text().rsplit(")", 1)[1].split()[0] != "Z"
        except OSError:
            return False
    return True


@pytest.fixture
def tasks(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    """A uniquely named task module in the test folder, registered in a fresh registry."""
    nuvom.configure(queue_backend="memory", result_backend="memory", registry=TaskRegistry())
    name = f"pool_tasks_{uuid.uuid4().hex[:8]}"
    (tmp_path / f"{name}.py").write_text(textwrap.dedent(TASKS), encoding="utf-8")
    monkeypatch.syspath_prepend(str(tmp_path))
    module = __import__(name)
    yield module
    sys.modules.pop(name, None)


def test_a_hard_timeout_kills_the_child_and_the_next_job_gets_a_fresh_one(tasks, tmp_path):
    spin = tasks.spin.delay(str(tmp_path))
    after = tasks.pid.delay()

    Worker(workers=1, pool="process").run(burst=True)

    record = get_job(spin.id)
    assert record.status is JobStatus.FAILED
    assert record.error_type == "JobTimeout"
    assert record.finished_at - record.started_at < SPIN_TIMEOUT_SECS + KILL_MARGIN_SECS
    pid_file = tmp_path / "spin.pid"  # written by the job as it began spinning
    began = pid_file.stat().st_mtime
    assert record.finished_at - began < SPIN_TIMEOUT_SECS + KILL_MARGIN_SECS
    spin_pid = int(pid_file.read_text())
    assert not alive(spin_pid)  # terminated, not left spinning
    next_pid = after.get(timeout=5)
    assert next_pid != spin_pid
    assert next_pid != os.getpid()


def test_a_child_that_exits_fails_its_job_and_is_replaced(tasks):
    before = tasks.pid.delay()
    dying = tasks.die.delay(3)
    after = tasks.pid.delay()

    worker = Worker(workers=1, pool="process")
    worker.run(burst=True)

    record = get_job(dying.id)
    assert record.status is JobStatus.FAILED
    assert record.error_type == "ChildProcessDied"
    assert "exited with code 3" in (record.error_message or "")
    assert before.get(timeout=5) != after.get(timeout=5)
    assert (worker.stats.succeeded, worker.stats.failed) == (2, 1)


def test_a_dead_child_retries_its_job_when_retries_remain(tasks):
    retried = enqueue(Job("die", args=[5], max_retries=1, retry_delay_secs=0))
    Worker(workers=1, pool="process").run(burst=True)

    assert [a.status for a in get_job(retried.id).history] == ["RETRYING", "FAILED"]


def test_children_are_recycled_after_max_tasks(tasks):
    jobs = tasks.pid.map([()] * 5)

    Worker(workers=1, pool="process", max_tasks_per_child=2).run(burst=True)

    pids = [job.get(timeout=5) for job in jobs]
    assert pids[0] == pids[1] != pids[2] == pids[3] != pids[4]


def test_children_are_recycled_above_max_memory(tasks):
    if sys.platform == "win32":
        pytest.fail("memory is not measured on Windows; this test must not run there")
    jobs = tasks.pid.map([()] * 3)

    Worker(workers=1, pool="process", max_memory_per_child_mb=1).run(burst=True)

    assert len({job.get(timeout=5) for job in jobs}) == 3  # every child is over 1 MB


def test_shutdown_stops_every_child(tasks, tmp_path):
    jobs = [tasks.hold.delay(str(tmp_path)) for _ in range(2)]
    worker = Worker(workers=2, pool="process", grace_secs=0.2)
    runner = threading.Thread(target=worker.run, daemon=True)
    runner.start()
    wait_for(lambda: len(list(tmp_path.glob("hold-*.pid"))) == 2, what="both jobs to start")
    children = [p.pid for p in multiprocessing.active_children()]
    assert len(children) == 2

    started = time.monotonic()
    worker.stop()
    runner.join(30)

    assert not runner.is_alive()
    assert time.monotonic() - started < 10
    assert worker.stats.released == 2  # they outlived the grace period
    assert nuvom.runtime.current().queue.qsize() == len(jobs)  # back in the queue
    assert multiprocessing.active_children() == []
    assert [pid for pid in children if alive(pid)] == []
