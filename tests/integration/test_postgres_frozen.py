"""A PostgreSQL server that stops answering (SIGSTOP) must never hang a producer.

Its kernel still accepts connections and ACKs what is sent, so only a client-side
bound notices: ``enqueue`` fails with ``BackendUnavailable`` within about
``NUVOM_POSTGRES_TIMEOUT_SECS``, and works again once the server carries on.
"""

from __future__ import annotations

import time

import pytest

from nuvom.errors import BackendUnavailable
from nuvom.job import Job
from nuvom.queue import enqueue

from .helpers import Project, posix_only, wait_for
from .servers import own_postgres

TIMEOUT_SECS = 2  # NUVOM_POSTGRES_TIMEOUT_SECS for this test
UNAVAILABLE_WITHIN_SECS = 3 * TIMEOUT_SECS  # a frozen server fails an enqueue at most this late
RECOVERED_WITHIN_SECS = 30.0  # after SIGCONT, an enqueue works again within this


@posix_only
@pytest.mark.slow
@pytest.mark.timeout(120)
def test_a_frozen_postgres_fails_enqueue_fast_and_the_pool_recovers(
    project: Project, monkeypatch: pytest.MonkeyPatch
) -> None:
    with own_postgres() as server:
        monkeypatch.setenv("NUVOM_POSTGRES_TIMEOUT_SECS", str(TIMEOUT_SECS))
        project.configure(**server.settings)
        assert enqueue(Job("add", args=[1, 2])).id

        server.freeze()
        try:
            started = time.monotonic()
            with pytest.raises(BackendUnavailable) as refused:
                enqueue(Job("add", args=[2, 2]))
            took = time.monotonic() - started
            assert took < UNAVAILABLE_WITHIN_SECS, f"enqueue took {took:.1f}s to fail"
            assert "PostgreSQL" in str(refused.value)
        finally:
            server.thaw()

        job = wait_for(
            lambda: _try_enqueue(Job("add", args=[3, 4])),
            timeout=RECOVERED_WITHIN_SECS,
            what="an enqueue after SIGCONT",
        )
        assert job.id


def _try_enqueue(job: Job) -> Job | None:
    try:
        return enqueue(job)
    except BackendUnavailable:
        return None
