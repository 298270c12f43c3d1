"""The backend contract as plain checks any backend can be run through, without pytest.

``nuvom plugin test`` runs them against the backends a plugin registers, and
``tests/conformance/test_plugin_checks.py`` runs them against every built-in
backend, so a check here can never demand what nuvom's own backends do not do.
"""

from __future__ import annotations

import threading
import traceback
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from nuvom.backends.contract import BaseJobQueue, BaseResultBackend
from nuvom.clock import FakeClock
from nuvom.job import Job, JobStatus
from nuvom.records import ErrorInfo, Outcome

LEASE_SECS = 10.0  # every claim in these checks lasts this long; the FakeClock moves past it
CLAIMERS = 4  # threads racing to claim the same jobs
RACE_JOBS = 200  # jobs those threads share out
W1, W2 = "check-worker-1", "check-worker-2"

QueueBuilder = Callable[[FakeClock], BaseJobQueue]
ResultBuilder = Callable[[FakeClock], BaseResultBackend]


class CheckFailed(AssertionError):
    pass


def expect(condition: bool, message: str) -> None:
    if not condition:
        raise CheckFailed(message)


@dataclass
class CheckResult:
    name: str
    status: str  # passed | failed | skipped
    detail: str = ""

    @property
    def ok(self) -> bool:
        return self.status != "failed"


@dataclass
class QueueCase:
    queue: BaseJobQueue
    clock: FakeClock
    clock_injected: bool  # False: the backend reads its own clock, so time-based checks skip

    def job(self, **fields: Any) -> Job:
        fields.setdefault("args", (uuid.uuid4().hex,))
        return Job(fields.pop("func_name", "conformance.task"), **fields)

    def pop(self, n: int = 100, worker: str = W1) -> list[Job]:
        return self.queue.pop_batch(n, worker_id=worker, lease_secs=LEASE_SECS)


def _ids(jobs: list[Job]) -> list[str]:
    return [job.id for job in jobs]


# -- queue checks ------------------------------------------------------------------
def claim_returns_the_call(case: QueueCase) -> None:
    job = case.job(func_name="mail.send", args=("a@b.c", 3), kwargs={"subject": "hi"}, priority=2)
    case.queue.enqueue(job)
    claimed = case.pop()
    expect(len(claimed) == 1, f"expected 1 claimed job, got {len(claimed)}")
    got = claimed[0]
    expect(got.id == job.id, "the claimed job has another id")
    expect(got.func_name == "mail.send", f"func_name came back as {got.func_name!r}")
    expect(list(got.args) == ["a@b.c", 3], f"args came back as {got.args!r}")
    expect(got.kwargs == {"subject": "hi"}, f"kwargs came back as {got.kwargs!r}")
    expect(got.priority == 2, f"priority came back as {got.priority!r}")
    expect(got.attempts == 1, f"attempts after the first claim is {got.attempts}, not 1")
    expect(got.lease_owner == W1, f"lease_owner is {got.lease_owner!r}, not the claimer")
    expect(job.attempts == 0, "the queue changed the caller's Job object")


def empty_queue_claims_nothing(case: QueueCase) -> None:
    expect(case.pop() == [], "an empty queue returned jobs")
    expect(case.queue.qsize() == 0, "an empty queue has a non-zero qsize")


def batch_claims_at_most_n_in_fifo_order(case: QueueCase) -> None:
    jobs = [case.job() for _ in range(10)]
    case.queue.enqueue_many(jobs)
    first, rest = case.pop(4), case.pop(100)
    expect(len(first) == 4, f"pop_batch(4) returned {len(first)} jobs")
    expect(_ids(first) + _ids(rest) == _ids(jobs), "jobs of equal priority did not come FIFO")


def higher_priority_first(case: QueueCase) -> None:
    low, high, mid = case.job(), case.job(priority=10), case.job(priority=5)
    case.queue.enqueue_many([low, high, mid])
    expect(_ids(case.pop()) == _ids([high, mid, low]), "claims are not ordered by priority")


def a_claimed_job_is_held_until_acked(case: QueueCase) -> None:
    job = case.job()
    case.queue.enqueue(job)
    case.pop(worker=W1)
    expect(case.pop(worker=W2) == [], "a claimed job was claimed again while its lease held")
    expect(case.queue.qsize() == 0, "qsize counts a claimed job as waiting")
    case.queue.ack(job.id, worker_id=W1)
    case.queue.ack(job.id, worker_id=W1)  # idempotent
    expect(case.pop(worker=W2) == [], "an acked job came back")


def an_expired_lease_is_claimed_again(case: QueueCase) -> None:
    job = case.job()
    case.queue.enqueue(job)
    case.pop(worker=W1)
    case.clock.advance(LEASE_SECS + 1)
    again = case.pop(worker=W2)
    expect(_ids(again) == [job.id], "a job whose lease expired was not claimable again")
    expect(again[0].attempts == 2, f"attempts after a lost lease is {again[0].attempts}, not 2")


def heartbeat_keeps_the_lease(case: QueueCase) -> None:
    held, other = case.job(), case.job()
    case.queue.enqueue_many([held, other])
    case.pop(worker=W1)
    case.clock.advance(LEASE_SECS * 0.8)
    kept = case.queue.heartbeat([held.id, "no-such-job"], worker_id=W1, lease_secs=LEASE_SECS)
    expect(kept == [held.id], f"heartbeat returned {kept!r}, not just the held job")
    case.clock.advance(LEASE_SECS * 0.8)
    reclaimed = _ids(case.pop(worker=W2))
    expect(held.id not in reclaimed, "a job whose lease was renewed was claimed by another worker")
    expect(other.id in reclaimed, "a job whose lease was not renewed was not claimable again")


def nack_retries_at_the_given_time(case: QueueCase) -> None:
    job = case.job()
    case.queue.enqueue(job)
    case.pop()
    case.queue.nack(job.id, retry_at=case.clock.time() + 30, worker_id=W1)
    expect(case.pop() == [], "a nacked job was claimable before its retry time")
    case.clock.advance(31)
    again = case.pop()
    expect(_ids(again) == [job.id], "a nacked job did not come back at its retry time")
    expect(again[0].attempts == 2, f"attempts after a retry is {again[0].attempts}, not 2")


def a_scheduled_job_waits_until_due(case: QueueCase) -> None:
    job = case.job(due_at=case.clock.time() + 60)
    case.queue.enqueue(job)
    expect(case.pop() == [], "a scheduled job was claimable before it was due")
    expect(case.queue.qsize() == 1, "qsize does not count a scheduled job")
    case.clock.advance(61)
    expect(_ids(case.pop()) == [job.id], "a scheduled job was not claimable once due")


def release_gives_jobs_back(case: QueueCase) -> None:
    job = case.job()
    case.queue.enqueue(job)
    case.pop(worker=W1)
    case.queue.release([job.id], worker_id=W1)
    expect(_ids(case.pop(worker=W2)) == [job.id], "a released job was not claimable at once")


def cancel_only_waiting_jobs(case: QueueCase) -> None:
    waiting, claimed = case.job(), case.job()
    case.queue.enqueue(claimed)
    case.pop()
    case.queue.enqueue(waiting)
    expect(case.queue.cancel(claimed.id) is False, "cancel() removed a claimed job")
    expect(case.queue.cancel(waiting.id) is True, "cancel() refused a waiting job")
    expect(case.pop() == [], "a cancelled job was claimed")


def clear_removes_everything(case: QueueCase) -> None:
    case.queue.enqueue_many([case.job() for _ in range(3)])
    case.pop(1)
    expect(case.queue.clear() == 3, "clear() did not count every job, claimed ones included")
    expect(case.queue.qsize() == 0, "jobs are left after clear()")


def concurrent_claimers_never_share_a_job(case: QueueCase) -> None:
    case.queue.enqueue_many([case.job() for _ in range(RACE_JOBS)])
    claimed: list[str] = []
    lock = threading.Lock()
    barrier = threading.Barrier(CLAIMERS)

    def claim(worker: str) -> None:
        barrier.wait()
        while jobs := case.pop(7, worker=worker):
            with lock:
                claimed.extend(_ids(jobs))

    threads = [threading.Thread(target=claim, args=(f"w{n}",)) for n in range(CLAIMERS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    twice = [job_id for job_id, n in Counter(claimed).items() if n > 1]
    expect(not twice, f"{len(twice)} job(s) were claimed by two claimers at once")
    expect(len(claimed) == RACE_JOBS, f"{RACE_JOBS - len(claimed)} job(s) were never claimed")


QUEUE_CHECKS: list[tuple[Callable[[QueueCase], None], bool]] = [
    # (check, needs the injected clock)
    (claim_returns_the_call, False),
    (empty_queue_claims_nothing, False),
    (batch_claims_at_most_n_in_fifo_order, False),
    (higher_priority_first, False),
    (a_claimed_job_is_held_until_acked, False),
    (an_expired_lease_is_claimed_again, True),
    (heartbeat_keeps_the_lease, True),
    (nack_retries_at_the_given_time, True),
    (a_scheduled_job_waits_until_due, True),
    (release_gives_jobs_back, False),
    (cancel_only_waiting_jobs, False),
    (clear_removes_everything, False),
    (concurrent_claimers_never_share_a_job, False),
]


# -- result checks -------------------------------------------------------------------
def result_round_trip(results: BaseResultBackend) -> None:
    job_id = uuid.uuid4().hex
    results.set_result(job_id, {"total": 3, "items": [1, 2]})
    got = results.get_result(job_id)
    expect(got == {"total": 3, "items": [1, 2]}, f"get_result returned {got!r}")
    expect(results.get_error(job_id) is None, "a succeeded job has an error")


def error_round_trip(results: BaseResultBackend) -> None:
    job_id = uuid.uuid4().hex
    results.set_error(job_id, ErrorInfo("ValueError", "bad input"))
    got = results.get_error(job_id)
    expect(
        got == "ValueError: bad input", f'get_error returned {got!r}, not "ValueError: bad input"'
    )


def unknown_jobs_have_nothing(results: BaseResultBackend) -> None:
    job_id = uuid.uuid4().hex
    expect(results.get_result(job_id) is None, "an unknown job has a result")
    expect(results.get_error(job_id) is None, "an unknown job has an error")
    expect(results.get_full(job_id) is None, "an unknown job has a record")


def outcomes_are_stored(results: BaseResultBackend) -> None:
    ok, bad = Job("conformance.task"), Job("conformance.task")
    results.record_enqueued([ok, bad])
    results.save_outcomes(
        [
            Outcome(ok, JobStatus.SUCCESS, result=[1, "two"]),
            Outcome(bad, JobStatus.FAILED, error=ErrorInfo("KeyError", "'x'")),
        ]
    )
    expect(results.get_result(ok.id) == [1, "two"], "a SUCCESS outcome's result was not stored")
    record = results.get_full(ok.id)
    expect(record is not None and record.status is JobStatus.SUCCESS, "get_full missed a success")
    expect(results.get_error(bad.id) == "KeyError: 'x'", "a FAILED outcome's error was not stored")
    failed = results.get_full(bad.id)
    expect(failed is not None and failed.status is JobStatus.FAILED, "get_full missed a failure")


RESULT_CHECKS: list[Callable[[BaseResultBackend], None]] = [
    result_round_trip,
    error_round_trip,
    unknown_jobs_have_nothing,
    outcomes_are_stored,
]


# -- running them ----------------------------------------------------------------------
def _failure(exc: BaseException) -> str:
    if isinstance(exc, CheckFailed):
        return str(exc)
    return "".join(traceback.format_exception_only(type(exc), exc)).strip()


def check_queue_backend(build: QueueBuilder) -> list[CheckResult]:
    """Run every queue check on a fresh, cleared backend from ``build(clock)``."""
    report = []
    for check, needs_clock in QUEUE_CHECKS:
        clock = FakeClock()
        try:
            queue = build(clock)
        except Exception as exc:
            report.append(CheckResult(check.__name__, "failed", f"building: {_failure(exc)}"))
            continue
        try:
            case = QueueCase(queue, clock, getattr(queue, "clock", None) is clock)
            if needs_clock and not case.clock_injected:
                report.append(CheckResult(check.__name__, "skipped", "backend ignores `clock`"))
                continue
            queue.clear()
            check(case)
            report.append(CheckResult(check.__name__, "passed"))
        except Exception as exc:
            report.append(CheckResult(check.__name__, "failed", _failure(exc)))
        finally:
            queue.close()
    return report


def check_result_backend(build: ResultBuilder) -> list[CheckResult]:
    """Run every result check on a fresh backend from ``build(clock)``."""
    report = []
    for check in RESULT_CHECKS:
        try:
            results = build(FakeClock())
        except Exception as exc:
            report.append(CheckResult(check.__name__, "failed", f"building: {_failure(exc)}"))
            continue
        try:
            check(results)
            report.append(CheckResult(check.__name__, "passed"))
        except Exception as exc:
            report.append(CheckResult(check.__name__, "failed", _failure(exc)))
        finally:
            results.close()
    return report
