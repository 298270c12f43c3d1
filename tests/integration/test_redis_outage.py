"""Redis goes away mid-run: the worker logs, backs off, reconnects and carries on.

Each test starts a ``redis-server`` of its own (own port, own data dir) and stops or
freezes only that one, by its PID, so no other test sees the outage. The server
keeps nothing on disk (``--save "" --appendonly no``), so jobs enqueued before a
restart are gone with it; the point here is that workers survive and producers
fail with ``BackendUnavailable`` instead of hanging.
"""

from __future__ import annotations

import signal
import time

import pytest

from nuvom.errors import BackendUnavailable
from nuvom.handle import JobHandle
from nuvom.job import Job, JobStatus
from nuvom.queue import enqueue

from .helpers import TASKS, Project, posix_only, wait_for
from .servers import own_redis

UNAVAILABLE_WITHIN_SECS = 20.0  # a producer's enqueue fails at most this long after the server died
# A frozen server accepts connections but never answers: the send waits out its 10 s
# socket time-out, and a send that took a whole time-out to fail is not sent again.
FROZEN_UNAVAILABLE_WITHIN_SECS = 15.0
THAWED_ENQUEUE_WITHIN_SECS = 5.0  # once it carries on, an enqueue is a single round trip


@posix_only
@pytest.mark.slow
@pytest.mark.timeout(120)
def test_worker_rides_out_a_redis_restart_and_producers_fail_fast(project: Project) -> None:
    with own_redis(project.root) as server:
        project.write("tasks.py", TASKS)
        project.configure(**server.settings)
        worker = project.start_worker(env=dict(project.env, **server.env))
        assert enqueue(Job("add", args=[1, 2])).get(timeout=30) == 3

        server.stop()  # SIGTERM to its PID (SIGKILL if it lingers), and reaped
        started = time.monotonic()
        with pytest.raises(BackendUnavailable) as refused:
            enqueue(Job("add", args=[2, 2]))
        assert time.monotonic() - started < UNAVAILABLE_WITHIN_SECS
        assert "Redis" in str(refused.value)
        worker.wait_for_output("failed", timeout=30)

        server.start()  # a new server on the same port, answering PING
        job = wait_for(lambda: _try_enqueue(Job("add", args=[3, 4])), what="an enqueue")
        assert job.get(timeout=60) == 7, worker.describe()
        assert worker.popen.poll() is None, worker.describe()
        worker.send(signal.SIGTERM)
        assert worker.wait() == 0, worker.describe()


@posix_only
@pytest.mark.slow
@pytest.mark.timeout(120)
def test_a_frozen_redis_makes_enqueue_fail_within_a_bound_not_hang(project: Project) -> None:
    with own_redis(project.root) as server:
        project.configure(**server.settings)
        enqueue(Job("add", args=[1, 1]))  # a pooled connection, as a running producer has

        server.freeze()  # SIGSTOP to its PID: connects still succeed, nothing answers
        try:
            started = time.monotonic()
            with pytest.raises(BackendUnavailable) as refused:
                enqueue(Job("add", args=[1, 2]))
            took = time.monotonic() - started
            assert took < FROZEN_UNAVAILABLE_WITHIN_SECS, f"{took:.1f}s"
            assert "Redis" in str(refused.value)
        finally:
            server.thaw()  # SIGCONT

        started = time.monotonic()
        handle = enqueue(Job("add", args=[3, 4]))
        assert time.monotonic() - started < THAWED_ENQUEUE_WITHIN_SECS
        assert handle.status is JobStatus.PENDING


def _try_enqueue(job: Job) -> JobHandle | None:
    try:
        return enqueue(job)
    except BackendUnavailable:
        return None
