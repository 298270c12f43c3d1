"""An in-process queue: fast, for tests and single-process use.

At most once across crashes: jobs live in this process's memory and are gone
when it exits (it says so, at exit, if any were left). Within the process it keeps
the full contract, leases included.
"""

from __future__ import annotations

import atexit
import heapq
import itertools
import logging
import threading
import weakref
from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import TYPE_CHECKING

from nuvom.backends.common import Defaults, QuarantiningQueue
from nuvom.backends.contract import (
    TICKS_KEPT_SECS,
    Claimed,
    DeadLetter,
    Duplicates,
    Hold,
    Queues,
    QueueStats,
    Resolved,
    cancel_reason,
    preview_of,
)
from nuvom.errors import CorruptJob, InvalidJob
from nuvom.job import Job, JobStatus
from nuvom.limits import concurrency_tag, rate_tag
from nuvom.records import JobPayloadCodec, Outcome, Schedule

if TYPE_CHECKING:
    from nuvom.clock import Clock
    from nuvom.records import WorkerInfo
    from nuvom.runtime import Runtime
    from nuvom.serialization import Codec


log = logging.getLogger("nuvom.memory")

# Queues that have held a job; at exit, the jobs they still hold are lost, and we say so.
_holding: weakref.WeakSet[MemoryJobQueue] = weakref.WeakSet()
_holding_lock = threading.Lock()
_exit_hook_registered = False


def _watch_at_exit(queue: MemoryJobQueue) -> None:
    global _exit_hook_registered
    with _holding_lock:
        _holding.add(queue)
        if not _exit_hook_registered:
            # After logging's own hook, so it runs before logging shuts its handlers down.
            atexit.register(_warn_of_lost_jobs)
            _exit_hook_registered = True


def _warn_of_lost_jobs() -> None:
    """At exit: how many jobs die with this process's memory queues, and why."""
    try:
        lost = sum(queue.held_count() for queue in list(_holding))
        if lost:
            log.warning(
                "%d job(s) still in this process's memory queue are lost as it exits: "
                "NUVOM_QUEUE_BACKEND=memory keeps jobs in the memory of the process that "
                "enqueued them, so no other process (no `nuvom runworker`) can run them; "
                "use a shared backend (sqlite, the default) or run a Worker in this process",
                lost,
            )
    except Exception:
        pass  # an exit hook must never fail the exit


class MemoryJobQueue(QuarantiningQueue):
    name = "memory"
    pushes_wakeups = True
    records_workers = True
    keeps_dependencies = True
    keeps_limits = True
    honours_refusals = True

    def __init__(
        self,
        *,
        clock: Clock | None = None,
        codec: Codec | None = None,
        runtime: Runtime | None = None,
    ) -> None:
        defaults = Defaults(runtime)
        super().__init__(clock=defaults.clock(clock))
        # Payloads are encoded only to check them, so a bad argument fails at
        # enqueue here as it does on every backend that stores bytes.
        self.payloads = JobPayloadCodec(defaults.codec(codec))
        # Held while a step also changes the memory result backend (its joint writer).
        self.lock = threading.RLock()
        self._cond = threading.Condition(self.lock)
        self._seq = itertools.count()
        self._waiting: dict[str, tuple[int, Job]] = {}  # id -> (seq, job)
        self._claimed: dict[str, Job] = {}
        self._ready: list[tuple[int, float, int, str]] = []  # (-priority, due, seq, id)
        self._scheduled: list[tuple[float, int, str]] = []  # (due, seq, id)
        self._wakeups = 0
        self._workers: dict[str, WorkerInfo] = {}
        self._dead: dict[str, _Dead] = {}  # quarantined, by id
        self._schedules: dict[str, Schedule] = {}
        self._ticks: dict[str, set[float]] = {}  # schedule id -> ticks claimed (the last day's)
        self._watched = False  # by the exit hook that reports jobs lost with the process
        self._parked: dict[str, Job] = {}  # jobs waiting for others to succeed
        self._waits: dict[str, set[str]] = {}  # parked id -> the ids it still waits for
        self._dependents: dict[str, set[str]] = {}  # id -> parked ids that wait for it
        # Flow control (the contract's "flow control"; ``nuvom.limits``).
        self._paused: set[str] = set()
        self._buckets: dict[str, tuple[float, float]] = {}  # task -> (tokens, refilled at)
        self._slots: dict[str, set[str]] = {}  # concurrency key -> claimed ids of that key
        self._holds: dict[str, str] = {}  # waiting id -> hold tag of its last claim
        self._unique: dict[str, tuple[str, float | None]] = {}  # key -> (holder, kept until)

    def _push(self, job: Job, seq: int | None = None) -> None:
        seq = next(self._seq) if seq is None else seq
        # A job with no due time is due when enqueued, so it orders after one
        # that came due earlier (as SQLite stores it).
        due = job.due_at if job.due_at is not None else self.clock.time()
        stored = job.copy(due_at=due, lease_owner=None, lease_until=None)
        self._waiting[job.id] = (seq, stored)
        self._claimed.pop(job.id, None)
        if due > self.clock.time():
            heapq.heappush(self._scheduled, (due, seq, job.id))
        else:
            heapq.heappush(self._ready, (-job.priority, due, seq, job.id))

    def enqueue(self, job: Job) -> None:
        self.enqueue_many([job])

    def enqueue_many(self, jobs: Sequence[Job]) -> Duplicates:
        self.check_jobs(jobs)  # all checked before any is queued: all or nothing
        duplicates: Duplicates = {}
        with self._cond:
            now = self.clock.time()
            for job in jobs:
                unique = job.unique
                if unique is not None:
                    holder = self._unique_holder(unique.key, now)
                    if holder is not None and holder != job.id:
                        duplicates[job.id] = holder
                        continue
                    self._unique[unique.key] = (job.id, None)
                if job.depends_on:
                    self._park(job)
                else:
                    self._push(job)
            self._wakeups += 1
            self._cond.notify_all()
        if jobs and not self._watched:
            self._watched = True
            _watch_at_exit(self)
        return duplicates

    # -- flow control ------------------------------------------------------------
    def _unique_holder(self, key: str, now: float) -> str | None:
        entry = self._unique.get(key)
        if entry is None:
            return None
        holder, until = entry
        if until is not None and until <= now:
            del self._unique[key]
            return None
        return holder

    def _let_go(self, job: Job, now: float, *, finished: bool) -> None:
        """``job`` left the queue for good: its unique key goes (or is kept ``keep_secs``)."""
        unique = job.unique
        if unique is None or self._unique.get(unique.key, ("",))[0] != job.id:
            return
        if finished and unique.keep_secs > 0:
            self._unique[unique.key] = (job.id, now + unique.keep_secs)
        else:
            del self._unique[unique.key]

    def _free_slot(self, job: Job) -> None:
        """``job`` is no longer claimed: its concurrency slot frees, and the first job held
        back on that key that is not due yet is due at once (one woken per slot freed)."""
        limit = job.concurrency_limit
        if limit is None:
            return
        holders = self._slots.get(limit.key)
        if holders is not None:
            holders.discard(job.id)
            if not holders:
                del self._slots[limit.key]
        tag, now = concurrency_tag(limit.key), self.clock.time()
        held = [self._waiting[i] for i, t in self._holds.items() if t == tag and i in self._waiting]
        later = [entry for entry in held if (entry[1].due_at or 0.0) > now]  # not woken yet
        if later:
            seq, first = min(later, key=lambda e: (-e[1].priority, e[1].due_at or 0.0, e[0]))
            self._push(first.copy(due_at=now), seq)

    def _limit_hold(self, job: Job, now: float, taken: dict[str, int]) -> tuple[str, float] | None:
        """Whether ``job``'s limits let a claim take it now: None (and its token and slot
        taken), or (hold tag, when it may be due again). ``taken``: rate holds so far."""
        limit = job.concurrency_limit
        if limit is not None:
            holders = self._slots.get(limit.key, set())
            leases = [self._claimed[i].lease_until or 0.0 for i in holders if i in self._claimed]
            live = [until for until in leases if until > now]
            if len(live) >= limit.limit:
                return concurrency_tag(limit.key), min(live)
        rate = job.rate_limit
        if rate is not None:
            tokens, at = self._buckets.get(rate.key, (float(rate.burst), now))
            tokens = min(float(rate.burst), tokens + max(0.0, now - at) * rate.per_sec)
            if tokens < 1.0:
                self._buckets[rate.key] = (tokens, now)
                behind = taken.get(rate.key, 0)
                taken[rate.key] = behind + 1
                return rate_tag(rate.key), now + (1.0 - tokens + behind) / rate.per_sec
            self._buckets[rate.key] = (tokens - 1.0, now)
        if limit is not None:
            self._slots.setdefault(limit.key, set()).add(job.id)
        return None

    def hold(self, held: Sequence[Hold], *, worker_id: str) -> list[str]:
        given: list[str] = []
        with self._cond:
            for h in held:
                job = self._held(h.job_id, worker_id)
                if job is None:
                    continue
                self._push(job.copy(attempts=max(0, job.attempts - 1), due_at=h.due_at))
                self._holds[h.job_id] = h.tag
                self._free_slot(job)
                given.append(h.job_id)
            self._cond.notify_all()
        return given

    def pause_queue(self, queue: str, paused: bool = True) -> bool:
        with self._cond:
            changed = (queue in self._paused) is not paused
            if paused:
                self._paused.add(queue)
            else:
                self._paused.discard(queue)
                self._wakeups += 1
                self._cond.notify_all()
            return changed

    def paused_queues(self) -> list[str]:
        with self._cond:
            return sorted(self._paused)

    def hold_of(self, job_id: str) -> str | None:
        with self._cond:
            return self._holds.get(job_id) if job_id in self._waiting else None

    def unique_holder(self, key: str) -> str | None:
        with self._cond:
            return self._unique_holder(key, self.clock.time())

    def _park(self, job: Job) -> None:
        self._parked[job.id] = job.copy()
        self._waits[job.id] = set(job.depends_on)
        for dep in job.depends_on:
            self._dependents.setdefault(dep, set()).add(job.id)

    def _unpark(self, job_id: str) -> Job | None:
        job = self._parked.pop(job_id, None)
        for dep in self._waits.pop(job_id, ()):
            waiting = self._dependents.get(dep)
            if waiting is not None:
                waiting.discard(job_id)
                if not waiting:
                    del self._dependents[dep]
        return job

    def resolve(self, finished: Sequence[tuple[str, bool]]) -> Resolved:
        resolved = Resolved()
        with self._cond:
            todo = list(finished)
            while todo:
                dep, succeeded = todo.pop(0)
                for job_id in sorted(self._dependents.pop(dep, ())):
                    job = self._parked.get(job_id)
                    if job is None:
                        continue
                    waits = self._waits[job_id]
                    waits.discard(dep)
                    if succeeded and waits:
                        continue  # still waits for others
                    self._unpark(job_id)
                    if succeeded is job.on_failure:  # an errback with nothing failed, or a
                        why = cancel_reason(dep, succeeded)  # job whose dependency failed
                        resolved.cancelled.append((job_id, why))
                        todo.append((job_id, False))
                        self._let_go(job, self.clock.time(), finished=False)
                    else:
                        self._push(job.copy(due_at=None))
                        resolved.released.append(job_id)
            if resolved.released:
                self._wakeups += 1
                self._cond.notify_all()
        return resolved

    def parked_jobs(self) -> list[Job]:
        with self._cond:
            return [self._parked[job_id].copy() for job_id in sorted(self._parked)]

    def held_count(self) -> int:
        """Jobs waiting or claimed: what exiting this process would lose. Never blocks (an
        exit hook calls it while a daemon thread may hold the lock); ``len`` is atomic."""
        return len(self._waiting) + len(self._claimed)

    def close(self) -> None:
        """Closing discards the jobs on purpose: the exit hook no longer reports them."""
        with _holding_lock:
            _holding.discard(self)
        super().close()

    def _promote_due(self, now: float) -> None:
        while self._scheduled and self._scheduled[0][0] <= now:
            due, seq, job_id = heapq.heappop(self._scheduled)
            entry = self._waiting.get(job_id)
            if entry is not None and entry[0] == seq:
                heapq.heappush(self._ready, (-entry[1].priority, due, seq, job_id))

    def _reclaim_expired(self, now: float) -> None:
        for job in [j for j in self._claimed.values() if (j.lease_until or 0) <= now]:
            if job.queue in self._paused:
                continue  # a paused queue's jobs stay as they are, expired leases included
            self._push(job)
            if job.concurrency_limit is not None:
                self._slots.get(job.concurrency_limit.key, set()).discard(job.id)

    def claim_batch(
        self, n: int, *, worker_id: str, lease_secs: float, queues: Queues = None
    ) -> Claimed:
        wanted = set(queues) if queues else None
        refused = self.refused_by(worker_id)
        claimed: list[Job] = []
        quarantined: list[tuple[str, str]] = []
        with self._cond:
            now = self.clock.time()
            self._reclaim_expired(now)
            self._promote_due(now)
            skipped: list[tuple[int, float, int, str]] = []
            rate_holds: dict[str, int] = {}
            while self._ready and len(claimed) < n:
                entry = heapq.heappop(self._ready)
                _, _, seq, job_id = entry
                stored = self._waiting.get(job_id)
                if stored is None or stored[0] != seq:
                    continue  # cancelled, claimed or re-enqueued since
                job = stored[1]
                if (
                    (wanted is not None and job.queue not in wanted)
                    or job.queue in self._paused
                    or (refused and self._holds.get(job_id) in refused)
                ):
                    skipped.append(entry)
                    continue
                if job.limited:
                    hold = self._limit_hold(job, now, rate_holds)
                    if hold is not None:  # waits, attempts unchanged, due once it may run
                        self._holds[job_id] = hold[0]
                        self._push(job.copy(due_at=hold[1]), seq)
                        continue
                try:  # the stored copy may have been changed to something invalid since
                    held = job.copy(
                        attempts=job.attempts + 1,
                        lease_owner=worker_id,
                        lease_until=now + lease_secs,
                    )
                    held.validate()
                except InvalidJob as exc:
                    reason = f"job {job_id} cannot be run: {exc}"
                    log.warning("quarantined job %s: %s", job_id, reason)
                    del self._waiting[job_id]
                    self._holds.pop(job_id, None)
                    self._let_go(job, now, finished=True)
                    self._dead[job_id] = _Dead(job, str(job.queue), reason, now)
                    quarantined.append((job_id, reason))
                    continue
                del self._waiting[job_id]  # only once its claimed copy exists: never lost
                self._holds.pop(job_id, None)
                self._claimed[job_id] = held
                claimed.append(held.copy())
            for entry in skipped:
                heapq.heappush(self._ready, entry)
        return Claimed(claimed, quarantined)

    def _held(self, job_id: str, worker_id: str | None) -> Job | None:
        job = self._claimed.get(job_id)
        if job is None or (worker_id is not None and job.lease_owner != worker_id):
            return None
        return job

    def ack(self, job_id: str, *, worker_id: str | None = None) -> None:
        with self._cond:
            job = self._held(job_id, worker_id)
            if job is not None:
                self._acked(job)

    def _acked(self, job: Job) -> None:
        del self._claimed[job.id]
        self._free_slot(job)
        self._let_go(job, self.clock.time(), finished=True)

    def ack_outcomes(self, outcomes: Sequence[Outcome]) -> Resolved | None:
        with self._cond:
            finished = []
            for outcome in outcomes:
                job_id, owner = outcome.job.id, outcome.worker_id
                if outcome.status is JobStatus.RETRYING and outcome.retry_at is not None:
                    self.nack(job_id, retry_at=outcome.retry_at, worker_id=owner)
                elif (held := self._held(job_id, owner)) is not None:
                    self._acked(held)
                    if outcome.status.is_final and job_id in self._dependents:
                        finished.append((job_id, outcome.status is JobStatus.SUCCESS))
            return self.resolve(finished) if finished else None

    def nack(self, job_id: str, *, retry_at: float, worker_id: str | None = None) -> None:
        with self._cond:
            job = self._held(job_id, worker_id)
            if job is not None:
                self._push(job.copy(due_at=retry_at))
                self._free_slot(job)
                self._cond.notify_all()

    def release(self, job_ids: Sequence[str], *, worker_id: str) -> None:
        with self._cond:
            for job_id in job_ids:
                job = self._held(job_id, worker_id)
                if job is not None:
                    self._push(job.copy(attempts=max(0, job.attempts - 1)))
                    self._free_slot(job)
            self._cond.notify_all()

    def heartbeat(self, job_ids: Sequence[str], *, worker_id: str, lease_secs: float) -> list[str]:
        held: list[str] = []
        with self._cond:
            until = self.clock.time() + lease_secs
            for job_id in job_ids:
                job = self._held(job_id, worker_id)
                if job is not None:
                    job.lease_until = until
                    held.append(job_id)
        return held

    def adjust_attempts(self, deltas: Mapping[str, int], *, worker_id: str) -> list[str]:
        changed: list[str] = []
        with self._cond:
            for job_id, delta in deltas.items():
                job = self._held(job_id, worker_id)
                if job is not None:
                    job.attempts = max(0, job.attempts + delta)
                    changed.append(job_id)
        return changed

    # -- schedules -------------------------------------------------------------
    def save_schedule(self, schedule: Schedule) -> None:
        with self._cond:
            self._schedules[schedule.id] = replace(schedule)

    def list_schedules(self) -> list[Schedule]:
        with self._cond:
            return [replace(s) for _, s in sorted(self._schedules.items())]

    def remove_schedule(self, schedule_id: str) -> bool:
        with self._cond:
            self._ticks.pop(schedule_id, None)
            return self._schedules.pop(schedule_id, None) is not None

    def pause_schedule(self, schedule_id: str, paused: bool) -> bool:
        with self._cond:
            schedule = self._schedules.get(schedule_id)
            if schedule is not None:
                schedule.paused = paused
            return schedule is not None

    def due_schedules(self, now: float, limit: int) -> list[Schedule]:
        with self._cond:
            due = [s for s in self._schedules.values() if not s.paused and s.next_run_at <= now]
            due.sort(key=lambda s: (s.next_run_at, s.id))
            return [replace(s) for s in due[:limit]]

    def next_schedule_at(self) -> float | None:
        with self._cond:
            times = [s.next_run_at for s in self._schedules.values() if not s.paused]
            return min(times) if times else None

    def fire_tick(
        self, schedule_id: str, tick: float, *, job: Job | None, next_run_at: float
    ) -> bool:
        with self._cond:
            schedule = self._schedules.get(schedule_id)
            ticks = self._ticks.setdefault(schedule_id, set())
            if schedule is None or schedule.paused or tick in ticks or tick < schedule.next_run_at:
                return False
            if job is not None:
                self.check_jobs([job])
            ticks.add(tick)
            for old in [t for t in ticks if t < tick - TICKS_KEPT_SECS]:
                ticks.discard(old)
            schedule.last_run_at = tick
            schedule.next_run_at = next_run_at
            if job is not None:
                schedule.last_job_id = job.id
                self._push(job)
                self._wakeups += 1
                self._cond.notify_all()
            return True

    def qsize(self, queue: str | None = None) -> int:
        with self._cond:
            return sum(1 for _, job in self._waiting.values() if queue in (None, job.queue))

    # -- dead letters --------------------------------------------------------------
    def dead_letters(self, *, limit: int = 100, after: str | None = None) -> list[DeadLetter]:
        with self._cond:
            ids = sorted(i for i in self._dead if after is None or i > after)[:limit]
            return [self._dead[i].letter(i) for i in ids]

    def revive_dead(self, job_id: str) -> Job | None:
        with self._cond:
            dead = self._dead.get(job_id)
            if dead is None:
                return None
            try:
                return replace(dead.job)  # a checked copy: the stored one stays as it was
            except InvalidJob as exc:
                raise CorruptJob(f"job {job_id} still cannot be run: {exc}", job_id=job_id,
                                 backend=self.name) from exc  # fmt: skip

    def forget_dead(self, job_id: str) -> bool:
        with self._cond:
            return self._dead.pop(job_id, None) is not None

    def clear(self) -> int:
        with self._cond:
            count = len(self._waiting) + len(self._claimed) + len(self._parked)
            self._waiting.clear()
            self._claimed.clear()
            self._parked.clear()
            self._waits.clear()
            self._dependents.clear()
            self._ready.clear()
            self._scheduled.clear()
            self._slots.clear()
            self._holds.clear()
            self._unique.clear()
            return count

    def cancel(self, job_id: str) -> bool:
        with self._cond:
            entry = self._waiting.pop(job_id, None)
            job = entry[1] if entry is not None else self._unpark(job_id)
            if job is None:
                return False
            self._holds.pop(job_id, None)
            self._let_go(job, self.clock.time(), finished=False)
            return True

    def waiting_jobs(self) -> list[Job]:
        with self._cond:
            waiting = sorted(
                self._waiting.values(), key=lambda e: (-e[1].priority, e[1].due_at, e[0])
            )
            return [job.copy() for _, job in waiting]

    def queue_stats(self) -> list[QueueStats]:
        with self._cond:
            now = self.clock.time()
            rows: dict[str, QueueStats] = {}
            for _, job in self._waiting.values():
                row = rows.setdefault(job.queue, QueueStats(job.queue))
                if (job.due_at or 0) > now:
                    row.scheduled += 1
                else:
                    row.pending += 1
            for job in self._claimed.values():
                row = rows.setdefault(job.queue, QueueStats(job.queue))
                if (job.lease_until or 0) <= now:
                    row.expired += 1
                else:
                    row.running += 1
                    owner = job.lease_owner or "?"
                    row.lease_owners[owner] = row.lease_owners.get(owner, 0) + 1
            for dead in self._dead.values():
                rows.setdefault(dead.queue, QueueStats(dead.queue)).quarantined += 1
            for job_id, tag in self._holds.items():
                entry = self._waiting.get(job_id)
                if entry is not None:
                    held = rows.setdefault(entry[1].queue, QueueStats(entry[1].queue)).held
                    held[tag] = held.get(tag, 0) + 1
            for queue in self._paused:
                rows.setdefault(queue, QueueStats(queue)).paused = True
            return [rows[name] for name in sorted(rows)]

    def wait_for_jobs(self, timeout: float) -> bool:
        with self._cond:
            seen = self._wakeups
            self._cond.wait_for(lambda: self._wakeups != seen, timeout=timeout)
            return self._wakeups != seen

    # -- worker registry: this process's workers ----------------------------
    def register_worker(self, info: WorkerInfo) -> None:
        with self._cond:
            self._workers[info.id] = replace(info)

    def heartbeat_worker(self, worker_id: str, *, inflight: int, at: float) -> None:
        with self._cond:
            info = self._workers.get(worker_id)
            if info is not None:
                info.inflight, info.heartbeat_at = inflight, at

    def unregister_worker(self, worker_id: str) -> None:
        with self._cond:
            self._workers.pop(worker_id, None)

    def list_workers(self) -> list[WorkerInfo]:
        with self._cond:
            return sorted((replace(w) for w in self._workers.values()), key=lambda w: w.started_at)


class _Dead:
    """A quarantined job as the memory queue keeps it: the bad copy itself."""

    __slots__ = ("at", "job", "queue", "reason")

    def __init__(self, job: Job, queue: str, reason: str, at: float) -> None:
        self.job, self.queue, self.reason, self.at = job, queue, reason, at

    def letter(self, job_id: str) -> DeadLetter:
        return DeadLetter(job_id, self.queue, self.reason, self.at, preview_of(self.job))
