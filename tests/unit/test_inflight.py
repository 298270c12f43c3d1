"""``InFlight`` wakes the watchdog only for a deadline earlier than its next look, and the
dispatcher once for a run of outcomes, not once per job."""

from __future__ import annotations

import time

from nuvom.clock import FakeClock
from nuvom.events import EventBus
from nuvom.execution.inflight import InFlight
from nuvom.job import Job, JobStatus
from nuvom.records import Outcome


def _held(*jobs: Job) -> InFlight:
    held = InFlight(FakeClock(), EventBus(), "w")
    held.add(jobs)
    return held


def test_a_deadline_before_the_watchdogs_next_look_wakes_it_and_a_later_one_does_not():
    early, late, later = Job("t.a"), Job("t.b"), Job("t.c")
    held = _held(early, late, later)
    held.past_deadline(time.monotonic(), look_by=time.monotonic() + 100)
    held.begin(late, executor="x", timeout_secs=1000)
    assert not held.watch.is_set(), "its deadline comes after the next look"
    held.begin(early, executor="x", timeout_secs=1)
    assert held.watch.is_set(), "the watchdog must look before its next planned look"

    held.watch.clear()
    held.past_deadline(time.monotonic())  # no look planned: every deadline wakes it
    held.begin(later, executor="x", timeout_secs=1000)
    assert held.watch.is_set()


def test_the_next_look_counts_the_earliest_deadline_already_held():
    first, second = Job("t.a"), Job("t.b")
    held = _held(first, second)
    held.begin(first, executor="x", timeout_secs=5)
    held.watch.clear()
    held.past_deadline(time.monotonic(), look_by=time.monotonic() + 100)
    held.begin(second, executor="x", timeout_secs=50)
    assert not held.watch.is_set(), "the watchdog looks at 5 s anyway"


def test_outcomes_reported_before_the_dispatcher_looks_are_all_taken():
    jobs = [Job("t.a") for _ in range(3)]
    held = _held(*jobs)
    for job in jobs:
        running = held.begin(job, executor="x", timeout_secs=None)
        assert running is not None
        held.report(running, Outcome(job, JobStatus.SUCCESS))
    assert held.wake.is_set()
    held.wake.clear()
    assert [o.job.id for o in held.take_outcomes([])] == [job.id for job in jobs]
