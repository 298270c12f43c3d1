"""What ``.delay()`` returns: a handle apart from the plain ``Job`` record."""

from __future__ import annotations

import dataclasses

from nuvom.handle import JobHandle
from nuvom.job import Job, JobStatus
from nuvom.queue import enqueue
from nuvom.task import task
from nuvom.worker import Worker


def test_a_handle_carries_the_call_and_reads_the_live_status(runtime):
    @task(retries=3)
    def add(x: int, y: int = 0) -> int:
        return x + y

    handle = add.delay(2, y=3)

    assert isinstance(handle, JobHandle)
    assert (handle.func_name, tuple(handle.args), handle.kwargs) == ("add", (2,), {"y": 3})
    assert (handle.attempts, handle.retries_left) == (0, 3), "the task's retries"
    assert handle.status is JobStatus.PENDING
    assert handle.created_at == handle.job.created_at
    Worker(workers=1).run(burst=True)
    assert handle.status is JobStatus.SUCCESS, "read from the result backend, not remembered"
    assert handle.get(timeout=5) == 5


def test_a_hand_built_job_gets_a_handle_too(runtime):
    handle = enqueue(Job("unknown.task", max_retries=1))

    assert handle.id == handle.job.id
    assert handle.retries_left == 1
    assert handle.to_dict()["max_retries"] == 1


def test_the_job_record_has_no_private_fields_for_others_to_write():
    assert [f.name for f in dataclasses.fields(Job) if f.name.startswith("_")] == []
    assert not hasattr(Job("t"), "get"), "reading results is the handle's job"
