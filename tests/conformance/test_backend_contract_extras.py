"""Parts of the contract beyond claims: listing waiting jobs, and which pairs write jointly."""

from __future__ import annotations

from nuvom.backends.contract import TwoStepWriter, writer

from .conftest import Backends

JOINT = {"memory", "sqlite-shared", "postgres", "redis"}  # one store for queue and results


def test_waiting_jobs_lists_every_unclaimed_job_in_claim_order(backends: Backends, make_job):
    queue, clock = backends.queue, backends.clock
    low, high = make_job(), make_job(priority=5, kwargs={"k": "v"})
    later = make_job(due_at=clock.time() + 60)
    held = make_job(priority=9)
    queue.enqueue_many([low, high, later, held])
    queue.pop_batch(1, worker_id="w", lease_secs=30)

    waiting = queue.waiting_jobs()

    assert [job.id for job in waiting] == [high.id, low.id, later.id]
    assert (waiting[0].priority, waiting[0].kwargs, waiting[0].func_name) == (
        5,
        {"k": "v"},
        high.func_name,
    )
    assert waiting[2].due_at == later.due_at
    assert queue.qsize() == 3, "listing moves nothing"


def test_a_queue_and_results_in_one_store_write_each_step_jointly(backends: Backends):
    joint = writer(backends.queue, backends.results)

    assert (backends.kind in JOINT) is (type(joint) is not TwoStepWriter), type(joint).__name__
