"""Redis goes away mid-run: the worker logs, backs off, reconnects and carries on.

The test server keeps nothing on disk (``--save "" --appendonly no``), so jobs
enqueued before the restart are gone with it; the point here is that workers
survive and producers fail fast with ``BackendUnavailable``.
"""

from __future__ import annotations

import subprocess
import time

import pytest

from nuvom.errors import BackendUnavailable
from nuvom.job import Job
from nuvom.queue import enqueue

from .helpers import TASKS, Project, posix_only, wait_for
from .servers import ServerBackend, require_command, require_redis, server_lock

UNAVAILABLE_WITHIN_SECS = 20.0  # a producer's enqueue fails at most this long after the server died
REDIS_START = [
    "--daemonize", "yes", "--bind", "127.0.0.1", "--port", "6379",
    "--save", "", "--appendonly", "no",
]  # fmt: skip


def _redis_up() -> bool:
    result = subprocess.run(
        [require_command("redis-cli"), "-h", "127.0.0.1", "ping"],
        capture_output=True,
        text=True,
        timeout=10,
        check=False,
    )
    return result.stdout.strip() == "PONG"


@posix_only
@pytest.mark.slow
@pytest.mark.timeout(120)
def test_worker_rides_out_a_redis_restart_and_producers_fail_fast(project: Project) -> None:
    require_redis()
    server = require_command("redis-server")
    cli = require_command("redis-cli")
    with server_lock(exclusive=True):
        backend = ServerBackend("redis")
        try:
            project.write("tasks.py", TASKS)
            project.configure(**backend.settings)
            env = dict(project.env, **backend.env)
            worker = project.start_worker(env=env)
            assert enqueue(Job("add", args=[1, 2])).get(timeout=30) == 3

            subprocess.run([cli, "-h", "127.0.0.1", "shutdown", "nosave"], timeout=30, check=False)
            wait_for(lambda: not _redis_up(), what="Redis to stop")
            try:
                started = time.monotonic()
                with pytest.raises(BackendUnavailable) as refused:
                    enqueue(Job("add", args=[2, 2]))
                assert time.monotonic() - started < UNAVAILABLE_WITHIN_SECS
                assert "Redis" in str(refused.value)
                worker.wait_for_output("failed", timeout=30)
            finally:
                subprocess.run([server, *REDIS_START], timeout=30, check=True)
            wait_for(_redis_up, timeout=60, what="Redis to answer again")

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
