"""The schedule primitives of the backend contract, on every engine.

``fire_tick`` is the heart: a tick is claimed once, in the same atomic step as its
job's enqueue, whoever races for it. The scheduler's catch-up and overlap policies
run on top, with the ``FakeClock`` moved instead of sleeping.
"""

from __future__ import annotations

import threading
from dataclasses import replace

import pytest

from nuvom.job import Job, JobStatus
from nuvom.records import Outcome, TickClaim
from nuvom.scheduler import Scheduler, declared_id, new_schedule, tick_job_id

from .conftest import Backends

LEASE_SECS = 30.0
RACERS = 8


def _interval(backends: Backends, secs: float = 10.0, **options: object):
    return new_schedule("conformance.task", args=[1], interval=secs, now=backends.clock.time(),
                        **options)  # type: ignore[arg-type]  # fmt: skip


def _claim_all(backends: Backends) -> list[Job]:
    return backends.queue.pop_batch(100, worker_id="w1", lease_secs=LEASE_SECS)


def test_schedules_are_saved_listed_paused_and_removed(backends: Backends):
    first, second = _interval(backends), _interval(backends, 60.0)
    queue = backends.queue
    queue.save_schedule(first)
    queue.save_schedule(second)

    assert sorted(s.id for s in queue.list_schedules()) == sorted([first.id, second.id])
    (stored,) = [s for s in queue.list_schedules() if s.id == first.id]
    assert stored == first, "every field comes back as saved"

    assert queue.pause_schedule(first.id, True) is True
    assert [s.paused for s in queue.list_schedules() if s.id == first.id] == [True]
    assert queue.pause_schedule("no-such-schedule", True) is False
    assert queue.remove_schedule(second.id) is True
    assert queue.remove_schedule(second.id) is False
    assert [s.id for s in queue.list_schedules()] == [first.id]


def test_due_schedules_are_the_unpaused_ones_whose_time_came(backends: Backends):
    queue, now = backends.queue, backends.clock.time()
    soon, later, paused = (_interval(backends, secs) for secs in (5.0, 20.0, 1.0))
    for schedule in (soon, later, paused):
        queue.save_schedule(schedule)
    queue.pause_schedule(paused.id, True)

    assert queue.due_schedules(now, 10) == []
    assert queue.next_schedule_at() == soon.next_run_at
    backends.clock.advance(30)
    assert [s.id for s in queue.due_schedules(backends.clock.time(), 10)] == [soon.id, later.id]
    assert [s.id for s in queue.due_schedules(backends.clock.time(), 1)] == [soon.id]


def test_a_tick_fires_once_with_its_job_and_moves_the_schedule_on(backends: Backends):
    queue = backends.queue
    schedule = _interval(backends)
    queue.save_schedule(schedule)
    tick = schedule.next_run_at
    job = Job("conformance.task", args=(1,), id=tick_job_id(schedule.id, tick))

    assert queue.fire_tick(schedule.id, tick, job=job, next_run_at=tick + 10) is True
    assert queue.fire_tick(schedule.id, tick, job=job, next_run_at=tick + 10) is False
    assert queue.fire_tick(schedule.id, tick - 10, job=job, next_run_at=tick) is False, "stale"

    (stored,) = queue.list_schedules()
    assert (stored.next_run_at, stored.last_run_at, stored.last_job_id) == (tick + 10, tick, job.id)
    assert [claimed.id for claimed in _claim_all(backends)] == [job.id]


def test_a_skipped_tick_moves_the_schedule_on_and_enqueues_nothing(backends: Backends):
    queue = backends.queue
    schedule = replace(_interval(backends), last_job_id="earlier-job")
    queue.save_schedule(schedule)
    tick = schedule.next_run_at

    assert queue.fire_tick(schedule.id, tick, job=None, next_run_at=tick + 10) is True

    (stored,) = queue.list_schedules()
    assert (stored.next_run_at, stored.last_job_id) == (tick + 10, "earlier-job")
    assert queue.qsize() == 0


def test_a_paused_or_removed_schedule_fires_nothing(backends: Backends):
    queue = backends.queue
    paused, removed = _interval(backends), _interval(backends)
    for schedule in (paused, removed):
        queue.save_schedule(schedule)
    queue.pause_schedule(paused.id, True)
    queue.remove_schedule(removed.id)

    for schedule in (paused, removed):
        job = Job("conformance.task", id=tick_job_id(schedule.id, schedule.next_run_at))
        fired = queue.fire_tick(schedule.id, schedule.next_run_at, job=job, next_run_at=1e12)
        assert fired is False
    assert queue.qsize() == 0


def test_racing_schedulers_fire_a_tick_exactly_once(backends: Backends):
    queue = backends.queue
    schedule = _interval(backends)
    queue.save_schedule(schedule)
    tick = schedule.next_run_at
    start, wins = threading.Barrier(RACERS), []

    def race() -> None:
        job = Job("conformance.task", id=tick_job_id(schedule.id, tick))
        start.wait()
        wins.append(queue.fire_tick(schedule.id, tick, job=job, next_run_at=tick + 10))

    threads = [threading.Thread(target=race) for _ in range(RACERS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)

    assert sorted(wins) == [False] * (RACERS - 1) + [True]
    assert len(_claim_all(backends)) == 1


def test_a_batch_of_claims_is_taken_by_schedule_then_tick_each_on_its_own(backends: Backends):
    queue, clock = backends.queue, backends.clock
    a, paused, stale, skipped = (_interval(backends) for _ in range(4))
    for schedule in (a, paused, stale, skipped):
        queue.save_schedule(schedule)
    queue.pause_schedule(paused.id, True)
    clock.advance(25)
    t = a.next_run_at

    def claim(schedule, tick: float, *, job: bool = True, following: float | None = None):
        made = Job("conformance.task", id=tick_job_id(schedule.id, tick)) if job else None
        return TickClaim(schedule.id, tick, made, tick + 10 if following is None else following)

    claims = [
        claim(a, t + 10),  # given first, taken after t: it sees t's move and wins too
        claim(a, t),
        claim(a, t),  # the same tick twice: the second is already claimed
        claim(paused, t),
        claim(stale, t - 10),  # before its next_run_at
        claim(skipped, t, job=False),
        TickClaim("no-such-schedule", t, None, t + 10),
        claim(a, t + 15),  # before the t + 20 that t + 10 moved it to: stale
        claim(a, t + 20, following=t + 30),
    ]
    won = queue.fire_ticks(claims)
    assert won == [True, True, False, False, False, True, False, False, True]

    stored = {s.id: s for s in queue.list_schedules()}
    assert (stored[a.id].next_run_at, stored[a.id].last_run_at) == (t + 30, t + 20)
    assert stored[a.id].last_job_id == tick_job_id(a.id, t + 20)
    assert stored[paused.id].next_run_at == paused.next_run_at
    assert stored[skipped.id].next_run_at == t + 10
    queued = sorted(job.id for job in _claim_all(backends))
    assert queued == sorted(tick_job_id(a.id, tick) for tick in (t, t + 10, t + 20))
    assert queue.fire_ticks([]) == []


def test_racing_batches_fire_each_tick_exactly_once(backends: Backends):
    import random

    queue = backends.queue
    schedules = [_interval(backends) for _ in range(20)]
    for schedule in schedules:
        queue.save_schedule(schedule)
    start, wins = threading.Barrier(4), []

    def race(seed: int) -> None:
        claims = [
            TickClaim(s.id, s.next_run_at, Job("conformance.task",
                      id=tick_job_id(s.id, s.next_run_at)), s.next_run_at + 10)
            for s in schedules
        ]  # fmt: skip
        random.Random(seed).shuffle(claims)  # each racer lists them in its own order
        start.wait()
        won = queue.fire_ticks(claims)
        wins.extend(c.schedule_id for c, w in zip(claims, won, strict=True) if w)

    threads = [threading.Thread(target=race, args=(seed,)) for seed in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)

    assert sorted(wins) == sorted(s.id for s in schedules), "each tick won once"
    assert len(_claim_all(backends)) == len(schedules)


# -- the scheduler on each engine ----------------------------------------------------
@pytest.mark.parametrize(("catchup", "runs"), [("latest", 1), ("all", 5), ("none", 0)])
def test_after_downtime_the_catchup_policy_decides(backends: Backends, catchup, runs):
    schedule = _interval(backends, 1.0, catchup=catchup)
    backends.queue.save_schedule(schedule)
    scheduler = Scheduler(backends.queue, backends.results, backends.clock)
    backends.clock.advance(5.5)  # ticks 1..5 came and went with no scheduler running

    first = scheduler.run_once()
    again = scheduler.run_once()

    assert (first, again) == (runs, 0)
    assert len(_claim_all(backends)) == runs
    (stored,) = backends.queue.list_schedules()
    assert stored.next_run_at == schedule.anchor + 6.0, "anchored: no drift"


def test_overlap_skip_runs_no_tick_while_the_last_one_is_unfinished(backends: Backends):
    schedule = _interval(backends, 1.0, overlap="skip")
    backends.queue.save_schedule(schedule)
    scheduler = Scheduler(backends.queue, backends.results, backends.clock)
    backends.clock.advance(1.0)
    assert scheduler.run_once() == 1
    (running,) = backends.queue.claim(1, worker_id="w1", lease_secs=LEASE_SECS,
                                      results=backends.results)  # fmt: skip

    backends.clock.advance(1.0)
    assert scheduler.run_once() == 0, "the previous tick's job still runs"
    backends.queue.settle(
        [Outcome(running, JobStatus.SUCCESS, worker_id="w1", finished_at=backends.clock.time())],
        backends.results,
    )
    backends.clock.advance(1.0)
    assert scheduler.run_once() == 1


def test_declared_schedules_are_upserted_once_and_retired_when_gone(backends: Backends):
    now = backends.clock.time()
    sid = declared_id("conformance.task", cron=None, interval=30.0, timezone="UTC")
    declared = new_schedule("conformance.task", interval=30.0, now=now, schedule_id=sid,
                            declared=True)  # fmt: skip
    scheduler = Scheduler(backends.queue, backends.results, backends.clock)

    scheduler.sync_declared([declared])
    backends.queue.pause_schedule(sid, True)
    backends.clock.advance(100)
    again = new_schedule("conformance.task", interval=30.0, now=backends.clock.time(),
                         schedule_id=sid, declared=True)  # fmt: skip
    scheduler.sync_declared([again])  # a second worker starting later

    (stored,) = backends.queue.list_schedules()
    assert (stored.id, stored.paused, stored.next_run_at) == (sid, True, declared.next_run_at)
    scheduler.sync_declared([])
    assert backends.queue.list_schedules() == []


def test_a_fired_ticks_record_never_resets_one_a_worker_wrote(backends: Backends):
    done = Job("conformance.task", id=tick_job_id("s", 1.0))
    fresh = Job("conformance.task", id=tick_job_id("s", 2.0))
    backends.results.set_result(done.id, 5)  # a worker ran it before the scheduler recorded it

    backends.results.record_fired([done, fresh])

    assert backends.results.get_status(done.id) is JobStatus.SUCCESS
    assert backends.results.get_result(done.id) == 5
    assert backends.results.get_status(fresh.id) is JobStatus.PENDING
