"""Workflows on the memory backends with a burst worker: ``.then``, chains, groups, chords,
failures and errbacks, and following a workflow by id."""

from __future__ import annotations

import time

import pytest

from nuvom.errors import JobFailed
from nuvom.job import JobStatus
from nuvom.sdk import get_job, get_workflow
from nuvom.task import task
from nuvom.worker import Worker
from nuvom.workflow import COLLECT, WorkflowError, cancel_workflow, chain, chord, group, walk


def tasks_runtime():  # type: ignore[no-untyped-def]
    from nuvom.runtime import current

    return current()


def burst() -> Worker:
    worker = Worker(workers=2)
    worker.run(burst=True)
    return worker


@pytest.fixture
def tasks(runtime):  # type: ignore[no-untyped-def]
    @task
    def add(x: int, y: int) -> int:
        return x + y

    @task
    def total(values: list[int]) -> int:
        return sum(values)

    @task(retries=0)
    def boom(*args: object) -> None:
        raise ValueError("boom")

    @task
    def noted(failed_id: str, error: str, tag: str) -> str:
        return f"{tag}:{failed_id}:{error}"

    return add, total, boom, noted


def test_then_feeds_the_result_to_the_next_call(tasks):
    add, *_ = tasks
    first = add.delay(2, 3)
    second = first.then(add, 10)
    third = second.then(add, 100)

    burst()

    assert second.get(timeout=5) == 15
    assert third.get(timeout=5) == 115


def test_then_on_a_job_that_already_finished_runs_at_once(tasks):
    add, *_ = tasks
    first = add.delay(1, 1)
    burst()
    later = first.then(add, 5)
    burst()
    assert later.get(timeout=5) == 7


def test_a_chain_passes_each_result_on_and_si_receives_none(tasks):
    add, *_ = tasks
    handle = chain(add.s(1, 2), add.s(10), add.s(100)).delay()
    immutable = chain(add.s(1, 2), add.si(5, 5)).delay()
    burst()
    assert handle.get(timeout=5) == 113
    assert immutable.get(timeout=5) == 10


def test_a_group_returns_its_results_in_member_order(tasks):
    add, *_ = tasks
    handle = group(add.s(i, i) for i in range(10)).delay()
    burst()
    assert handle.get(timeout=5) == [2 * i for i in range(10)]
    assert handle.func_name == COLLECT


def test_a_chord_body_runs_once_after_all_members(tasks):
    add, total, *_ = tasks
    handle = chord([add.s(i, i) for i in range(100)], total.s()).delay()
    burst()
    assert handle.get(timeout=5) == sum(2 * i for i in range(100))
    assert len(walk(handle.id, tasks_runtime().results)) == 101


def test_a_chain_to_a_group_to_a_chord_completes(tasks):
    add, total, *_ = tasks
    inner = chord([add.si(1, 1), add.si(2, 2)], total.s())  # 2 + 4 = 6
    handle = chain(add.s(1, 2), group(add.s(10), add.s(20), inner), total.s()).delay()
    burst()
    assert handle.get(timeout=5) == 13 + 23 + 6


def test_an_empty_group_calls_its_callback_with_an_empty_list(tasks):
    _, total, *_ = tasks
    handle = chord([], total.s()).delay()
    burst()
    assert handle.get(timeout=5) == 0


def test_a_failed_member_cancels_what_follows_and_get_raises_its_failure(tasks):
    add, total, boom, _ = tasks
    handle = chord([add.s(1, 1), boom.s(), add.s(2, 2)], total.s()).delay()
    burst()
    with pytest.raises(JobFailed, match="boom") as raised:
        handle.get(timeout=5)
    failed = raised.value.job_id
    assert get_job(failed).func_name == "boom"
    body = get_job(handle.id)
    assert body.status is JobStatus.CANCELLED
    assert body.error_message is not None
    assert "did not succeed" in body.error_message


def test_on_failure_runs_once_with_the_failed_member_and_its_error(tasks):
    add, _, boom, noted = tasks
    handle = chain(add.s(1, 1), boom.s(), add.s(5), on_failure=noted.s("tag")).delay()
    burst()
    errback_id = get_workflow(handle.id).job.origin["errback"]  # type: ignore[index]
    result = get_job(errback_id).result
    failed = get_workflow(handle.id).failed_member()
    assert failed is not None
    assert result == f"tag:{failed.id}:ValueError: boom"


def test_on_failure_is_cancelled_when_nothing_fails(tasks):
    add, _, _, noted = tasks
    handle = chain(add.s(1, 1), add.s(5), on_failure=noted.s("tag")).delay()
    burst()
    assert handle.get(timeout=5) == 7
    errback_id = get_workflow(handle.id).job.origin["errback"]  # type: ignore[index]
    assert get_job(errback_id).status is JobStatus.CANCELLED


def test_cancelling_a_workflow_cancels_every_waiting_member(tasks):
    add, total, *_ = tasks
    handle = chord([add.s(i, i) for i in range(5)], total.s()).delay()
    cancelled = cancel_workflow(handle.id)
    assert len(cancelled) >= 5
    burst()
    assert all(
        get_job(r.id).status is JobStatus.CANCELLED for r in get_workflow(handle.id).records()
    )


@pytest.mark.parametrize(
    "build",
    [
        lambda add: chord([add.s(1, 1)], "not a signature"),
        lambda add: chain(add.s(1, 1), 42),
        lambda add: group(add.s(1, 1), None),
        lambda add: chain(add.s(1, 1), on_failure="x"),
    ],
)
def test_bad_workflows_are_refused_naming_what_is_wrong(tasks, build):
    add, *_ = tasks
    with pytest.raises(WorkflowError, match="must be a signature"):
        build(add)


def test_prune_keeps_the_members_of_an_unfinished_workflow(tasks):
    add, total, *_ = tasks
    from nuvom.runtime import current

    unfinished = chord([add.s(1, 1), add.s(2, 2)], total.s()).delay()
    done = chain(add.s(5, 5), add.s(1)).delay()
    burst()
    assert done.get(timeout=5) == 11
    results = current().results
    members = unfinished.job.origin["after"]  # type: ignore[index]
    results.mark_running([unfinished.job], worker_id="w", started_at=0.0)  # the body is running

    removed = results.prune(older_than=time.time() + 60)

    assert removed == 2, "the finished workflow's two jobs went, and nothing else"
    assert all(results.get_status(m) is JobStatus.SUCCESS for m in members)


def test_prune_keeps_a_finished_job_a_pending_then_comes_after(tasks):
    add, *_ = tasks
    from nuvom.runtime import current

    first = add.delay(1, 1)
    burst()
    later = first.then(add, 5)  # parked no more (first is done) but not run yet

    assert current().results.prune(older_than=time.time() + 60) == 0
    burst()
    assert later.get(timeout=5) == 7


def test_a_queue_that_keeps_no_workflows_refuses_a_chord_but_takes_an_empty_groups_callback():
    import nuvom
    from nuvom.errors import BackendError
    from nuvom.queue_backends.memory_queue import MemoryJobQueue
    from nuvom.registry import TaskRegistry

    class PlainQueue(MemoryJobQueue):  # as a plugin's queue: no parked jobs
        keeps_dependencies = False

    nuvom.configure(queue_backend=PlainQueue(), result_backend="memory", registry=TaskRegistry())

    @task
    def add(x: int, y: int) -> int:
        return x + y

    @task
    def total(values: list[int]) -> int:
        return sum(values)

    with pytest.raises(BackendError, match="keeps no workflows"):
        chord([add.s(1, 1)], total.s()).delay()
    handle = chord([], total.s()).delay()  # nothing to wait for: an ordinary job
    burst()
    assert handle.get(timeout=5) == 0
