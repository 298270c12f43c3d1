"""Periodic jobs: timetables, and the scheduler every worker runs.

A schedule's ticks come from its ``cron`` expression (read by ``cronsim``, in its
``timezone`` from ``zoneinfo``, so DST behaves as cron's does) or its ``interval``
(anchored: tick n is at ``anchor + n * interval``, never "last finish + interval").
Each pass the scheduler asks the queue for the schedules that are due and claims
their ticks with ``fire_tick``: the tick's key and its job are written in one atomic
step, so any number of schedulers may race and each tick fires once.

After downtime several ticks are due at once; ``catchup`` says what to do with them:
``latest`` (the default) fires the last one, ``all`` fires each (the last
``max_catchup``), ``none`` fires none and waits for the next. ``overlap="skip"`` claims
a tick without a job while the previous tick's job is still unfinished.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import logging
import math
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import TYPE_CHECKING, Any

from nuvom.errors import InvalidJob, NuvomError, SerializationError, TaskDefinitionError
from nuvom.job import DEFAULT_QUEUE, Job, JobStatus
from nuvom.options import CATCHUPS, DEFAULT_MAX_CATCHUP, OVERLAPS, check_timetable, zone
from nuvom.records import Schedule, TickClaim

if TYPE_CHECKING:
    from nuvom.backends.contract import BaseJobQueue, BaseResultBackend
    from nuvom.clock import Clock

log = logging.getLogger("nuvom.scheduler")

DUE_BATCH = 500  # schedules one pass asks the queue for at a time
IDLE_CHECK_SECS = 5.0  # longest sleep between passes (a schedule added elsewhere shows up)
RETRY_SECS = 1.0  # pause after a pass the backend refused
UNFINISHED = frozenset(
    {JobStatus.PENDING, JobStatus.SCHEDULED, JobStatus.RUNNING, JobStatus.RETRYING}
)


# -- timetables ----------------------------------------------------------------------
# ``check_timetable`` and ``zone`` live in ``nuvom.options`` (``@task(cron=...)`` runs them,
# and options import nothing above them); they are imported above and read as before.
def next_tick(schedule: Schedule, after: float) -> float:
    """The first tick of ``schedule`` strictly after ``after`` (epoch seconds)."""
    if schedule.interval is not None:
        step = schedule.interval
        # Always anchor + n * step for a whole n, never "a tick + step": that rounds apart from
        # anchor + (n + 1) * step, and the two would be two ticks a rounding error apart.
        n = math.floor((after - schedule.anchor) / step) + 1
        while schedule.anchor + (n - 1) * step > after:
            n -= 1  # float rounding at the boundary
        while schedule.anchor + n * step <= after:
            n += 1
        return schedule.anchor + n * step
    from cronsim import CronSim

    assert schedule.cron is not None
    start = dt.datetime.fromtimestamp(after, zone(schedule.timezone))
    return float(next(iter(CronSim(schedule.cron, start))).timestamp())


def ticks_due(schedule: Schedule, now: float) -> Iterator[float]:
    """Every tick from ``schedule.next_run_at`` up to ``now``, in order."""
    tick = schedule.next_run_at
    while tick <= now:
        yield tick
        tick = next_tick(schedule, tick)


def plan(schedule: Schedule, now: float) -> list[tuple[float, bool, float]]:
    """The ticks a scheduler claims for a due schedule at ``now``, by its catch-up policy:
    (tick, whether it runs a job, the schedule's next run once it is claimed)."""
    limit = max(1, schedule.max_catchup)
    due: list[float] = []
    for tick in ticks_due(schedule, now):
        due.append(tick)
        if len(due) > limit:  # only the last ``limit`` can run
            due.pop(0)
    if not due:
        return []
    following = next_tick(schedule, due[-1])
    if len(due) == 1 or schedule.catchup == "latest":
        return [(due[-1], True, following)]
    if schedule.catchup == "none":
        return [(due[-1], False, following)]
    nexts = [*due[1:], following]
    return [(tick, True, after) for tick, after in zip(due, nexts, strict=True)]


def tick_job_id(schedule_id: str, tick: float) -> str:
    """The same job id from every scheduler for one tick (32 hex digits)."""
    return hashlib.blake2b(f"{schedule_id}@{tick!r}".encode(), digest_size=16).hexdigest()


def declared_id(func_name: str, *, cron: str | None, interval: float | None, timezone: str) -> str:
    """A declared schedule's id: from its task and timetable, the same on every worker."""
    timetable = f"cron={cron}" if cron is not None else f"interval={interval!r}"
    digest = hashlib.blake2b(f"{func_name}|{timetable}|{timezone}".encode(), digest_size=6)
    return f"{func_name}:{digest.hexdigest()}"


def new_schedule(
    func_name: str,
    *,
    args: Sequence[Any] = (),
    kwargs: dict[str, Any] | None = None,
    cron: str | None = None,
    interval: float | None = None,
    timezone: str = "UTC",
    overlap: str = "allow",
    catchup: str = "latest",
    max_catchup: int = DEFAULT_MAX_CATCHUP,
    queue: str | None = None,
    priority: int | None = None,
    now: float,
    schedule_id: str | None = None,
    declared: bool = False,
) -> Schedule:
    """A checked schedule whose first tick is the first one after ``now``."""
    label = f"schedule of {func_name}"
    check_timetable(cron=cron, interval=interval, timezone=timezone, label=label)
    if overlap not in OVERLAPS:
        raise TaskDefinitionError(f"{label}: overlap must be one of {OVERLAPS}, not {overlap!r}")
    if catchup not in CATCHUPS:
        raise TaskDefinitionError(f"{label}: catchup must be one of {CATCHUPS}, not {catchup!r}")
    if isinstance(max_catchup, bool) or not isinstance(max_catchup, int) or max_catchup < 1:
        raise TaskDefinitionError(f"{label}: max_catchup must be an int >= 1")
    if schedule_id is None:
        from nuvom.job import new_job_id

        schedule_id = new_job_id()
    schedule = Schedule(
        schedule_id, func_name, list(args), dict(kwargs or {}), cron=cron,
        interval=float(interval) if interval is not None else None, timezone=timezone,
        anchor=now, overlap=overlap, catchup=catchup, max_catchup=max_catchup, queue=queue,
        priority=priority, declared=declared, created_at=now,
    )  # fmt: skip
    schedule.next_run_at = next_tick(schedule, now)
    return schedule


# -- the scheduler -------------------------------------------------------------------
class Scheduler:
    """Fires the due ticks of every schedule in one queue; safe to run in many processes."""

    def __init__(
        self,
        queue: BaseJobQueue,
        results: BaseResultBackend,
        clock: Clock,
        *,
        flow: Callable[[Job], None] | None = None,
    ) -> None:
        self.queue = queue
        self.results = results
        self.clock = clock
        #: Gives a tick's job its task's limits (``nuvom.calls.tick_preparer``).
        self.flow = flow

    def sync_declared(self, declared: Iterable[Schedule]) -> None:
        """Upsert the schedules declared in source; retire declared ones no longer there.

        A declaration already stored keeps where it is in its timetable (and whether it
        is paused), so every worker doing this at start changes nothing.
        """
        wanted = {s.id: s for s in declared}
        stored = {s.id: s for s in self.queue.list_schedules()}
        for schedule_id, schedule in wanted.items():
            have = stored.get(schedule_id)
            if have is not None and _same_call(have, schedule):
                continue
            if have is not None:  # same timetable, new call details: keep its place
                schedule.next_run_at, schedule.paused = have.next_run_at, have.paused
                schedule.last_run_at, schedule.last_job_id = have.last_run_at, have.last_job_id
                schedule.anchor, schedule.created_at = have.anchor, have.created_at
            self.queue.save_schedule(schedule)
        for schedule_id, have in stored.items():
            if have.declared and schedule_id not in wanted:
                log.info("schedule %s of %s retired: no longer declared", have.id, have.func_name)
                self.queue.remove_schedule(schedule_id)

    def run_once(self) -> int:
        """Claim every due tick; returns how many jobs this pass enqueued.

        The ticks of all due schedules go to the queue as one ``fire_ticks`` call (one
        transaction or round trip for a thousand schedules due at once). A schedule whose
        job cannot be built or stored is logged and left out; the others fire.
        """
        now = self.clock.time()
        claims: list[TickClaim] = []
        for schedule in self.queue.due_schedules(now, DUE_BATCH):
            try:
                claims += self._claims(schedule, now)
            except NuvomError as exc:
                log.error("schedule %s of %s: %s", schedule.id, schedule.func_name, exc)
        if not claims:
            return 0
        try:
            won = self.queue.fire_ticks(claims)
        except (SerializationError, InvalidJob):  # one job the store refuses: one by one
            return self._fire_each(claims)
        return self._fired([c for c, w in zip(claims, won, strict=True) if w])

    def _claims(self, schedule: Schedule, now: float) -> list[TickClaim]:
        """The claims of one due schedule's ticks, by its catch-up and overlap policies."""
        claims = []
        busy = self._overlapping(schedule, schedule.last_job_id)
        for tick, runs, following in plan(schedule, now):
            job = None
            if runs and not busy:
                job = self.job_for(schedule, tick)
                busy = schedule.overlap == "skip"  # its later ticks overlap this one's job
            claims.append(TickClaim(schedule.id, tick, job, following))
        return claims

    def _fire_each(self, claims: Sequence[TickClaim]) -> int:
        by_schedule: dict[str, list[TickClaim]] = {}
        for claim in claims:
            by_schedule.setdefault(claim.schedule_id, []).append(claim)
        fired = 0
        for schedule_id, own in by_schedule.items():
            try:
                won = self.queue.fire_ticks(own)
            except (SerializationError, InvalidJob) as exc:
                log.error("schedule %s: its job cannot be stored: %s", schedule_id, exc)
                continue
            fired += self._fired([c for c, w in zip(own, won, strict=True) if w])
        return fired

    def _fired(self, won: Sequence[TickClaim]) -> int:
        """Record the jobs of the ticks this pass won unless a worker already has."""
        jobs = []
        for claim in won:
            if claim.job is not None:
                jobs.append(claim.job)
                log.debug("schedule %s fired as job %s", claim.schedule_id, claim.job.id)
        if jobs:
            try:
                self.results.record_fired(jobs)
            except NuvomError as exc:  # the jobs are queued; workers record them as they run
                log.warning("recording the jobs of %d tick(s) failed: %s", len(jobs), exc)
        return len(jobs)

    def _overlapping(self, schedule: Schedule, last_job_id: str | None) -> bool:
        if schedule.overlap != "skip" or last_job_id is None:
            return False
        return self.results.get_status(last_job_id) in UNFINISHED

    def job_for(self, schedule: Schedule, tick: float) -> Job:
        """The job of one tick: the schedule's call, with the same id on every scheduler."""
        job = Job(
            schedule.func_name,
            args=list(schedule.args),
            kwargs=dict(schedule.kwargs),
            id=tick_job_id(schedule.id, tick),
            queue=schedule.queue or DEFAULT_QUEUE,
            priority=schedule.priority or 0,
            created_at=self.clock.time(),
            origin={"schedule": schedule.id, "tick": tick},
        )
        if self.flow is not None:
            self.flow(job)
        return job

    def trigger(self, schedule: Schedule) -> Job:
        """One run now, outside the timetable (``nuvom schedules trigger``)."""
        job = self.job_for(schedule, self.clock.time())
        from nuvom.job import new_job_id

        job.id = new_job_id()  # not a tick: nothing to key it on
        self.queue.submit([job], self.results)
        return job

    def run(self, stop: threading.Event) -> None:
        """Pass after pass until ``stop`` is set, sleeping until the next tick in between."""
        while not stop.is_set():
            try:
                self.run_once()
                upcoming = self.queue.next_schedule_at()
            except NuvomError as exc:
                log.error("scheduler pass failed: %s; retrying in %.0fs", exc, RETRY_SECS)
                stop.wait(RETRY_SECS)
                continue
            wait = IDLE_CHECK_SECS
            if upcoming is not None:
                wait = min(wait, max(0.0, upcoming - self.clock.time()))
            stop.wait(wait)


def _same_call(a: Schedule, b: Schedule) -> bool:
    return a.definition() | {"anchor": 0, "created_at": 0} == b.definition() | {
        "anchor": 0,
        "created_at": 0,
    }
