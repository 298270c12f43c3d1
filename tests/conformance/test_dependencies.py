"""The workflow primitive of the backend contract, on every engine: jobs that wait for others.

A job whose ``origin["after"]`` names job ids is parked until each has succeeded, counted
once however often it is settled; the settle that acks the last one releases it, in the
same atomic step. A dependency that fails for good cancels its dependents, and theirs,
with a reason; an errback (``feed="failure"``) runs instead. These are what
``nuvom/workflow.py`` builds chains, groups and chords on.
"""

from __future__ import annotations

import threading

from nuvom.job import Job, JobStatus
from nuvom.records import ErrorInfo, Outcome

from .conftest import Backends

LEASE_SECS = 30.0


def _job(name: str, *after: str, feed: str = "one", **fields: object) -> Job:
    origin = {"workflow": "wf", "after": list(after), "feed": feed} if after else None
    return Job(f"conformance.{name}", id=name, origin=origin, **fields)  # type: ignore[arg-type]


def _claim(backends: Backends, n: int = 100, worker: str = "w1") -> list[Job]:
    return backends.queue.claim(
        n, worker_id=worker, lease_secs=LEASE_SECS, results=backends.results
    )


def _finish(backends: Backends, job: Job, status: JobStatus = JobStatus.SUCCESS, *,
            worker: str = "w1") -> None:  # fmt: skip
    error = None if status is JobStatus.SUCCESS else ErrorInfo("ValueError", f"{job.id} broke")
    outcome = Outcome(job, status, result=job.id, error=error, worker_id=worker,
                      finished_at=backends.clock.time())  # fmt: skip
    backends.queue.settle([outcome], backends.results)


def _ids(jobs: list[Job]) -> list[str]:
    return sorted(job.id for job in jobs)


def _status(backends: Backends, job_id: str) -> JobStatus | None:
    return backends.results.get_status(job_id)


def test_a_job_waits_parked_until_what_it_waits_for_succeeded(backends: Backends):
    a, b = _job("a"), _job("b")
    callback = _job("callback", "a", "b", feed="list")
    backends.queue.submit([a, b, callback], backends.results)

    assert backends.queue.qsize() == 2, "a parked job is not waiting"
    assert [j.id for j in backends.queue.parked_jobs()] == ["callback"]
    assert _status(backends, "callback") is JobStatus.PENDING
    claimed = _claim(backends)
    assert _ids(claimed) == ["a", "b"]

    _finish(backends, claimed[0])
    assert _claim(backends) == [], "one of two dependencies is not enough"
    _finish(backends, claimed[1])

    (released,) = _claim(backends)
    assert released.id == "callback"
    assert released.origin == callback.origin, "it runs as it was submitted"
    assert backends.queue.parked_jobs() == []


def test_a_dependency_settled_twice_counts_once(backends: Backends):
    a, b = _job("a"), _job("b")
    backends.queue.submit([a, b, _job("callback", "a", "b", feed="list")], backends.results)
    (first_a,) = [j for j in _claim(backends, worker="w1") if j.id == "a"]
    _finish(backends, first_a, worker="w1")

    backends.queue.submit([_job("a")], backends.results)  # delivered again (a resend)
    (again,) = [j for j in _claim(backends, worker="w2") if j.id == "a"]
    _finish(backends, again, worker="w2")
    backends.queue.resolve([("a", True)])  # and told once more by hand

    assert [j.id for j in backends.queue.parked_jobs()] == ["callback"], "b has not run"
    assert backends.queue.qsize() == 0


def test_concurrent_completions_release_the_callback_exactly_once(backends: Backends):
    members = [_job(f"m{i:02d}") for i in range(24)]
    callback = _job("callback", *(m.id for m in members), feed="list")
    backends.queue.submit([*members, callback], backends.results)
    claimed = {worker: _claim(backends, 6, worker) for worker in ("w1", "w2", "w3", "w4")}
    start = threading.Barrier(len(claimed))
    errors: list[BaseException] = []

    def settle(worker: str) -> None:
        start.wait()
        try:
            for job in claimed[worker]:
                _finish(backends, job, worker=worker)
                backends.queue.resolve([(job.id, True)])  # a duplicate completion, racing
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=settle, args=(w,)) for w in claimed]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)

    assert errors == []
    assert [j.id for j in _claim(backends)] == ["callback"]
    assert _claim(backends) == []
    assert backends.queue.parked_jobs() == []


def test_a_failure_for_good_cancels_the_dependents_in_turn_with_a_reason(backends: Backends):
    jobs = [_job("a"), _job("b", "a"), _job("c", "b"), _job("d")]
    backends.queue.submit(jobs, backends.results)
    claimed = {j.id: j for j in _claim(backends)}
    assert sorted(claimed) == ["a", "d"]

    _finish(backends, claimed["a"], JobStatus.FAILED)

    assert backends.queue.parked_jobs() == []
    for job_id in ("b", "c"):
        record = backends.results.get_full(job_id)
        assert record is not None
        assert record.status is JobStatus.CANCELLED
        assert record.error_message is not None
    assert "job a" in (backends.results.get_full("b").error_message or "")  # type: ignore[union-attr]
    assert "job b" in (backends.results.get_full("c").error_message or "")  # type: ignore[union-attr]
    assert _claim(backends) == []
    assert _status(backends, "d") is JobStatus.RUNNING, "a job outside the graph is untouched"


def test_a_retry_keeps_the_dependents_waiting(backends: Backends):
    backends.queue.submit([_job("a"), _job("b", "a")], backends.results)
    (a,) = _claim(backends)
    outcome = Outcome(a, JobStatus.RETRYING, error=ErrorInfo("ValueError", "again"),
                      worker_id="w1", retry_at=backends.clock.time())  # fmt: skip
    backends.queue.settle([outcome], backends.results)

    assert [j.id for j in backends.queue.parked_jobs()] == ["b"]
    (again,) = _claim(backends)
    _finish(backends, again)
    assert [j.id for j in _claim(backends)] == ["b"]


def test_an_errback_runs_once_when_a_dependency_fails_and_is_cancelled_when_none_does(
    backends: Backends,
):
    jobs = [_job("a"), _job("b"), _job("on_err", "a", "b", feed="failure"),
            _job("ok"), _job("spare", "ok", feed="failure")]  # fmt: skip
    backends.queue.submit(jobs, backends.results)
    claimed = {j.id: j for j in _claim(backends)}

    _finish(backends, claimed["a"], JobStatus.FAILED)
    _finish(backends, claimed["b"], JobStatus.FAILED)  # a second failure: it runs once
    _finish(backends, claimed["ok"])

    assert [j.id for j in _claim(backends)] == ["on_err"]
    assert _status(backends, "spare") is JobStatus.CANCELLED
    assert backends.queue.parked_jobs() == []


def test_a_dependency_finished_before_its_dependent_was_submitted_counts(backends: Backends):
    backends.queue.submit([_job("a"), _job("bad")], backends.results)
    claimed = {j.id: j for j in _claim(backends)}
    _finish(backends, claimed["a"])
    _finish(backends, claimed["bad"], JobStatus.FAILED)

    backends.queue.submit([_job("then", "a"), _job("never", "bad")], backends.results)

    assert [j.id for j in _claim(backends)] == ["then"]
    assert _status(backends, "never") is JobStatus.CANCELLED
    assert backends.queue.parked_jobs() == []


def test_cancelling_a_parked_job_cancels_what_waits_for_it(backends: Backends):
    backends.queue.submit([_job("a"), _job("b", "a"), _job("c", "b")], backends.results)

    assert backends.queue.cancel_job("b", backends.results) is True
    assert _status(backends, "b") is JobStatus.CANCELLED
    assert _status(backends, "c") is JobStatus.CANCELLED
    assert backends.queue.parked_jobs() == []
    (a,) = _claim(backends)
    _finish(backends, a)
    assert _claim(backends) == [], "nothing is left to release"


def test_resolving_jobs_no_one_waits_for_changes_nothing(backends: Backends):
    resolved = backends.queue.resolve([("nobody", True), ("nobody-either", False)])
    assert (resolved.released, resolved.cancelled) == ([], [])
    assert backends.queue.resolve([]).released == []


def test_clear_removes_parked_jobs(backends: Backends):
    backends.queue.submit([_job("a"), _job("b", "a")], backends.results)
    assert backends.queue.clear() == 2
    assert backends.queue.parked_jobs() == []
    assert backends.queue.qsize() == 0


def test_a_result_a_waiting_job_needs_is_not_deleted(backends: Backends):
    """``delete_job`` keeps what ``prune`` keeps: the record of a finished job whose result a
    parked job of its workflow will be fed. Once the workflow is done it can go."""
    backends.queue.submit([_job("a"), _job("b")], backends.results)
    backends.queue.submit([_job("c", "a", "b")], backends.results)
    first = {job.id: job for job in _claim(backends)}
    _finish(backends, first["a"])

    assert backends.results.delete_job("a") is False, "c waits to be fed a's result"
    assert backends.results.get_full("a") is not None

    _finish(backends, first["b"])
    [c] = _claim(backends)
    _finish(backends, c)
    assert backends.results.delete_job("a") is True, "nothing waits for it any more"
