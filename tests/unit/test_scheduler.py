"""Timetables (anchored intervals, cron in a zone, DST), catch-up plans, the schedule
options of ``@task`` and ``.schedule()``, and the schedules declared in source.

Time is a ``FakeClock`` or plain numbers: nothing here sleeps.
"""

from __future__ import annotations

import datetime as dt
import itertools
import logging
from collections import Counter
from zoneinfo import ZoneInfo

import pytest

from nuvom import scheduler as timetables
from nuvom.clock import FakeClock
from nuvom.discovery.manifest import Manifest, TaskEntry
from nuvom.discovery.scanner import scan_source
from nuvom.discovery.schedules import declared_schedules
from nuvom.errors import SerializationError, TaskDefinitionError
from nuvom.options import (
    CATCHUPS,
    DEFAULT_MAX_CATCHUP,
    LITERAL_OPTIONS,
    OPTIONS,
    OVERLAPS,
    RUN_OPTIONS,
    SCHEDULE_OPTIONS,
)
from nuvom.records import Schedule
from nuvom.runtime import Runtime
from nuvom.scheduler import (
    Scheduler,
    check_timetable,
    declared_id,
    new_schedule,
    next_tick,
    plan,
)
from nuvom.task import task

START = 1_767_225_600.0  # 2026-01-01 00:00:00 UTC


def _at(zone: str, *fields: int) -> float:
    return dt.datetime(*fields, tzinfo=ZoneInfo(zone)).timestamp()  # type: ignore[misc]


def _ticks(schedule: Schedule, until: float) -> list[float]:
    ticks, tick = [], schedule.next_run_at
    while tick < until:
        ticks.append(tick)
        tick = next_tick(schedule, tick)
    return ticks


# -- intervals ------------------------------------------------------------------------
def test_interval_ticks_are_anchored_at_the_start_and_never_drift():
    schedule = new_schedule("t", interval=0.1, now=START)
    ticks = _ticks(schedule, START + 1000.05)

    assert schedule.anchor == START
    assert len(ticks) == 10_000
    for n, tick in enumerate(ticks, start=1):
        assert tick == pytest.approx(START + n * 0.1, abs=1e-6), f"tick {n} drifted"
    assert all(later > earlier for earlier, later in itertools.pairwise(ticks))


@pytest.mark.parametrize("step", [0.1, 0.3, 7.3, 1.0, 86400.0])
def test_no_two_interval_ticks_are_a_rounding_error_apart(step: float):
    """Each tick is anchor + n * step from its n, never "the last tick + step": those round
    apart, and a scheduler catching up would fire both."""
    for anchor in (1_796_135_684.6850247, 1_767_225_600.123456, START):
        schedule = new_schedule("t", interval=step, now=anchor)
        ticks = _ticks(schedule, anchor + 300 * step)
        gaps = [later - earlier for earlier, later in itertools.pairwise(ticks)]
        assert min(gaps) > step / 2, f"a tick twice with interval={step} from {anchor!r}"
        assert len(ticks) in (299, 300)


def test_a_late_pass_does_not_move_the_timetable():
    """Tick n is at anchor + n * interval, not "whenever the last one ran + interval"."""
    schedule = new_schedule("t", interval=60, now=START)
    assert schedule.next_run_at == START + 60
    assert next_tick(schedule, START + 60 + 59.9) == START + 120  # fired 59.9 s late
    assert next_tick(schedule, START + 120) == START + 180  # strictly after
    assert next_tick(schedule, START - 1000) == START - 960  # before the anchor, still on it


# -- cron -----------------------------------------------------------------------------
def test_cron_next_ticks():
    schedule = new_schedule("t", cron="*/15 * * * *", now=START + 7 * 60)
    assert _ticks(schedule, START + 3600) == [START + m * 60 for m in (15, 30, 45)]

    weekly = new_schedule("t", cron="0 9 * * MON", timezone="Europe/Berlin", now=START)
    first = dt.datetime.fromtimestamp(weekly.next_run_at, ZoneInfo("Europe/Berlin"))
    assert (first.date(), first.hour, first.minute) == (dt.date(2026, 1, 5), 9, 0)
    assert weekly.next_run_at == _at("UTC", 2026, 1, 5, 8, 0)  # CET is UTC+1 in January
    assert next_tick(weekly, weekly.next_run_at) == weekly.next_run_at + 7 * 86400


@pytest.mark.parametrize(
    ("zone", "spring", "fall"),
    [("Europe/Berlin", dt.date(2026, 3, 29), dt.date(2026, 10, 25)),
     ("America/New_York", dt.date(2026, 3, 8), dt.date(2026, 11, 1))],
)  # fmt: skip
def test_a_daily_0230_job_runs_once_on_each_dst_transition_day(
    zone: str, spring: dt.date, fall: dt.date
):
    tz = ZoneInfo(zone)
    schedule = new_schedule("t", cron="30 2 * * *", timezone=zone, now=_at(zone, 2026, 3, 1))
    ticks = _ticks(schedule, _at(zone, 2026, 11, 30))
    local = [dt.datetime.fromtimestamp(t, tz) for t in ticks]
    per_day = Counter(d.date() for d in local)

    assert per_day[spring] == 1
    assert per_day[fall] == 1
    assert set(per_day.values()) == {1}, "never twice on a day, whatever the clocks do"
    assert len(per_day) == (dt.date(2026, 11, 29) - dt.date(2026, 3, 1)).days + 1, "no day missed"
    (skipped_to,) = [d for d in local if d.date() == spring]  # 02:30 does not exist that night
    assert (skipped_to.hour, skipped_to.minute) == (3, 0)
    (after_fall,) = [d for d in local if d.date() == fall]
    assert (after_fall.hour, after_fall.minute) == (2, 30)
    assert all((d.hour, d.minute) == (2, 30) for d in local if d.date() not in (spring, fall))


def test_a_daily_job_in_the_repeated_hour_runs_once():
    """01:30 happens twice in New York on 2026-11-01; cron runs it once."""
    zone = "America/New_York"
    schedule = new_schedule("t", cron="30 1 * * *", timezone=zone, now=_at(zone, 2026, 10, 31))
    ticks = _ticks(schedule, _at(zone, 2026, 11, 3))
    days = [dt.datetime.fromtimestamp(t, ZoneInfo(zone)).date() for t in ticks]
    assert days == [dt.date(2026, 10, 31), dt.date(2026, 11, 1), dt.date(2026, 11, 2)]


def test_an_interval_counts_real_seconds_across_dst():
    zone = "Europe/Berlin"
    schedule = new_schedule("t", interval=3600, timezone=zone, now=_at(zone, 2026, 3, 29, 0))
    ticks = _ticks(schedule, _at(zone, 2026, 3, 29, 6))
    assert [b - a for a, b in itertools.pairwise(ticks)] == [3600.0] * (len(ticks) - 1)
    assert len(ticks) == 4  # 01:00, 03:00 (02:00 is skipped), 04:00, 05:00 local


# -- bad input ------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("cron", "field"),
    [("61 * * * *", "minute"), ("* 24 * * *", "hour"), ("* * 32 * *", "day-of-month"),
     ("* * * 13 *", "month"), ("* * * * 8", "day-of-week"), ("* * * *", "4 fields")],
)  # fmt: skip
def test_a_bad_cron_expression_names_the_field(cron: str, field: str):
    with pytest.raises(TaskDefinitionError, match=field):
        check_timetable(cron=cron)
    with pytest.raises(TaskDefinitionError, match=field):
        task(cron=cron)(lambda: None)


@pytest.mark.parametrize("interval", [0, -1, 0.0, float("nan"), float("inf"), "60", True])
def test_an_interval_must_be_a_positive_number_of_seconds(interval: object):
    with pytest.raises(TaskDefinitionError, match="interval"):
        check_timetable(interval=interval)
    with pytest.raises(TaskDefinitionError, match="interval"):
        task(interval=interval)(lambda: None)


def test_an_unknown_timezone_is_refused():
    with pytest.raises(TaskDefinitionError, match="unknown timezone 'Mars/Olympus'"):
        check_timetable(cron="* * * * *", timezone="Mars/Olympus")
    with pytest.raises(TaskDefinitionError, match="task option timezone: unknown timezone"):
        task(cron="* * * * *", timezone="Mars/Olympus")(lambda: None)


def test_cron_and_interval_together_are_refused():
    with pytest.raises(TaskDefinitionError, match="exactly one"):
        check_timetable(cron="* * * * *", interval=5)
    with pytest.raises(TaskDefinitionError, match="cron and interval are both given"):
        task(cron="* * * * *", interval=5)(lambda: None)
    with pytest.raises(TaskDefinitionError, match="exactly one"):
        check_timetable()


@pytest.mark.parametrize(
    ("option", "value"), [("overlap", "never"), ("catchup", "some"), ("max_catchup", 0)]
)
def test_schedule_policies_are_checked_at_declaration(option: str, value: object):
    with pytest.raises(TaskDefinitionError, match=option):
        task(interval=5, **{option: value})(lambda: None)


def test_the_schedule_options_are_literals_and_agree_with_the_scheduler():
    assert set(SCHEDULE_OPTIONS) <= LITERAL_OPTIONS
    assert not set(SCHEDULE_OPTIONS) & {o.name for o in RUN_OPTIONS}
    assert (OVERLAPS, CATCHUPS) == (timetables.OVERLAPS, timetables.CATCHUPS)
    assert DEFAULT_MAX_CATCHUP == timetables.DEFAULT_MAX_CATCHUP
    made = new_schedule("t", interval=1, now=0)
    for name in ("timezone", "overlap", "catchup", "max_catchup"):
        assert OPTIONS[name].default == getattr(made, name), name

    @task(interval=30, overlap="skip")
    def sync_inventory() -> None: ...

    assert (sync_inventory.interval, sync_inventory.cron) == (30, None)
    assert (sync_inventory.overlap, sync_inventory.catchup) == ("skip", "latest")
    assert (sync_inventory.timezone, sync_inventory.max_catchup) == ("UTC", 100)


# -- catch-up plans -------------------------------------------------------------------
def _behind(catchup: str, *, max_catchup: int = DEFAULT_MAX_CATCHUP) -> Schedule:
    """An interval=10 schedule from START: ``_now(n)`` is when n of its ticks are due."""
    return new_schedule("t", interval=10, catchup=catchup, max_catchup=max_catchup, now=START)


def _now(missed: int) -> float:
    return START + 10 * missed + 5


def test_plan_latest_fires_the_last_missed_tick_once():
    assert plan(_behind("latest"), _now(5)) == [(START + 50, True, START + 60)]


def test_plan_all_fires_every_missed_tick_in_order():
    planned = plan(_behind("all"), _now(5))
    assert planned == [(START + 10 * n, True, START + 10 * (n + 1)) for n in range(1, 6)]


def test_plan_none_claims_the_last_tick_without_a_run():
    assert plan(_behind("none"), _now(5)) == [(START + 50, False, START + 60)]


def test_plan_all_keeps_only_the_last_max_catchup():
    planned = plan(_behind("all", max_catchup=3), _now(5))
    assert [(tick, runs) for tick, runs, _ in planned] == [
        (START + 30, True), (START + 40, True), (START + 50, True)
    ]  # fmt: skip
    assert planned[-1][2] == START + 60


@pytest.mark.parametrize("catchup", CATCHUPS)
def test_plan_of_one_due_tick_runs_it_and_of_none_is_empty(catchup: str):
    schedule = _behind(catchup)
    assert plan(schedule, START + 9.99) == []
    assert plan(schedule, START + 10) == [(START + 10, True, START + 20)]


@pytest.mark.parametrize(("catchup", "runs"), [("latest", 1), ("all", 5), ("none", 0)])
def test_a_scheduler_back_after_five_ticks_catches_up_by_policy(
    fake_runtime: Runtime, fake_clock: FakeClock, catchup: str, runs: int
):
    queue, results = fake_runtime.queue, fake_runtime.results
    schedule = new_schedule("t", interval=1, catchup=catchup, now=fake_clock.time())
    queue.save_schedule(schedule)
    fake_clock.advance(5.5)  # down for ticks 1..5

    assert Scheduler(queue, results, fake_clock).run_once() == runs
    assert queue.qsize() == runs
    (stored,) = queue.list_schedules()
    assert stored.next_run_at == schedule.anchor + 6
    assert Scheduler(queue, results, fake_clock).run_once() == 0, "each tick is claimed once"


def test_a_pass_fires_every_due_schedule_in_one_call_and_records_the_jobs_at_once(
    fake_runtime: Runtime, fake_clock: FakeClock
):
    queue, results = fake_runtime.queue, fake_runtime.results
    for i in range(30):
        queue.save_schedule(new_schedule("t", args=[i], interval=10, now=fake_clock.time()))
    calls: list[int] = []
    fire_ticks, record_fired = queue.fire_ticks, results.record_fired

    def counted_fire(claims):  # type: ignore[no-untyped-def]
        calls.append(len(claims))
        return fire_ticks(claims)

    recorded: list[int] = []

    def counted_record(jobs):  # type: ignore[no-untyped-def]
        recorded.append(len(jobs))
        return record_fired(jobs)

    queue.fire_ticks, results.record_fired = counted_fire, counted_record  # type: ignore[method-assign]
    fake_clock.advance(10)

    assert Scheduler(queue, results, fake_clock).run_once() == 30
    assert (calls, recorded) == ([30], [30])


def test_a_schedule_whose_job_the_store_refuses_is_logged_and_the_others_fire(
    fake_runtime: Runtime, fake_clock: FakeClock, caplog: pytest.LogCaptureFixture
):
    queue, results = fake_runtime.queue, fake_runtime.results
    good = [new_schedule("t", args=[i], interval=10, now=fake_clock.time()) for i in range(3)]
    bad = new_schedule("t", args=["poison"], interval=10, now=fake_clock.time())
    for schedule in (*good, bad):
        queue.save_schedule(schedule)
    fire_ticks = queue.fire_ticks

    def refusing(claims):  # type: ignore[no-untyped-def]  # as a batching engine: all or nothing
        if any(c.job is not None and c.job.args == ["poison"] for c in claims):
            raise SerializationError("job args cannot be encoded: poison")
        return fire_ticks(claims)

    queue.fire_ticks = refusing  # type: ignore[method-assign]
    fake_clock.advance(10)

    with caplog.at_level(logging.ERROR, logger="nuvom"):
        assert Scheduler(queue, results, fake_clock).run_once() == 3
    assert queue.qsize() == 3
    assert f"schedule {bad.id}: its job cannot be stored" in caplog.text
    stored = {s.id: s for s in queue.list_schedules()}
    assert stored[bad.id].next_run_at == bad.next_run_at, "its tick waits for a fix"


# -- Task.schedule --------------------------------------------------------------------
def test_schedule_with_an_interval_or_cron_stores_a_recurring_schedule(
    fake_runtime: Runtime, fake_clock: FakeClock
):
    @task(queue="reports", priority=3, overlap="skip", timezone="Europe/Berlin")
    def add(x: int, y: int) -> int:
        return x + y

    every = add.schedule(2, 3, interval=300)
    assert isinstance(every, Schedule)
    assert (every.func_name, every.args, every.kwargs) == ("add", [2, 3], {})
    assert (every.interval, every.next_run_at) == (300.0, fake_clock.time() + 300)
    assert (every.queue, every.priority, every.overlap) == ("reports", 3, "skip")
    assert every.timezone == "Europe/Berlin"
    assert every.declared is False

    five = add.schedule(1, 2, cron="*/5 * * * *", timezone_name="UTC")
    spelled = add.schedule(1, y=2, cron="0 9 * * MON", timezone="Europe/Berlin", catchup="all")
    delta = add.schedule(0, 0, interval=dt.timedelta(minutes=2), overlap="allow", max_catchup=7)
    assert (five.cron, five.timezone) == ("*/5 * * * *", "UTC")
    assert (spelled.kwargs, spelled.timezone, spelled.catchup) == ({"y": 2}, "Europe/Berlin", "all")
    assert (delta.interval, delta.overlap, delta.max_catchup) == (120.0, "allow", 7)
    stored = {s.id: s for s in fake_runtime.queue.list_schedules()}
    assert stored == {s.id: s for s in (every, five, spelled, delta)}
    assert fake_runtime.queue.qsize() == 0, "nothing runs before the first tick"


def test_schedule_at_or_in_stays_a_one_off_job(fake_runtime: Runtime, fake_clock: FakeClock):
    @task
    def remind(who: str) -> str:
        return who

    handle = remind.schedule("ada", in_=dt.timedelta(seconds=30))
    assert handle.due_at == fake_clock.time() + 30
    at = remind.schedule(
        "bob", at=dt.datetime.fromtimestamp(fake_clock.time() + 5, dt.timezone.utc)
    )
    assert at.due_at == fake_clock.time() + 5
    assert fake_runtime.queue.list_schedules() == []


@pytest.mark.parametrize(
    ("timing", "named"),
    [({"in_": 5, "interval": 5}, "in_= and interval="),
     ({"at": START, "cron": "* * * * *"}, "at= and cron="),
     ({"interval": 5, "cron": "* * * * *"}, "interval= and cron="),
     ({"at": START, "in_": 1}, "at= and in_=")],
)  # fmt: skip
def test_two_timings_at_once_are_refused_by_name(
    fake_runtime: Runtime, timing: dict[str, object], named: str
):
    @task
    def ping() -> None: ...

    with pytest.raises(TaskDefinitionError, match=named):
        ping.schedule(**timing)  # type: ignore[call-overload]
    assert fake_runtime.queue.list_schedules() == []
    assert fake_runtime.queue.qsize() == 0


def test_bad_recurring_schedules_are_refused_and_store_nothing(fake_runtime: Runtime):
    @task
    def ping(value: object = None) -> None: ...

    with pytest.raises(TaskDefinitionError, match="unknown timezone"):
        ping.schedule(cron="* * * * *", timezone="Nope/Nowhere")
    with pytest.raises(TaskDefinitionError, match="disagree"):
        ping.schedule(cron="* * * * *", timezone="UTC", timezone_name="Europe/Berlin")
    with pytest.raises(TaskDefinitionError, match="bad minute"):
        ping.schedule(cron="99 * * * *")
    with pytest.raises(TaskDefinitionError, match="interval must be > 0"):
        ping.schedule(interval=0)
    with pytest.raises(TaskDefinitionError, match="timezone= applies to recurring"):
        ping.schedule(in_=5, timezone="UTC")  # type: ignore[call-overload]
    with pytest.raises(SerializationError, match="argument 'value'"):
        ping.schedule(value=object(), interval=5)
    assert fake_runtime.queue.list_schedules() == []
    assert fake_runtime.queue.qsize() == 0


# -- schedules declared in source -----------------------------------------------------
DECLARED = """
from nuvom import task

CRON = "* * * * *"

@task(interval=60, queue="ops", priority=2)
def every_minute(): ...

@task(cron="0 9 * * MON", timezone="Europe/Berlin", overlap="skip", catchup="none")
def weekly_report(): ...

@task(retries=2)
def plain(): ...

@task(cron=CRON)
def computed(): ...

@task(interval=30, timezone=CRON)
def computed_zone(): ...

@task(cron="99 * * * *")
def broken(): ...
"""


def _entries(source: str = DECLARED) -> list[TaskEntry]:
    return scan_source(source, module="tasks", file="tasks.py").tasks


def test_declared_schedules_come_from_the_manifest_with_stable_ids(
    caplog: pytest.LogCaptureFixture,
):
    with caplog.at_level(logging.ERROR, logger="nuvom.discovery"):
        found = {s.func_name: s for s in declared_schedules(_entries(), START)}

    assert set(found) == {"every_minute", "weekly_report"}
    minute, weekly = found["every_minute"], found["weekly_report"]
    assert minute.id == declared_id("every_minute", cron=None, interval=60.0, timezone="UTC")
    assert (minute.interval, minute.next_run_at, minute.declared) == (60.0, START + 60, True)
    assert (minute.queue, minute.priority, minute.args, minute.kwargs) == ("ops", 2, [], {})
    assert weekly.id == declared_id(
        "weekly_report", cron="0 9 * * MON", interval=None, timezone="Europe/Berlin"
    )
    assert (weekly.overlap, weekly.catchup, weekly.queue, weekly.priority) == (
        "skip", "none", "default", 0
    )  # fmt: skip
    logged = caplog.text
    assert "tasks.py:19: task computed_zone declares no schedule: timezone= not a literal" in logged
    assert "tasks.py:22: task broken declares no schedule" in logged
    assert "bad minute" in logged
    assert "computed declares no schedule: cron= not a literal" in logged
    again = declared_schedules(Manifest(root=".", tasks=_entries()), START + 999)
    assert sorted(s.id for s in again) == sorted(s.id for s in found.values()), "same ids later"


def test_a_computed_timetable_is_a_discovery_warning():
    warnings = scan_source(DECLARED, module="tasks", file="tasks.py").warnings
    assert [w.split(":")[0] for w in warnings] == ["line 16", "line 19"]
    assert "cron= is not a literal" in warnings[0]
    assert "timezone= is not a literal" in warnings[1]
    assert "schedules are read from source" in warnings[0]


def test_one_declaration_whatever_way_the_interval_is_written_or_how_often_declared():
    first = "from nuvom import task\n@task(interval=60)\ndef beat(): ...\n"
    second = "from nuvom import task\n@task(interval=60.0)\ndef beat(): ...\n"
    (a,) = declared_schedules(_entries(first), START)
    (b,) = declared_schedules(_entries(second) + _entries(first), START)
    assert a.id == b.id
    plain_first = _entries("from nuvom import task\n@task\ndef beat(): ...\n") + _entries(first)
    assert declared_schedules(plain_first, START) == [], "workers load the first declaration"


def test_syncing_the_declared_schedules_again_changes_nothing(
    fake_runtime: Runtime, fake_clock: FakeClock
):
    queue, results = fake_runtime.queue, fake_runtime.results
    scheduler = Scheduler(queue, results, fake_clock)
    scheduler.sync_declared(declared_schedules(_entries(), fake_clock.time()))
    before = queue.list_schedules()
    fake_clock.advance(30)
    Scheduler(queue, results, fake_clock).sync_declared(
        declared_schedules(_entries(), fake_clock.time())
    )

    assert queue.list_schedules() == before, "a second worker's start moves nothing"
    assert len(before) == 2


def test_the_listing_reads_timetables_and_times_as_people_write_them():
    from nuvom.cli.schedules_cmd import every, relative

    assert [every(s) for s in (30, 90, 300, 7200, 86400, 0.5)] == [
        "every 30s", "every 90s", "every 5m", "every 2h", "every 1d", "every 0.5s"
    ]  # fmt: skip
    assert relative(None, START) == "-"
    assert relative(START + 252, START) == "in 4m12s"
    assert relative(START - 3725, START) == "1h2m ago", "overdue: no scheduler is running"
    assert relative(START + 0.2, START) == "now"
