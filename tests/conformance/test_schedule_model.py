"""Model-based test of the schedule primitives, on all five engines.

Hypothesis saves (creates or replaces), pauses, resumes and removes schedules and fires
ticks from several schedulers, each its own queue object on the same store where the
engine has one (its own connection, pool or client), with the tick it last read (maybe
stale by now), the schedule's current one, one before it, a later one (a catch-up to the
latest) or one already claimed; now and then all schedulers race on one tick from
threads, or one fires a batch of ticks in one ``fire_ticks``. It moves the ``FakeClock``
instead of sleeping. A tiny model predicts every answer, and after every step: each
(schedule, tick) enqueued at most one job, no stale, paused or removed fire won,
``next_run_at`` never moved back but by a save, the queue holds exactly the jobs of the
winning fires, and the stored schedules, the due ones and the next due time are the
model's.
"""

from __future__ import annotations

import shutil
import tempfile
import threading
from collections import Counter
from dataclasses import dataclass, field, replace
from pathlib import Path

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from nuvom.backends.contract import TICKS_KEPT_SECS, claim_order
from nuvom.clock import FakeClock
from nuvom.job import Job
from nuvom.queue_backends.base import BaseJobQueue
from nuvom.queue_backends.file_queue import FileJobQueue
from nuvom.queue_backends.memory_queue import MemoryJobQueue
from nuvom.queue_backends.sqlite_queue import SQLiteJobQueue
from nuvom.records import Schedule, TickClaim
from nuvom.scheduler import new_schedule, tick_job_id

SCHEDULE_IDS = ("s1", "s2", "s3")
SCHEDULERS = 3  # queue objects firing ticks; on a shared store, each its own
INTERVALS = (1.0, 2.5, 60.0)
TICK_CHOICES = ("read", "fresh", "earlier", "later", "claimed")
MACHINE_SETTINGS = settings(
    max_examples=100,
    stateful_step_count=40,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
)


@dataclass
class ModelSchedule:
    """What the store must hold for one schedule, and the ticks it claimed."""

    stored: Schedule
    incarnation: int  # saved again after a removal: a new schedule under the same id
    claimed: set[float] = field(default_factory=set)
    # Ticks claimed before the schedule was removed and saved anew: the contract does not
    # say whether removal forgets them, so a fire at one may win or lose (once only).
    unknown: set[float] = field(default_factory=set)


class ScheduleMachine(RuleBasedStateMachine):
    """The model; subclasses say which backend it is checked against."""

    def __init__(self) -> None:
        super().__init__()
        self.clock = FakeClock()
        self.folder = Path(tempfile.mkdtemp(prefix="nuvom-schedule-model-"))
        self.queue = self.build(self.folder, self.clock)
        self.schedulers = [self.queue]
        for _ in range(SCHEDULERS - 1):
            self.schedulers.append(self.peer(self.folder, self.clock))
        self.model: dict[str, ModelSchedule] = {}
        self.incarnations: Counter[str] = Counter()
        self.removed_ticks: dict[str, set[float]] = {}
        self.last_known: dict[str, Schedule] = {}  # each id's last state, kept after removal
        self.views: list[dict[str, Schedule]] = [{} for _ in range(SCHEDULERS)]
        self.wins: Counter[tuple[str, int, float]] = Counter()
        self.enqueued: list[str] = []  # job ids of the winning fires that had a job
        self.floor: dict[str, float] = {}  # the next_run_at last seen stored, since its save

    def build(self, folder: Path, clock: FakeClock) -> BaseJobQueue:
        raise NotImplementedError

    def peer(self, folder: Path, clock: FakeClock) -> BaseJobQueue:
        """Another scheduler's queue on the same store (one process's memory: the same one)."""
        return self.queue

    def teardown(self) -> None:
        for queue in self.schedulers[1:]:
            if queue is not self.queue:
                queue.close()
        self.queue.close()
        shutil.rmtree(self.folder, ignore_errors=True)

    # -- helpers -------------------------------------------------------------
    def _due(self) -> list[Schedule]:
        now = self.clock.time()
        due = [m.stored for m in self.model.values()
               if not m.stored.paused and m.stored.next_run_at <= now]  # fmt: skip
        return sorted(due, key=lambda s: (s.next_run_at, s.id))

    def _tick(self, which: str, sid: str, scheduler: int) -> tuple[float, float]:
        """The tick a scheduler fires, and the interval of the schedule as it knows it."""
        have, read = self.model.get(sid), self.views[scheduler].get(sid)
        known = have.stored if have is not None else read or self.last_known.get(sid)
        if known is None:
            return self.clock.time(), 1.0
        interval = known.interval or 1.0
        if which == "read" and read is not None:
            return read.next_run_at, read.interval or 1.0
        if which == "claimed" and have is not None and have.claimed:
            return sorted(have.claimed)[len(have.claimed) // 2], interval
        if which == "earlier":
            return known.next_run_at - interval, interval
        if which == "later":
            return known.next_run_at + interval, interval
        return known.next_run_at, interval

    def _expected(self, sid: str, tick: float) -> bool | None:
        """Whether a fire of ``tick`` must win; None: either (a tick claimed before a removal)."""
        have = self.model.get(sid)
        if have is None or have.stored.paused or tick < have.stored.next_run_at:
            return False
        if tick in have.claimed:
            return False
        return None if tick in have.unknown else True

    def _job(self, sid: str, tick: float) -> Job:
        """The tick's job, with the same id from every scheduler (as ``tick_job_id`` gives)."""
        incarnation = self.model[sid].incarnation if sid in self.model else 0
        return Job("model.task", args=(sid, tick), id=tick_job_id(f"{sid}#{incarnation}", tick))

    def _settle(self, sid: str, tick: float, job: Job | None, next_run_at: float, won: bool):
        """Move the model on after a fire that returned ``won``."""
        expected = self._expected(sid, tick)
        assert expected in (None, won), (
            f"fire_tick({sid}, {tick}) returned {won}, the model says {expected}: "
            f"{self.model.get(sid)}"
        )
        have = self.model.get(sid)
        if have is None:
            return
        have.unknown.discard(tick)
        if not won:
            if expected is None:
                have.claimed.add(tick)  # the store kept its key: it must keep refusing
            return
        have.claimed.add(tick)
        for old in [t for t in have.claimed if t < tick - TICKS_KEPT_SECS]:
            have.claimed.discard(old)
        have.stored.last_run_at, have.stored.next_run_at = tick, next_run_at
        self.wins[(sid, have.incarnation, tick)] += 1
        if job is not None:
            have.stored.last_job_id = job.id
            self.enqueued.append(job.id)
        self.last_known[sid] = replace(have.stored)

    # -- rules ---------------------------------------------------------------
    @rule(
        scheduler=st.integers(0, SCHEDULERS - 1),
        sid=st.sampled_from(SCHEDULE_IDS),
        interval=st.sampled_from(INTERVALS),
        args=st.lists(st.integers(-5, 5), max_size=2),
        queue=st.sampled_from([None, "reports"]),
        catchup=st.sampled_from(["latest", "all", "none"]),
        paused=st.booleans(),
        last_job=st.sampled_from([None, "an-earlier-job"]),
    )
    def save(
        self,
        scheduler: int,
        sid: str,
        interval: float,
        args: list[int],
        queue: str | None,
        catchup: str,
        paused: bool,
        last_job: str | None,
    ) -> None:
        """Create, or replace with a new timetable from now."""
        schedule = new_schedule("model.task", args=args, kwargs={"n": len(args)},
                                interval=interval, now=self.clock.time(), schedule_id=sid,
                                queue=queue, catchup=catchup)  # fmt: skip
        schedule.paused, schedule.last_job_id = paused, last_job
        self._save(scheduler, schedule)

    def _save(self, scheduler: int, schedule: Schedule) -> None:
        sid = schedule.id
        have = self.model.get(sid)
        self.schedulers[scheduler].save_schedule(schedule)
        if have is None:
            self.incarnations[sid] += 1
            have = ModelSchedule(replace(schedule), self.incarnations[sid])
            have.unknown = self.removed_ticks.pop(sid, set())
            self.model[sid] = have
        else:
            have.stored = replace(schedule)
        self.last_known[sid] = replace(schedule)
        self.floor.pop(sid, None)

    @precondition(lambda self: any(m.claimed for m in self.model.values()))
    @rule(scheduler=st.integers(0, SCHEDULERS - 1), data=st.data())
    def stale_upsert(self, scheduler: int, data: st.DataObject) -> None:
        """A worker upserts a schedule it read before its last tick fired (``sync_declared``
        keeps a stored schedule's place, as it read it): next_run_at goes back to a tick
        already claimed, and only that tick's key stops it firing twice."""
        sid = data.draw(st.sampled_from(sorted(s for s, m in self.model.items() if m.claimed)))
        have = self.model[sid]
        tick = data.draw(st.sampled_from(sorted(have.claimed)))
        self._save(scheduler, replace(have.stored, next_run_at=tick))

    @rule(scheduler=st.integers(0, SCHEDULERS - 1), limit=st.integers(1, 3))
    def look(self, scheduler: int, limit: int) -> None:
        """A scheduler reads the due schedules, as its pass starts; it fires from this view."""
        due = self.schedulers[scheduler].due_schedules(self.clock.time(), limit)
        expected = self._due()
        assert [s.next_run_at for s in due] == [s.next_run_at for s in expected[:limit]], (
            "due schedules come earliest first, up to the limit"
        )
        for schedule in due:
            assert schedule in expected, f"{schedule} is not due"
            self.views[scheduler][schedule.id] = schedule

    @rule(
        scheduler=st.integers(0, SCHEDULERS - 1),
        sid=st.sampled_from(SCHEDULE_IDS),
        which=st.sampled_from(TICK_CHOICES),
        with_job=st.booleans(),
    )
    def fire(self, scheduler: int, sid: str, which: str, with_job: bool) -> None:
        tick, interval = self._tick(which, sid, scheduler)
        job = self._job(sid, tick) if with_job else None
        queue = self.schedulers[scheduler]
        won = queue.fire_tick(sid, tick, job=job, next_run_at=tick + interval)
        self._settle(sid, tick, job, tick + interval, won)

    @rule(
        scheduler=st.integers(0, SCHEDULERS - 1),
        picks=st.lists(
            st.tuples(st.sampled_from(SCHEDULE_IDS), st.sampled_from(TICK_CHOICES),
                      st.booleans()),
            min_size=1, max_size=4,
        ),
    )  # fmt: skip
    def fire_batch(self, scheduler: int, picks: list[tuple[str, str, bool]]) -> None:
        """``fire_ticks``: the claims are taken in (schedule, tick) order, each as one fire."""
        claims = []
        for sid, which, with_job in picks:
            tick, interval = self._tick(which, sid, scheduler)
            job = self._job(sid, tick) if with_job else None
            claims.append(TickClaim(sid, tick, job, tick + interval))
        won = self.schedulers[scheduler].fire_ticks(claims)
        assert len(won) == len(claims)
        for i in claim_order(claims):
            claim = claims[i]
            self._settle(claim.schedule_id, claim.tick, claim.job, claim.next_run_at, won[i])

    @rule(sid=st.sampled_from(SCHEDULE_IDS), which=st.sampled_from(["fresh", "later"]))
    def race(self, sid: str, which: str) -> None:
        """Every scheduler fires the same tick at once, from its own thread: one wins at most."""
        tick, interval = self._tick(which, sid, 0)
        job = self._job(sid, tick)
        start, results = threading.Barrier(SCHEDULERS), []

        def fire(queue: BaseJobQueue) -> None:
            start.wait()
            results.append(queue.fire_tick(sid, tick, job=job, next_run_at=tick + interval))

        threads = [threading.Thread(target=fire, args=(q,)) for q in self.schedulers]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(30)
        assert len(results) == SCHEDULERS, "a racing fire did not return"
        assert results.count(True) <= 1, f"a tick won {results.count(True)} times"
        self._settle(sid, tick, job, tick + interval, True in results)

    @rule(
        scheduler=st.integers(0, SCHEDULERS - 1),
        sid=st.sampled_from(SCHEDULE_IDS),
        paused=st.booleans(),
    )
    def pause(self, scheduler: int, sid: str, paused: bool) -> None:
        found = self.schedulers[scheduler].pause_schedule(sid, paused)
        assert found is (sid in self.model)
        if found:
            self.model[sid].stored.paused = paused

    @rule(scheduler=st.integers(0, SCHEDULERS - 1), sid=st.sampled_from(SCHEDULE_IDS))
    def remove(self, scheduler: int, sid: str) -> None:
        found = self.schedulers[scheduler].remove_schedule(sid)
        assert found is (sid in self.model)
        have = self.model.pop(sid, None)
        if have is not None:
            self.removed_ticks[sid] = have.claimed | have.unknown
        self.floor.pop(sid, None)

    @rule(secs=st.sampled_from([0.5, 1.0, 2.5, 7.0, 70.0]))
    def advance(self, secs: float) -> None:
        self.clock.advance(secs)

    # -- invariants ------------------------------------------------------------
    @invariant()
    def the_stored_schedules_are_the_models(self) -> None:
        stored = self.queue.list_schedules()
        assert stored == [self.model[sid].stored for sid in sorted(self.model)]
        for schedule in stored:
            floor = self.floor.get(schedule.id)
            assert floor is None or schedule.next_run_at >= floor, "next_run_at moved back"
            self.floor[schedule.id] = schedule.next_run_at

    @invariant()
    def the_next_due_time_is_the_earliest_unpaused(self) -> None:
        times = [m.stored.next_run_at for m in self.model.values() if not m.stored.paused]
        assert self.queue.next_schedule_at() == (min(times) if times else None)

    @invariant()
    def each_winning_tick_enqueued_its_job_once(self) -> None:
        assert all(count == 1 for count in self.wins.values()), "a tick was won twice"
        assert self.queue.qsize() == len(self.enqueued), "jobs are the wins that had one"
        waiting = Counter(job.id for job in self.queue.waiting_jobs())
        assert waiting == Counter(self.enqueued)


class MemoryMachine(ScheduleMachine):
    def build(self, folder: Path, clock: FakeClock) -> BaseJobQueue:
        return MemoryJobQueue(clock=clock)


class FileMachine(ScheduleMachine):
    def build(self, folder: Path, clock: FakeClock) -> BaseJobQueue:
        return FileJobQueue(folder / "queue", clock=clock)

    def peer(self, folder: Path, clock: FakeClock) -> BaseJobQueue:
        return FileJobQueue(folder / "queue", clock=clock)


class SQLiteMachine(ScheduleMachine):
    def build(self, folder: Path, clock: FakeClock) -> BaseJobQueue:
        return SQLiteJobQueue(folder / "queue.db", clock=clock, synchronous="normal")

    def peer(self, folder: Path, clock: FakeClock) -> BaseJobQueue:
        return SQLiteJobQueue(folder / "queue.db", clock=clock, synchronous="normal")


TestMemoryScheduleModel = MemoryMachine.TestCase
TestMemoryScheduleModel.settings = MACHINE_SETTINGS
TestFileScheduleModel = FileMachine.TestCase
TestFileScheduleModel.settings = MACHINE_SETTINGS
TestSQLiteScheduleModel = SQLiteMachine.TestCase
TestSQLiteScheduleModel.settings = MACHINE_SETTINGS


# -- the server backends: each example gets its own schema / key prefix ------------------
SERVER_MACHINE_SETTINGS = settings(MACHINE_SETTINGS, max_examples=20)  # round trips per step


class PostgresMachine(ScheduleMachine):
    def build(self, folder: Path, clock: FakeClock) -> BaseJobQueue:
        from .server_builders import hold_server_lock, require_postgres, unique_name

        self.release = hold_server_lock()
        self.dsn = require_postgres()
        self.schema = unique_name("nuvom_test")
        return self.peer(folder, clock)

    def peer(self, folder: Path, clock: FakeClock) -> BaseJobQueue:
        from nuvom.queue_backends.postgres_queue import PostgresJobQueue

        return PostgresJobQueue(self.dsn, schema=self.schema, clock=clock)

    def teardown(self) -> None:
        from .server_builders import drop_postgres_schema

        super().teardown()
        drop_postgres_schema(self.schema)
        self.release()


class RedisMachine(ScheduleMachine):
    def build(self, folder: Path, clock: FakeClock) -> BaseJobQueue:
        from .server_builders import hold_server_lock, require_redis, unique_name

        self.release = hold_server_lock()
        self.url = require_redis()
        self.prefix = unique_name("nuvom-test")
        return self.peer(folder, clock)

    def peer(self, folder: Path, clock: FakeClock) -> BaseJobQueue:
        from nuvom.queue_backends.redis_queue import RedisJobQueue

        return RedisJobQueue(self.url, prefix=self.prefix, clock=clock)

    def teardown(self) -> None:
        from .server_builders import drop_redis_prefix

        super().teardown()
        drop_redis_prefix(self.prefix)
        self.release()


TestPostgresScheduleModel = PostgresMachine.TestCase
TestPostgresScheduleModel.settings = SERVER_MACHINE_SETTINGS
TestRedisScheduleModel = RedisMachine.TestCase
TestRedisScheduleModel.settings = SERVER_MACHINE_SETTINGS
