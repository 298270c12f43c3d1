"""PostgreSQL goes away mid-run: the worker logs, backs off, reconnects and carries on.

A producer meanwhile gets ``BackendUnavailable`` within a bounded time, never a
hang. The test holds the server lock exclusively, so no other test sees the outage.
"""

from __future__ import annotations

import subprocess
import time

import pytest

from nuvom.errors import BackendUnavailable
from nuvom.job import Job
from nuvom.queue import enqueue

from .helpers import TASKS, Project, posix_only, wait_for
from .servers import (
    ServerBackend,
    postgres_cluster_version,
    require_command,
    require_postgres,
    server_lock,
)

UNAVAILABLE_WITHIN_SECS = 20.0  # a producer's enqueue fails at most this long after the server died


def _pg_ctl(action: str) -> None:
    command = [require_command("pg_ctlcluster"), "--skip-systemctl-redirect"]
    command += [postgres_cluster_version(), "main", action]
    if action == "stop":
        command += ["--mode", "fast"]
    subprocess.run(command, check=True, capture_output=True, timeout=60)


def _postgres_up() -> bool:
    import psycopg

    try:
        with psycopg.connect(require_postgres(), connect_timeout=2) as conn:
            conn.execute("SELECT 1")
    except psycopg.Error:
        return False
    return True


@posix_only
@pytest.mark.slow
@pytest.mark.timeout(120)
def test_worker_rides_out_a_postgres_restart_and_producers_fail_fast(project: Project) -> None:
    require_postgres()
    require_command("pg_ctlcluster")
    with server_lock(exclusive=True):
        backend = ServerBackend("postgres")
        try:
            project.write("tasks.py", TASKS)
            project.configure(**backend.settings)
            env = dict(project.env, **backend.env)
            worker = project.start_worker(env=env)
            assert enqueue(Job("add", args=[1, 2])).get(timeout=30) == 3

            _pg_ctl("stop")
            try:
                started = time.monotonic()
                with pytest.raises(BackendUnavailable) as refused:
                    enqueue(Job("add", args=[2, 2]))
                assert time.monotonic() - started < UNAVAILABLE_WITHIN_SECS
                assert "PostgreSQL" in str(refused.value)
                worker.wait_for_output("failed", timeout=30)
            finally:
                _pg_ctl("start")
            wait_for(_postgres_up, timeout=60, what="PostgreSQL to accept connections again")

            job = wait_for(lambda: _try_enqueue(Job("add", args=[3, 4])), what="an enqueue")
            assert job.get(timeout=60) == 7, worker.describe()
            assert worker.popen.poll() is None, worker.describe()
            worker.send(15)
            assert worker.wait() == 0, worker.describe()
        finally:
            backend.drop()


def _try_enqueue(job: Job) -> Job | None:
    try:
        return enqueue(job)
    except BackendUnavailable:
        return None
