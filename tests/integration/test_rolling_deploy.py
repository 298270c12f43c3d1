"""A rolling deploy with real processes, on SQLite, PostgreSQL and Redis: v1 workers run
while v1 jobs wait; v2 code (a new parameter, version bumped) is deployed beside it, v2
jobs are enqueued and one v2 worker starts while the v1 workers still run. Every v1 job
runs on a v1 worker, every v2 job on the v2 worker: no failure, no attempt wasted."""

from __future__ import annotations

import json
import signal
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from .helpers import Project, wait_for
from .servers import engine_env

V1 = """
import os
import time

from nuvom import task


@task
def charge(order_id, amount_cents):
    time.sleep(0.05)
    fd = os.open(os.environ["RAN_LOG"], os.O_WRONLY | os.O_APPEND | os.O_CREAT)
    os.write(fd, f"{order_id} v1\\n".encode())
    os.close(fd)
"""
V2 = (
    V1.replace("@task\n", "@task(version=2)\n")
    .replace("amount_cents):", "amount_cents, currency='EUR'):")
    .replace("v1\\n", "v2\\n")
)
PRODUCER = """
import sys

from tasks import charge

first, count = int(sys.argv[1]), int(sys.argv[2])
charge.map([(i, 100) for i in range(first, first + count)])
"""
JOBS = 20


@pytest.fixture(params=["sqlite", "postgres", "redis"])
def engine(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[dict[str, str]]:
    with engine_env(request.param) as env:
        if request.param == "sqlite":  # both code folders on one store
            env = dict(env, NUVOM_SQLITE_DB_PATH=str(tmp_path / "shared.db"))
        yield env


def _runs(log: Path) -> dict[int, str]:
    ran: dict[int, str] = {}
    for line in log.read_text().splitlines() if log.exists() else []:
        order, version = line.split()
        assert int(order) not in ran, f"order {order} ran twice"
        ran[int(order)] = version
    return ran


@pytest.mark.slow
@pytest.mark.timeout(180)
def test_old_and_new_workers_each_run_their_own_version(
    project: Project, engine: dict[str, str]
) -> None:
    log = project.root / "ran.log"
    env = dict(project.env, **engine, RAN_LOG=str(log))
    v1, v2 = project.root / "v1", project.root / "v2"
    for folder, source in ((v1, V1), (v2, V2)):
        folder.mkdir()
        (folder / "tasks.py").write_text(source)
        (folder / "produce.py").write_text(PRODUCER)
    produce = [sys.executable, "produce.py"]
    assert project.run([*produce, "0", str(JOBS)], env=env, cwd=v1).returncode == 0
    old_workers = [project.start_worker(env=env, cwd=v1) for _ in range(2)]
    wait_for(lambda: len(_runs(log)) >= 2, timeout=30, what="the v1 workers to start")

    assert project.run([*produce, "1000", str(JOBS)], env=env, cwd=v2).returncode == 0
    new_worker = project.start_worker(env=env, cwd=v2)
    try:
        wait_for(lambda: len(_runs(log)) >= 2 * JOBS, timeout=90, what="every job to run")
    except AssertionError as exc:
        workers = "\n".join(w.describe() for w in (*old_workers, new_worker))
        raise AssertionError(f"{exc}; ran: {sorted(_runs(log).items())}\n{workers}") from None

    for worker in (*old_workers, new_worker):
        worker.send(signal.SIGTERM)
        assert worker.wait() == 0, worker.describe()
    ran = _runs(log)
    assert {v for order, v in ran.items() if order < 1000} == {"v1"}
    assert {v for order, v in ran.items() if order >= 1000} == {"v2"}

    status = project.nuvom("history", "recent", "--limit", "100", "--format", "json", env=env,
                           cwd=v2)  # fmt: skip
    records = json.loads(status.stdout)
    assert len(records) == 2 * JOBS
    assert {r["status"] for r in records} == {"SUCCESS"}
    assert {r["attempts"] for r in records} == {1}, "no attempt spent on the wrong worker"
