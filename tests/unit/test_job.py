"""The ``Job`` record, job ids, statuses and the fake clock."""

from __future__ import annotations

import dataclasses
import threading

import pytest

from nuvom.clock import FakeClock
from nuvom.errors import InvalidJob
from nuvom.job import FINAL_STATUSES, Job, JobStatus, new_job_id


def test_a_hand_built_job_has_sensible_defaults():
    job = Job("unstable")

    assert (job.func_name, tuple(job.args), job.kwargs) == ("unstable", (), {})
    assert job.status is JobStatus.PENDING
    assert (job.attempts, job.queue, job.priority) == (0, "default", 0)
    assert job.retries_left is None, "only the task knows its retries"
    assert len(job.id) == 32


@pytest.mark.parametrize(
    "fields",
    [{"func_name": ""}, {"func_name": None}, {"func_name": "t", "kwargs": [1]},
     {"func_name": "t", "args": "abc"}],
)  # fmt: skip
def test_invalid_jobs_are_refused(fields):
    with pytest.raises(TypeError):
        Job(**fields)


@pytest.mark.parametrize(("attempts", "left"), [(0, 2), (1, 2), (2, 1), (3, 0), (7, 0)])
def test_retries_left_counts_down_with_attempts(attempts, left):
    assert Job("t", max_retries=2, attempts=attempts).retries_left == left


def test_to_dict_holds_the_call_and_only_the_overrides_set():
    job = Job("t", args=(1, 2), kwargs={"k": "v"}, timeout_secs=5)

    data = job.to_dict()

    assert data["func_name"] == "t"
    assert data["args"] == [1, 2]
    assert data["kwargs"] == {"k": "v"}
    assert data["status"] == "PENDING"
    assert data["timeout_secs"] == 5
    assert "max_retries" not in data


def test_job_ids_are_unique_and_sort_by_creation_time():
    ids = [new_job_id() for _ in range(2000)]

    assert len(set(ids)) == len(ids)
    assert all(len(i) == 32 and int(i, 16) >= 0 for i in ids)
    prefixes = [i[:12] for i in ids]
    assert prefixes == sorted(prefixes), "the millisecond prefix never goes backwards"


def test_final_statuses():
    assert {JobStatus.SUCCESS, JobStatus.FAILED, JobStatus.CANCELLED} == FINAL_STATUSES
    assert [s for s in JobStatus if s.is_final] == [
        JobStatus.SUCCESS,
        JobStatus.FAILED,
        JobStatus.CANCELLED,
    ]
    assert str(JobStatus.RETRYING) == "RETRYING"


def test_fake_clock_moves_only_when_told():
    clock = FakeClock(start=100.0)

    assert clock.time() == 100.0
    assert clock.advance(2.5) == 102.5
    assert clock.time() == 102.5


def test_fake_clock_is_thread_safe():
    clock = FakeClock(start=0.0)
    threads = [
        threading.Thread(target=lambda: [clock.advance(1) for _ in range(1000)]) for _ in range(4)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert clock.time() == 4000.0


@pytest.mark.parametrize(
    ("fields", "field"),
    [({"priority": "high"}, "priority"), ({"priority": 1.5}, "priority"),
     ({"priority": True}, "priority"), ({"priority": 2**31}, "priority"),
     ({"queue": None}, "queue"), ({"queue": ""}, "queue"),
     ({"due_at": float("nan")}, "due_at"), ({"due_at": "x"}, "due_at"),
     ({"due_at": float("inf")}, "due_at"), ({"attempts": -1}, "attempts"),
     ({"timeout_secs": "30"}, "timeout_secs"), ({"max_retries": "x"}, "max_retries"),
     ({"kwargs": {1: 2}}, "kwargs"), ({"id": ""}, "id")],
)  # fmt: skip
def test_a_badly_typed_field_is_refused_with_its_name(fields, field):
    with pytest.raises(InvalidJob, match=field) as refused:
        Job("add", args=(1, 2), **fields)

    assert refused.value.field == field
    assert isinstance(refused.value, TypeError | ValueError), "old except clauses still catch it"


def test_a_field_spoilt_after_the_job_was_built_is_caught_by_validate():
    job = Job("add")
    job.priority = "high"  # type: ignore[assignment]

    with pytest.raises(InvalidJob, match="priority"):
        job.validate()


def test_a_copy_has_every_field_of_the_original_and_the_changes():
    job = Job("t.copy", args=(1,), kwargs={"k": 2}, id="j1", queue="q", priority=3,
              status=JobStatus.RUNNING, attempts=2, created_at=10.0, due_at=11.0,
              max_retries=4, retry_delay_secs=0.5, timeout_secs=9.0, timeout_policy="retry",
              store_result=False, origin={"schedule": "s"}, lease_owner="w",
              lease_until=12.0)  # fmt: skip
    every = [f.name for f in dataclasses.fields(Job)]
    assert {name: getattr(job.copy(), name) for name in every} == {
        name: getattr(job, name) for name in every
    }
    changed = job.copy(attempts=3, lease_owner=None)
    assert (changed.attempts, changed.lease_owner, job.attempts, job.lease_owner) == (
        3, None, 2, "w")  # fmt: skip
