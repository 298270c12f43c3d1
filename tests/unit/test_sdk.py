"""Operations on jobs by id (``nuvom.sdk``) and the ``result_store`` readers."""

from __future__ import annotations

import pytest

from nuvom.errors import JobCancelled, JobNotFound, JobStateError
from nuvom.job import JobStatus
from nuvom.result_store import get_error, get_result
from nuvom.sdk import cancel_job, get_job, retry_job
from nuvom.task import task
from nuvom.worker import Worker


def burst() -> None:
    Worker(workers=1).run(burst=True)


def test_get_job_unknown_raises_job_not_found(runtime):
    with pytest.raises(JobNotFound) as caught:
        get_job("0123456789abcdef")

    assert caught.value.job_id == "0123456789abcdef"


def test_get_job_returns_the_record(runtime):
    @task
    def hello(name: str) -> str:
        return f"hello {name}"

    job = hello.delay("ada")

    record = get_job(job.id)

    assert record.id == job.id
    assert record.func_name == "hello"
    assert record.args == ["ada"]
    assert record.status is JobStatus.PENDING


def test_result_store_readers(runtime):
    @task
    def outcome(ok: bool) -> str:
        if not ok:
            raise LookupError("nothing here")
        return "found"

    good, bad = outcome.delay(True), outcome.delay(False)

    burst()

    assert get_result(good.id) == "found"
    assert get_error(good.id) is None
    assert get_result(bad.id) is None
    assert get_error(bad.id) == "LookupError: nothing here"


def test_retry_job_reruns_a_failed_job_under_the_same_id(runtime):
    calls: list[int] = []

    @task
    def fails_once(x: int) -> int:
        calls.append(x)
        if len(calls) == 1:
            raise RuntimeError("first run fails")
        return x + 1

    job = fails_once.delay(41)
    burst()
    assert get_job(job.id).status is JobStatus.FAILED

    again = retry_job(job.id)

    assert again.id == job.id
    assert again.status is JobStatus.PENDING
    assert get_job(job.id).status is JobStatus.PENDING
    burst()
    record = get_job(job.id)
    assert record.status is JobStatus.SUCCESS
    assert [a.status for a in record.history] == ["FAILED", "SUCCESS"]
    assert record.history[0].error_type == "RuntimeError"
    assert again.get(timeout=5) == 42
    assert calls == [41, 41]


def test_retry_job_refuses_a_job_that_did_not_fail(runtime):
    @task
    def fine() -> str:
        return "ok"

    job = fine.delay()
    with pytest.raises(JobStateError) as pending:
        retry_job(job.id)
    burst()
    with pytest.raises(JobStateError) as succeeded:
        retry_job(job.id)

    assert (pending.value.job_id, pending.value.status) == (job.id, "PENDING")
    assert succeeded.value.status == "SUCCESS"
    assert runtime.queue.qsize() == 0


def test_retry_job_unknown_raises_job_not_found(runtime):
    with pytest.raises(JobNotFound):
        retry_job("no-such-job")


def test_cancel_job_on_a_pending_job(runtime):
    @task
    def later() -> None: ...

    job = later.delay()

    record = cancel_job(job.id)

    assert record.status is JobStatus.CANCELLED
    assert get_job(job.id).status is JobStatus.CANCELLED
    assert runtime.queue.qsize() == 0
    with pytest.raises(JobCancelled):
        job.get(timeout=5)


def test_cancel_job_on_a_scheduled_job(fake_runtime):
    @task
    def someday() -> None: ...

    job = someday.schedule(in_=3600)

    assert cancel_job(job.id).status is JobStatus.CANCELLED
    assert fake_runtime.queue.qsize() == 0


def test_cancel_job_on_a_finished_job_raises_job_state_error(runtime):
    @task
    def quick() -> int:
        return 1

    job = quick.delay()
    burst()

    with pytest.raises(JobStateError) as caught:
        cancel_job(job.id)

    assert caught.value.status == "SUCCESS"
    assert get_job(job.id).status is JobStatus.SUCCESS


def test_cancel_job_on_a_running_job_raises_job_state_error(runtime):
    @task
    def busy() -> None: ...

    job = busy.delay()
    runtime.queue.claim(1, worker_id="elsewhere", lease_secs=30, results=runtime.results)

    with pytest.raises(JobStateError) as caught:
        cancel_job(job.id)

    assert caught.value.status == "RUNNING"


def test_a_cancelled_job_can_be_retried(runtime):
    @task
    def revived() -> str:
        return "back"

    job = revived.delay()
    cancel_job(job.id)

    retry_job(job.id)
    burst()

    assert job.get(timeout=5) == "back"


def test_cancel_job_unknown_raises_job_not_found(runtime):
    with pytest.raises(JobNotFound):
        cancel_job("no-such-job")
