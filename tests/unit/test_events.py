"""Lifecycle events reach listeners in order, and a failing listener harms nothing."""

from __future__ import annotations

import pytest

from nuvom.events import JobEvent
from nuvom.registry import TaskRegistry
from nuvom.runtime import configure, current
from nuvom.task import task
from nuvom.worker import Worker


@pytest.fixture
def events_runtime():
    return configure(
        queue_backend="memory", result_backend="memory", retry_delay_secs=0, registry=TaskRegistry()
    )


def test_a_job_emits_enqueued_started_retried_then_succeeded(events_runtime):
    seen: list[JobEvent] = []
    current().events.subscribe(seen.append)
    tries: list[int] = []

    @task(retries=1, retry_delay_secs=0)
    def wobbly() -> str:
        tries.append(1)
        if len(tries) == 1:
            raise RuntimeError("first try fails")
        return "ok"

    job = wobbly.delay()
    Worker(workers=1).run(burst=True)

    names = [event.name for event in seen if event.job.id == job.id]
    assert names == ["enqueued", "started", "retried", "started", "succeeded"]
    succeeded = seen[-1]
    assert succeeded.outcome is not None
    assert succeeded.outcome.result == "ok"
    assert succeeded.duration_secs is not None
    assert succeeded.duration_secs >= 0
    assert succeeded.worker_id is not None


def test_a_failing_listener_does_not_change_the_outcome(events_runtime):
    def broken(event: JobEvent) -> None:
        raise ValueError("listener bug")

    failed: list[str] = []
    current().events.subscribe(broken)
    unsubscribe = current().events.subscribe(lambda e: failed.append(e.name))

    @task
    def fine() -> int:
        return 1

    job = fine.delay()
    Worker(workers=1).run(burst=True)

    assert job.get(timeout=1) == 1
    assert failed[-1] == "succeeded"
    unsubscribe()
    fine.delay()
    Worker(workers=1).run(burst=True)
    assert failed.count("succeeded") == 1
