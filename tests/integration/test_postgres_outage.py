"""PostgreSQL goes away mid-run: the worker logs, backs off, reconnects and carries on.

A producer meanwhile gets ``BackendUnavailable`` within a bounded time, never a
hang. The test starts a PostgreSQL server of its own (initdb, a free port) and
stops and starts only that one, with ``pg_ctl``, so no other test sees the outage.
"""

from __future__ import annotations

import signal
import time

import pytest

from nuvom.errors import BackendUnavailable
from nuvom.job import Job
from nuvom.queue import enqueue

from .helpers import TASKS, Project, posix_only, wait_for
from .servers import own_postgres

UNAVAILABLE_WITHIN_SECS = 20.0  # a producer's enqueue fails at most this long after the server died


@posix_only
@pytest.mark.slow
@pytest.mark.timeout(120)
def test_worker_rides_out_a_postgres_restart_and_producers_fail_fast(project: Project) -> None:
    with own_postgres() as server:
        project.write("tasks.py", TASKS)
        project.configure(**server.settings)
        worker = project.start_worker(env=dict(project.env, **server.env))
        assert enqueue(Job("add", args=[1, 2])).get(timeout=30) == 3

        postmaster = server.pid
        server.stop("fast")  # pg_ctl stop: its clients are disconnected, the port closes
        try:
            started = time.monotonic()
            with pytest.raises(BackendUnavailable) as refused:
                enqueue(Job("add", args=[2, 2]))
            assert time.monotonic() - started < UNAVAILABLE_WITHIN_SECS
            assert "PostgreSQL" in str(refused.value)
            worker.wait_for_output("failed", timeout=30)
        finally:
            server.start()  # the same data and port, so clients find it again
        assert server.pid != postmaster  # really restarted, not left running

        job = wait_for(lambda: _try_enqueue(Job("add", args=[3, 4])), what="an enqueue")
        assert job.get(timeout=60) == 7, worker.describe()
        assert worker.popen.poll() is None, worker.describe()
        worker.send(signal.SIGTERM)
        assert worker.wait() == 0, worker.describe()


def _try_enqueue(job: Job) -> Job | None:
    try:
        return enqueue(job)
    except BackendUnavailable:
        return None
