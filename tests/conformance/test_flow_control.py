"""Flow control in the backend contract, on every engine: paused queues, rate and
concurrency limits checked in the claim, unique keys checked in the submit.

A job carries its limits in ``origin`` (``nuvom/limits.py``): ``"rate": [per_sec, burst]``
(the bucket is its task's), ``"conc": [key, limit]``, ``"unique": [key, keep_secs]``. A
job a limit refuses is held: it waits, its attempts unchanged, with a hold tag, and the
claim goes on to the jobs behind it.
"""

from __future__ import annotations

import threading
from typing import Any

import pytest

from nuvom.job import Job, JobStatus
from nuvom.limits import concurrency_tag, rate_tag
from nuvom.records import ErrorInfo, Outcome

from .conftest import Backends

LEASE_SECS = 30.0
LIMITED = "conformance.limited"


def _job(name: str, func: str = LIMITED, **origin: Any) -> Job:
    return Job(func, id=name, args=(name,), origin=origin or None)


def _submit(backends: Backends, *jobs: Job) -> dict[str, str]:
    return backends.queue.submit(list(jobs), backends.results)


def _claim(backends: Backends, n: int = 100, worker: str = "w1") -> list[Job]:
    return backends.queue.claim(
        n, worker_id=worker, lease_secs=LEASE_SECS, results=backends.results
    )


def _settle(backends: Backends, job: Job, status: JobStatus = JobStatus.SUCCESS, *,
            retry_at: float | None = None) -> None:  # fmt: skip
    error = None if status is JobStatus.SUCCESS else ErrorInfo("ValueError", "broke")
    outcome = Outcome(job, status, result=1, error=error, worker_id=job.lease_owner or "w1",
                      finished_at=backends.clock.time(), retry_at=retry_at)  # fmt: skip
    backends.queue.settle([outcome], backends.results)


def _ids(jobs: list[Job]) -> list[str]:
    return sorted(job.id for job in jobs)


def _held(backends: Backends) -> dict[str, int]:
    counts: dict[str, int] = {}
    for row in backends.queue.queue_stats():
        for tag, count in row.held.items():
            counts[tag] = counts.get(tag, 0) + count
    return counts


# -- paused queues --------------------------------------------------------------------
def test_a_paused_queue_gives_claims_nothing_and_keeps_its_jobs(backends: Backends):
    queue = backends.queue
    assert queue.pause_queue("emails") is True, "a queue can be paused before it holds a job"
    assert queue.pause_queue("emails") is False, "pausing twice changes nothing"
    _submit(backends, Job("t", id="mail", queue="emails"), Job("t", id="other"))

    assert _ids(_claim(backends)) == ["other"]
    assert queue.qsize() == 1, "the paused queue's job still waits"
    assert queue.paused_queues() == ["emails"]
    rows = {row.queue: row for row in queue.queue_stats()}
    assert rows["emails"].paused
    assert rows["emails"].pending == 1
    assert not rows["default"].paused

    assert queue.pause_queue("emails", False) is True
    assert queue.paused_queues() == []
    assert _ids(_claim(backends)) == ["mail"]


def test_scheduled_retrying_and_expired_jobs_of_a_paused_queue_wait_too(backends: Backends):
    clock, queue = backends.clock, backends.queue
    now = clock.time()
    _submit(backends, Job("t", id="later", queue="q", due_at=now + 5),
            Job("t", id="failing", queue="q"), Job("t", id="lost", queue="q"))  # fmt: skip
    claimed = {job.id: job for job in _claim(backends)}
    assert sorted(claimed) == ["failing", "lost"]
    _settle(backends, claimed["failing"], JobStatus.RETRYING, retry_at=now + 1)
    queue.pause_queue("q")
    clock.advance(LEASE_SECS + 10)  # all due, and the lease of "lost" ran out

    assert _claim(backends, worker="w2") == []
    queue.pause_queue("q", False)
    assert _ids(_claim(backends, worker="w2")) == ["failing", "later", "lost"]


# -- rate limits ------------------------------------------------------------------------
def test_a_rate_limit_starts_a_burst_then_one_per_token(backends: Backends):
    clock = backends.clock
    _submit(backends, *[_job(f"r{i}", rate=[2.0, 2]) for i in range(5)])

    first = _claim(backends)
    assert _ids(first) == ["r0", "r1"], "a new bucket holds its burst"
    assert backends.queue.qsize() == 3, "held jobs keep waiting"
    assert backends.queue.hold_of("r2") == rate_tag(LIMITED)
    assert backends.queue.hold_of("r0") is None, "a claimed job carries no hold"
    assert _held(backends) == {rate_tag(LIMITED): 3}
    assert backends.results.get_status("r2") is JobStatus.PENDING
    assert _claim(backends) == [], "no token yet"

    clock.advance(0.5)  # one token at 2/s
    again = _claim(backends)
    assert _ids(again) == ["r2"]
    assert again[0].attempts == 1, "being held used no attempt"

    for job in first + again:
        _settle(backends, job)
    clock.advance(1000)  # a long quiet time fills the bucket to its burst, no more
    assert _ids(_claim(backends)) == ["r3", "r4"]


def test_a_bucket_never_holds_more_than_its_burst(backends: Backends):
    _submit(backends, *[_job(f"r{i}", rate=[1.0, 3]) for i in range(6)])
    backends.clock.advance(3600)
    assert len(_claim(backends)) == 3


def test_held_jobs_do_not_count_towards_a_claims_n(backends: Backends):
    limited = [_job(f"a{i}", rate=[1.0, 1]) for i in range(4)]
    free = [Job("conformance.free", id=f"b{i}") for i in range(3)]
    _submit(backends, *limited, *free)

    claimed = _claim(backends, n=3)
    assert _ids(claimed) == ["a0", "b0", "b1"], "the claim went on past the held jobs"
    assert all(backends.queue.hold_of(f"a{i}") == rate_tag(LIMITED) for i in (1, 2, 3))


def test_each_task_has_its_own_bucket(backends: Backends):
    _submit(backends, _job("x1", "task.x", rate=[1.0, 1]), _job("x2", "task.x", rate=[1.0, 1]),
            _job("y1", "task.y", rate=[1.0, 1]))  # fmt: skip
    assert _ids(_claim(backends)) == ["x1", "y1"]


# -- concurrency limits ---------------------------------------------------------------
def test_a_concurrency_limit_holds_jobs_until_a_slot_frees(backends: Backends):
    tag = concurrency_tag("export")
    _submit(backends, *[_job(f"c{i}", conc=["export", 2]) for i in range(5)])

    held = _claim(backends)
    assert _ids(held) == ["c0", "c1"]
    assert _claim(backends, worker="w2") == [], "both slots are taken"
    assert backends.queue.hold_of("c2") == tag
    assert _held(backends) == {tag: 3}

    _settle(backends, held[0])  # the ack frees a slot: the next is due at once
    assert _ids(_claim(backends, worker="w2")) == ["c2"]

    _settle(backends, held[1], JobStatus.RETRYING, retry_at=backends.clock.time() + 60)
    assert _ids(_claim(backends, worker="w2")) == ["c3"], "a nack frees its slot"


def test_each_freed_slot_wakes_another_held_job(backends: Backends):
    _submit(backends, *[_job(f"c{i}", conc=["k", 2]) for i in range(4)])
    held = _claim(backends)
    assert _ids(_claim(backends)) == [], "c2 and c3 are held"
    for job in held:  # two slots free before anyone claims: two held jobs wake, not one twice
        _settle(backends, job)
    assert _ids(_claim(backends, worker="w2")) == ["c2", "c3"]


def test_a_released_job_frees_its_slot(backends: Backends):
    _submit(backends, *[_job(f"c{i}", conc=["k", 1]) for i in range(2)])
    [first] = _claim(backends)
    backends.queue.release([first.id], worker_id="w1")
    assert len(_claim(backends, worker="w2")) == 1, "the release freed the slot"
    assert _claim(backends, worker="w3") == []


def test_a_slot_frees_when_its_lease_runs_out(backends: Backends):
    _submit(backends, *[_job(f"c{i}", conc=["k", 1]) for i in range(3)])
    assert _ids(_claim(backends)) == ["c0"]
    backends.clock.advance(LEASE_SECS + 1)  # its worker died
    assert len(_claim(backends, worker="w2")) == 1, "one slot: one job held, however many wait"


def test_concurrency_keys_are_limited_apart(backends: Backends):
    a, b = "export[tenant='a']", "export[tenant='b']"
    _submit(backends, _job("a1", conc=[a, 1]), _job("a2", conc=[a, 1]),
            _job("b1", conc=[b, 1]), _job("b2", conc=[b, 1]))  # fmt: skip
    assert _ids(_claim(backends)) == ["a1", "b1"]


def test_a_concurrency_hold_takes_no_token(backends: Backends):
    _submit(backends, *[_job(f"c{i}", conc=["k", 1], rate=[1.0, 2]) for i in range(3)])
    [first] = _claim(backends)
    assert _claim(backends) == []
    _settle(backends, first)
    assert len(_claim(backends)) == 1, "the held jobs left the bucket's second token"


def test_racing_claimers_never_exceed_a_concurrency_limit(backends: Backends):
    _submit(backends, *[_job(f"c{i:02}", conc=["k", 3]) for i in range(30)])
    got: list[str] = []
    lock = threading.Lock()
    start = threading.Barrier(4)

    def claimer(worker: str) -> None:
        start.wait()
        for _ in range(5):
            jobs = _claim(backends, n=2, worker=worker)
            with lock:
                got.extend(job.id for job in jobs)

    threads = [threading.Thread(target=claimer, args=(f"w{i}",)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert len(got) == 3
    assert len(set(got)) == 3


# -- unique keys ----------------------------------------------------------------------
def test_a_held_unique_key_stores_no_second_job(backends: Backends):
    assert _submit(backends, _job("u1", unique=["k", 0.0])) == {}
    assert _submit(backends, _job("u2", unique=["k", 0.0])) == {"u2": "u1"}
    assert backends.queue.qsize() == 1
    assert backends.queue.unique_holder("k") == "u1"
    assert backends.results.get_status("u2") in (None, JobStatus.CANCELLED), (
        "a duplicate is never recorded as waiting"
    )

    [claimed] = _claim(backends)
    assert _submit(backends, _job("u3", unique=["k", 0.0])) == {"u3": "u1"}, "held while it runs"
    _settle(backends, claimed, JobStatus.RETRYING, retry_at=backends.clock.time())
    assert _submit(backends, _job("u4", unique=["k", 0.0])) == {"u4": "u1"}, "and while it retries"
    [claimed] = _claim(backends)
    _settle(backends, claimed)

    assert backends.queue.unique_holder("k") is None, "let go when it finished"
    assert _submit(backends, _job("u5", unique=["k", 0.0])) == {}


def test_a_unique_key_is_kept_its_keep_secs_after_the_job_finished(backends: Backends):
    _submit(backends, _job("u1", unique=["k", 60.0]))
    [claimed] = _claim(backends)
    _settle(backends, claimed, JobStatus.FAILED)
    backends.clock.advance(30)
    assert _submit(backends, _job("u2", unique=["k", 60.0])) == {"u2": "u1"}
    backends.clock.advance(31)
    assert _submit(backends, _job("u3", unique=["k", 60.0])) == {}
    assert backends.queue.unique_holder("k") == "u3"


def test_cancelling_or_clearing_lets_a_unique_key_go(backends: Backends):
    _submit(backends, _job("u1", unique=["k", 600.0]))
    assert backends.queue.cancel_job("u1", backends.results)
    assert _submit(backends, _job("u2", unique=["k", 600.0])) == {}
    backends.queue.clear()
    assert _submit(backends, _job("u3", unique=["k", 600.0])) == {}


def test_one_batch_stores_one_job_per_unique_key(backends: Backends):
    duplicates = _submit(backends, _job("u1", unique=["k", 0.0]), _job("u2", unique=["k", 0.0]),
                         _job("v1", unique=["other", 0.0]))  # fmt: skip
    assert duplicates == {"u2": "u1"}
    assert backends.queue.qsize() == 2


def test_submitting_the_holder_again_is_not_a_duplicate(backends: Backends):
    _submit(backends, _job("u1", unique=["k", 0.0]))
    assert _submit(backends, _job("u1", unique=["k", 0.0])) == {}, "a retry of the job itself"


def test_racing_submits_of_one_key_store_one_job(backends: Backends):
    stored: list[str] = []
    lock = threading.Lock()
    start = threading.Barrier(6)

    def producer(n: int) -> None:
        start.wait()
        for i in range(10):
            job = _job(f"p{n}-{i}", unique=["race", 0.0])
            if not _submit(backends, job):
                with lock:
                    stored.append(job.id)

    threads = [threading.Thread(target=producer, args=(n,)) for n in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert len(stored) == 1
    assert backends.queue.qsize() == 1
    assert backends.queue.unique_holder("race") == stored[0]


# -- limits reach every way a job is stored -------------------------------------------
def test_a_released_workflow_member_keeps_its_limits(backends: Backends):
    first = Job("conformance.first", id="first")
    after = [Job(LIMITED, id=f"m{i}", origin={"workflow": "wf", "after": ["first"],
                                             "conc": ["members", 1]}) for i in range(2)]  # fmt: skip
    _submit(backends, first, *after)
    [claimed] = _claim(backends)
    _settle(backends, claimed)
    assert len(_claim(backends)) == 1, "the released members are limited like any job"


def test_a_fired_tick_keeps_its_limits(backends: Backends):
    from nuvom.records import Schedule, TickClaim

    now = backends.clock.time()
    schedule = Schedule(id="s", func_name=LIMITED, interval=1.0, next_run_at=now)
    backends.queue.save_schedule(schedule)
    jobs = [_job(f"t{i}", conc=["ticks", 1]) for i in range(2)]
    won = backends.queue.fire_ticks(
        [TickClaim("s", now + i, job, now + i + 1) for i, job in enumerate(jobs)]
    )
    assert won == [True, True]
    assert len(_claim(backends)) == 1


# -- holds from outside the store: a worker without a job's task version gives it back ----
def test_a_held_back_job_waits_with_its_tag_and_its_attempt_refunded(backends: Backends):
    from nuvom.backends.contract import Hold
    from nuvom.limits import version_tag

    _submit(backends, _job("v2", conc=["k", 1], unique=["u", 0.0]), _job("other", conc=["k", 1]))
    [job] = _claim(backends)
    assert job.id == "v2"
    due = backends.clock.time() + 5
    tag = version_tag(LIMITED, 2)
    given = backends.queue.hold([Hold("v2", tag, due)], worker_id="w1")
    assert given == ["v2"]
    assert backends.queue.hold([Hold("v2", tag, due)], worker_id="w1") == [], "no longer held"
    assert backends.queue.hold_of("v2") == tag
    assert _held(backends).get(tag) == 1
    assert backends.queue.unique_holder("u") == "v2", "it still holds its unique key"
    assert _ids(_claim(backends, worker="w2")) == ["other"], "its slot was freed; not due yet"
    _settle(backends, _claim_one_again(backends, "other"))
    backends.clock.advance(5)
    [again] = _claim(backends, worker="w3")
    assert again.id == "v2"
    assert again.attempts == 1, "being given back used no attempt"


@pytest.mark.parametrize("limits", [{}, {"conc": ["k", 5]}], ids=["plain", "limited"])
def test_a_claimer_passes_over_the_jobs_it_refused_and_leaves_them_to_others(
    backends: Backends, limits: dict[str, Any]
):
    """A rolling deploy's old worker gives a new version's job back once, refuses its tag,
    and its next claims go past it (not counted, not changed) while others take it."""
    from nuvom.backends.contract import Hold
    from nuvom.limits import version_tag

    tag = version_tag(LIMITED, 2)
    _submit(backends, _job("new", **limits), _job("old1", **limits), _job("old2", **limits))
    [job] = _claim(backends, n=1)
    assert job.id == "new"
    backends.queue.refuse([tag], worker_id="w1")
    assert backends.queue.hold([Hold("new", tag, backends.clock.time())], worker_id="w1")
    assert backends.queue.refused_by("w1") == {tag}
    assert backends.queue.refused_by("w2") == frozenset(), "refusals are the claimer's own"
    assert _ids(_claim(backends, n=1)) == ["old1"], "the refused job does not count towards n"
    assert _ids(_claim(backends, n=5)) == ["old2"]
    assert _claim(backends) == [], "w1 never takes it back"
    assert backends.queue.hold_of("new") == tag, "passed over, the job keeps its hold"
    [taken] = _claim(backends, worker="w2")
    assert taken.id == "new"
    assert taken.attempts == 1, "being given back and passed over used no attempt"


def _claim_one_again(backends: Backends, job_id: str) -> Job:
    return Job(LIMITED, id=job_id, lease_owner="w2", attempts=1)


def test_a_claim_gets_past_a_thousand_held_jobs(backends: Backends):
    """A burst worker takes an empty claim for an empty queue: the claim must reach the
    plain job behind many held ones (Redis once gave up after ~500)."""
    limited = [_job(f"r{i:04}", rate=[0.001, 1]) for i in range(1_200)]
    _submit(backends, *limited, Job("conformance.free", id="plain"))
    claimed = _claim(backends, n=4)
    assert "plain" in _ids(claimed)
