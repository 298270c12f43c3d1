"""The contract every storage engine keeps: where jobs wait, where their history is kept,
and the steps that write both at once.

``BaseJobQueue`` is the delivery contract (at least once, atomic claims under a lease,
order by priority then due time then FIFO, undecodable records quarantined);
``BaseResultBackend`` keeps outcomes and history; a ``JointWriter`` does the four steps
that touch both (submit, claim, settle, cancel) in one atomic step each when both live
in one store, and ``TwoStepWriter`` does them as two writes otherwise.
``tests/conformance`` runs one suite against all five engines; ``nuvom plugin test``
runs ``nuvom.plugins.conformance`` against a plugin's backends.
"""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

from nuvom.clock import SYSTEM_CLOCK, Clock
from nuvom.errors import BackendError
from nuvom.job import Job, JobStatus
from nuvom.records import ErrorInfo, JobRecord, Outcome, Schedule, TickClaim

if TYPE_CHECKING:
    from nuvom.records import WorkerInfo

ALL_QUEUES = "*"  # the queue name of a stats row that covers every queue
# A claimed tick's key is kept this long: far past any scheduler still about to try it.
TICKS_KEPT_SECS = 86_400.0
#: The queue names a claim may take jobs from; ``None``: every queue.
Queues = Sequence[str] | None
#: What a submit did not store because a unique key was held: {job id: the holder's id}.
Duplicates = dict[str, str]


@dataclass(slots=True)
class QueueStats:
    """What one queue holds now, for ``nuvom queue stats``.

    ``expired`` jobs are claimed but their lease ran out: they are claimed again
    on the next poll. ``lease_owners`` counts running jobs per worker id.
    """

    queue: str
    pending: int = 0
    scheduled: int = 0
    running: int = 0
    expired: int = 0
    quarantined: int = 0
    lease_owners: dict[str, int] = field(default_factory=dict)
    #: Claims skip this queue (``pause_queue``).
    paused: bool = False
    #: Waiting jobs a limit held back, per hold tag (``nuvom.limits``: "rate:<task>" …).
    held: dict[str, int] = field(default_factory=dict)

    @staticmethod
    def totals(rows: Sequence[QueueStats]) -> dict[str, int]:
        """The flat counts ``BaseJobQueue.stats`` returns, summed over ``rows``."""
        keys = ("pending", "scheduled", "running", "expired", "quarantined")
        totals = {key: sum(getattr(row, key) for row in rows) for key in keys}
        totals["waiting"] = totals["pending"] + totals["scheduled"]
        return totals


@dataclass(slots=True)
class Claimed:
    """What one claim took: the jobs, and ``(job id, reason)`` of each record it set aside."""

    jobs: list[Job]
    quarantined: list[tuple[str, str]] = field(default_factory=list)


@dataclass(slots=True)
class Resolved:
    """What resolving finished jobs changed: jobs released to wait (ids), and jobs
    cancelled because one they waited for did not succeed (id, reason)."""

    released: list[str] = field(default_factory=list)
    cancelled: list[tuple[str, str]] = field(default_factory=list)

    def add(self, other: Resolved | None) -> None:
        if other is not None:
            self.released += other.released
            self.cancelled += other.cancelled


@dataclass(frozen=True, slots=True)
class Hold:
    """A claimed job given back by ``BaseJobQueue.hold``: why (a hold tag, ``nuvom.limits``)
    and when it may be claimed again."""

    job_id: str
    tag: str
    due_at: float


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """A quarantined record: set aside by a claim because it could not be decoded or run.

    ``preview`` is the start of what is stored, as text a person can read (bytes shown
    with ``repr``), at most ``PREVIEW_CHARS``; ``quarantined_at`` is None where the
    engine does not record it.
    """

    id: str
    queue: str
    reason: str
    quarantined_at: float | None = None
    preview: str = ""


PREVIEW_CHARS = 300


def preview_of(stored: bytes | str | object) -> str:
    """``DeadLetter.preview`` of a stored value: text as it is, anything else by ``repr``."""
    text = stored if isinstance(stored, str) else repr(stored)
    return text if len(text) <= PREVIEW_CHARS else text[: PREVIEW_CHARS - 1] + "…"


@dataclass(frozen=True, slots=True)
class JobQuery:
    """Which job records ``find_jobs`` returns, newest update first, a page at a time.

    ``before`` is the keyset of the last record of the previous page: its
    ``(updated_at, id)``; the next page starts strictly after it (never an OFFSET, so a
    page stays right while jobs keep finishing). ``search`` matches a substring of the id
    or of the call as ``repr`` shows its arguments; ``tasks`` are task names (a tag filter
    is resolved to the tasks that carry it before it gets here).
    """

    status: JobStatus | None = None
    queue: str | None = None
    tasks: tuple[str, ...] | None = None
    since: float | None = None
    until: float | None = None
    search: str | None = None
    before: tuple[float, str] | None = None
    limit: int = 50

    def matches(self, record: JobRecord) -> bool:
        """Whether ``record`` passes every filter (the keyset too)."""
        updated = record.updated_at or 0.0
        if self.status is not None and record.status is not self.status:
            return False
        if self.queue is not None and record.queue != self.queue:
            return False
        if self.tasks is not None and record.func_name not in self.tasks:
            return False
        if self.since is not None and updated < self.since:
            return False
        if self.until is not None and updated >= self.until:
            return False
        if self.before is not None and (updated, record.id) >= self.before:
            return False
        return not self.search or self.search in record.id or self.search in call_text(record)


def call_text(record: JobRecord) -> str:
    """``add(1, 2, scale=3)``: what ``JobQuery.search`` looks in besides the id."""
    parts = [repr(a) for a in record.args] + [f"{k}={v!r}" for k, v in record.kwargs.items()]
    return f"{record.func_name or '?'}({', '.join(parts)})"


@dataclass(slots=True)
class Activity:
    """What finished in a window, for the dashboard's overview: per bucket of
    ``bucket_secs`` from ``since``, counts of attempts that ended SUCCESS, FAILED or
    RETRYING; and per task its finished jobs' run times (p50, p95 seconds, how many)."""

    since: float
    bucket_secs: float
    buckets: list[dict[str, int]] = field(default_factory=list)
    run_times: dict[str, tuple[float, float, int]] = field(default_factory=dict)


ACTIVITY_STATUSES = ("SUCCESS", "FAILED", "RETRYING")
#: The most records a default ``find_jobs``/``activity`` reads (built-ins read their index).
SCAN_LIMIT = 20_000


def activity_of(records: Sequence[JobRecord], since: float, until: float,
                bucket_secs: float) -> Activity:  # fmt: skip
    """``Activity`` computed from job records (their attempt histories)."""
    count = max(1, int((until - since) // bucket_secs) + 1)
    activity = Activity(
        since, bucket_secs, [dict.fromkeys(ACTIVITY_STATUSES, 0) for _ in range(count)]
    )
    took: dict[str, list[float]] = {}
    for record in records:
        # A listing may leave the history out: then the job's own end is its last attempt's.
        ends = [(a.finished_at, a.status) for a in record.history] or [
            (record.finished_at, record.status.value)
        ]
        for ended, status in ends:
            if ended is not None and since <= ended < until and status in ACTIVITY_STATUSES:
                bucket = activity.buckets[min(count - 1, int((ended - since) // bucket_secs))]
                bucket[status] += 1
        took_secs = record.duration_secs
        finished = record.finished_at
        if (
            record.status is JobStatus.SUCCESS
            and took_secs is not None
            and (finished or 0) >= since
        ):
            took.setdefault(record.func_name or "?", []).append(took_secs)
    for task, times in took.items():
        times.sort()
        activity.run_times[task] = (_quantile(times, 0.5), _quantile(times, 0.95), len(times))
    return activity


def _quantile(ordered: Sequence[float], q: float) -> float:
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def cancel_reason(dep: str, succeeded: bool) -> str:
    """Why a parked job is cancelled when ``dep`` finished: the same words on every engine."""
    if succeeded:
        return f"errback not needed: job {dep} and every job it waits for succeeded"
    return f"job {dep}, which it waits for, did not succeed"


def claim_order(claims: Sequence[TickClaim]) -> list[int]:
    """Indexes of ``claims`` in the order ``fire_ticks`` takes them: by schedule, then tick."""
    return sorted(range(len(claims)), key=lambda i: (claims[i].schedule_id, claims[i].tick))


class BaseJobQueue(ABC):
    """Where jobs wait. Subclasses implement the abstract methods; the rest has defaults.

    Every method is safe to call from several threads at once. Backends marked
    ``shared_across_processes`` also keep the contract across processes and hosts.
    """

    name: ClassVar[str] = "base"
    #: True when producers and workers in different processes see the same jobs.
    shared_across_processes: ClassVar[bool] = False
    #: True when ``wait_for_jobs`` returns as soon as a job arrives (push), not by polling.
    pushes_wakeups: ClassVar[bool] = False
    #: True when the backend records workers (``list_workers`` means something).
    records_workers: ClassVar[bool] = False
    #: True when it parks jobs that wait for others (workflows: ``resolve`` below).
    keeps_dependencies: ClassVar[bool] = False
    #: True when it enforces flow control: limits, unique keys, paused queues (below).
    keeps_limits: ClassVar[bool] = False
    #: True when its claims pass over the jobs a claimer refused (``refuse`` below).
    honours_refusals: ClassVar[bool] = False

    def __init__(self, *, clock: Clock = SYSTEM_CLOCK) -> None:
        self.clock = clock

    # -- producing -------------------------------------------------------
    @abstractmethod
    def enqueue(self, job: Job) -> None:
        """Store one job durably; it is claimable from ``job.due_at`` (or now when None).

        Raises ``SerializationError`` for a payload that cannot be stored and
        ``BackendUnavailable`` when the store cannot be reached; never drops silently.
        Enqueueing an id that is already queued replaces that queued job.
        """

    def enqueue_many(self, jobs: Sequence[Job]) -> Duplicates | None:
        """Store many jobs, atomically where the backend can (all or none).

        A queue that ``keeps_limits`` stores no job whose unique key (``Job.unique``) is
        held and returns those (see "flow control"). The default loops over ``enqueue``,
        is not atomic and keeps no keys; built-in backends override it.
        """
        for job in jobs:
            self.enqueue(job)
        return None

    def check_jobs(self, jobs: Sequence[Job]) -> None:  # noqa: B027 - optional hook
        """Raise ``SerializationError`` for a job this queue could not store; write nothing.

        The two-step submit calls it before recording the jobs, so a job the queue
        refuses never leaves a record behind. Default: nothing to check.
        """

    # -- consuming -------------------------------------------------------
    @abstractmethod
    def pop_batch(
        self, n: int, *, worker_id: str, lease_secs: float, queues: Queues = None
    ) -> list[Job]:
        """Claim up to ``n`` due jobs for ``worker_id`` until now + ``lease_secs``.

        Atomic: no job is held by two claimers at once. Jobs whose lease expired
        are claimable again. Each claimed job's ``attempts`` goes up by one.
        Returned in order: higher priority first, then earlier due time, then FIFO.
        Undecodable records are quarantined (logged, never returned). Non-blocking.
        A queue that ``keeps_limits`` skips paused queues and holds back the jobs whose
        limits do not allow them now, in the same atomic step ("flow control" below).
        """

    def claim_batch(
        self, n: int, *, worker_id: str, lease_secs: float, queues: Queues = None
    ) -> Claimed:
        """``pop_batch``, plus ``(job id, reason)`` for each record it quarantined.

        The default reports none; backends that quarantine override it, so the
        result backend can record those jobs FAILED (else their waiters wait for ever).
        """
        return Claimed(self.pop_batch(n, worker_id=worker_id, lease_secs=lease_secs, queues=queues))

    @abstractmethod
    def ack(self, job_id: str, *, worker_id: str | None = None) -> None:
        """Remove a finished job. Idempotent; with ``worker_id`` only if that worker holds it."""

    @abstractmethod
    def nack(self, job_id: str, *, retry_at: float, worker_id: str | None = None) -> None:
        """Give a claimed job back, claimable again from ``retry_at``. Attempts are kept."""

    @abstractmethod
    def heartbeat(self, job_ids: Sequence[str], *, worker_id: str, lease_secs: float) -> list[str]:
        """Extend the leases ``worker_id`` holds on ``job_ids``; return the ids still held."""

    def adjust_attempts(self, deltas: Mapping[str, int], *, worker_id: str) -> list[str]:
        """Add each delta to the attempt count of a job ``worker_id`` holds (never below 0);
        return the ids changed.

        A claim counts an attempt. A worker refunds it (-1) for a job it holds but has not
        started, and charges it again (+1) when the job starts, so a worker that dies with
        jobs only prefetched does not use up their lost-attempt allowance. The default
        changes nothing (the worker then never refunds).
        """
        return []

    def ack_outcomes(self, outcomes: Sequence[Outcome]) -> Resolved | None:
        """Ack each outcome's job, or nack it at its ``retry_at`` when it will be retried.

        Each acts only while the outcome's ``worker_id`` holds the job. One round
        trip where the backend can; the default acks and nacks one by one. A queue
        that ``keeps_dependencies`` resolves the dependents of each job it acked with a
        final outcome in the same atomic step, and returns what that changed.
        """
        for outcome in outcomes:
            job_id, owner = outcome.job.id, outcome.worker_id
            if outcome.status is JobStatus.RETRYING and outcome.retry_at is not None:
                self.nack(job_id, retry_at=outcome.retry_at, worker_id=owner)
            else:
                self.ack(job_id, worker_id=owner)
        return None

    def release(self, job_ids: Sequence[str], *, worker_id: str) -> None:
        """Give back claimed jobs that did not finish (shutdown): claimable now, attempt uncounted.

        The default nacks each with ``retry_at`` = now (the attempt stays counted).
        """
        now = self.clock.time()
        for job_id in job_ids:
            self.nack(job_id, retry_at=now, worker_id=worker_id)

    # -- schedules (``nuvom/scheduler.py`` drives them) ----------------------
    # A tick is claimed once: ``fire_tick`` keys it on (schedule id, tick time) and, in the
    # same atomic step, enqueues its job and moves the schedule on, so any number of
    # schedulers may race on it and exactly one wins. Queues that keep no schedules
    # (a plugin's, say) refuse with ``BackendError``.

    def save_schedule(self, schedule: Schedule) -> None:
        """Create or replace the schedule ``schedule.id``, every field as given."""
        raise self._no_schedules()

    def list_schedules(self) -> list[Schedule]:
        """Every schedule, paused or not, by id."""
        raise self._no_schedules()

    def remove_schedule(self, schedule_id: str) -> bool:
        """Delete a schedule (its fired jobs stay); False if there was none."""
        raise self._no_schedules()

    def pause_schedule(self, schedule_id: str, paused: bool) -> bool:
        """Pause or resume a schedule; False if there is none."""
        raise self._no_schedules()

    def due_schedules(self, now: float, limit: int) -> list[Schedule]:
        """Up to ``limit`` schedules not paused whose ``next_run_at`` is at or before ``now``,
        earliest first."""
        raise self._no_schedules()

    def next_schedule_at(self) -> float | None:
        """The earliest ``next_run_at`` of a schedule not paused (None: there is none), so a
        scheduler can sleep until then."""
        raise self._no_schedules()

    def fire_tick(
        self, schedule_id: str, tick: float, *, job: Job | None, next_run_at: float
    ) -> bool:
        """Claim tick ``tick`` of schedule ``schedule_id``; True if this call won it.

        A tick is claimable once, and only while it is not before the schedule's stored
        ``next_run_at`` (a scheduler that read the schedule before another moved it on
        cannot fire a stale tick). In the same atomic step the winner keys the tick, enqueues
        ``job`` (None: the tick is skipped, by the overlap or catch-up policy), sets the
        schedule's ``last_run_at`` to ``tick``, its ``last_job_id`` to the job's id (kept
        when skipped) and its ``next_run_at`` to ``next_run_at``. A tick already claimed or
        stale, or a schedule that is gone or paused, changes nothing and returns False.
        """
        raise self._no_schedules()

    def fire_ticks(self, claims: Sequence[TickClaim]) -> list[bool]:
        """``fire_tick`` for many claims at once; whether each won, in the order given.

        Claims are taken in (schedule id, tick) order — one schedule's later tick sees the
        move of its earlier one, and racing callers lock schedules in the same order — each
        as atomic as ``fire_tick`` on its own: a claim lost changes nothing of the others.
        Engines take them in one transaction or round trip (a scheduler's pass of 1,000 due
        schedules is one call); this default claims them one by one. A job that cannot be
        stored raises before anything is claimed on the engines that batch; here, claims
        taken before it stay taken (their ticks' keys make a retry of them lose).
        """
        won = [False] * len(claims)
        for i in claim_order(claims):
            claim = claims[i]
            won[i] = self.fire_tick(
                claim.schedule_id, claim.tick, job=claim.job, next_run_at=claim.next_run_at
            )
        return won

    def _no_workflows(self) -> BackendError:
        return BackendError(
            f"the {self.name} queue backend keeps no workflows (jobs that wait for other "
            "jobs): use memory, file, sqlite, postgres or redis",
            backend=self.name,
        )

    def _no_schedules(self) -> BackendError:
        return BackendError(f"the {self.name} queue backend keeps no schedules", backend=self.name)

    # -- workflows: jobs that wait for other jobs (``nuvom/workflow.py`` builds them) -------
    # A job whose ``depends_on`` names job ids is *parked* by ``enqueue_many``: stored, not
    # claimable, not counted by ``qsize``, until every job it waits for has succeeded —
    # each counted once, however often it is settled — and then it waits like any job
    # enqueued then. Resolving a finished job is one atomic step with the ack of its final
    # outcome (``ack_outcomes``, and the joint writers' settle): no crash between them
    # leaves a callback enqueued twice or never. Only a queue that ``keeps_dependencies``
    # takes such jobs; ``nuvom.queue`` refuses them for the others.

    def resolve(self, finished: Sequence[tuple[str, bool]]) -> Resolved:
        """Tell the dependents of finished jobs: ``(job id, succeeded)`` each.

        Succeeded: each parked dependent counts it (once: a second resolve of the same
        job changes nothing); one that counted all it waits for is released — waiting now,
        or, an errback (``Job.on_failure``), cancelled: nothing failed. Not succeeded
        (failed or cancelled for good): each parked dependent is cancelled, and its own
        dependents in turn, with the reason; an errback among them is released instead.
        Jobs no one waits for change nothing. Atomic as a whole.
        """
        raise self._no_workflows()

    def parked_jobs(self) -> list[Job]:
        """The parked jobs, by id, with what each still waits for in ``origin["after"]``
        untouched (the store keeps its own count)."""
        return []

    # -- flow control: limits shared by every worker (``nuvom/limits.py`` defines them) ----
    # Enforced by a queue that ``keeps_limits``, inside the atomic steps above, so claimers
    # on any number of processes and hosts never exceed them:
    #
    # * Paused queues: a claim takes nothing from a queue ``pause_queue`` paused (pending,
    #   scheduled, retrying or with an expired lease); its jobs stay where they are.
    # * Claims take candidates in order and check each one's limits before taking it —
    #   ``Job.concurrency_limit`` first: fewer than ``limit`` jobs of its key held now
    #   (claimed, lease not expired; this claim's own picks count); then ``Job.rate_limit``:
    #   the task's token bucket (``burst`` tokens when new, refilled at ``per_sec``, never
    #   above ``burst``) has a whole token, which the claim takes. A job a limit refuses is
    #   *held*: not claimed, its attempts unchanged, it keeps waiting with its hold tag
    #   (``nuvom.limits.rate_tag``/``concurrency_tag``, ``hold_of``), and it is not due
    #   again before its limit could allow it: a rate hold until its bucket has a token
    #   (the store may spread the holds of one claim over the tokens to come); a
    #   concurrency hold until a job of its key stops being held (the ack, nack or release
    #   that frees a slot makes the first held job of the key not yet due, due at once: one
    #   woken per slot freed) or the earliest lease of its key runs out. Held candidates do not count towards ``n``: the
    #   claim goes on to the jobs behind them, so a queue full of held jobs does not look
    #   empty to a worker while other jobs wait. A claim's hold tags are cleared when the
    #   job is claimed.
    # * Unique keys: ``enqueue_many`` (and the joint writers' submit) store no job whose
    #   ``Job.unique`` key is held — by a job waiting or claimed, or by one that finished
    #   less than its ``keep_secs`` ago — and return ``{its id: the holder's id}``; racing
    #   submits of one key store exactly one job. The key is let go (or kept ``keep_secs``
    #   more) in the step that acks the holder's final outcome, cancels it or clears it.
    # Queues that keep no limits (a plugin's) refuse jobs that carry them, by name.

    def hold(self, held: Sequence[Hold], *, worker_id: str) -> list[str]:
        """Give back jobs ``worker_id`` holds that a limit outside the store keeps from
        running here — a job of a task version this worker does not run — each held as a
        claim holds one: its attempt refunded, its lease and concurrency slot freed, its
        unique key kept, its hold tag set, claimable again from ``due_at``. Returns the ids
        given back (a job no longer held by ``worker_id`` is left alone).

        The default refunds the attempt and nacks (no tag: ``hold_of`` cannot say why).
        """
        mine = self.adjust_attempts({h.job_id: -1 for h in held}, worker_id=worker_id)
        for h in held:
            if h.job_id in mine:
                self.nack(h.job_id, retry_at=h.due_at, worker_id=worker_id)
        return [h.job_id for h in held if h.job_id in mine]

    def refuse(self, tags: Iterable[str], *, worker_id: str) -> None:
        """From now on, leave the waiting jobs held with one of ``tags`` (the tag ``hold``
        gave them) to claimers other than ``worker_id``: its claims through this instance
        pass over them as over a paused queue's jobs — not taken, not changed, not counted
        towards ``n`` — and go on to the jobs behind them. A worker refuses the version tag
        of each task version its code does not run, once it has given such a job back, so
        the job waits for a worker that runs it instead of coming back to the same worker.

        Refusals add up and last as long as this instance. The default keeps them, and a
        queue that ``honours_refusals`` applies them; one that does not leaves them unread
        (a worker then gives such a job back again when it is due, ``VERSION_RECHECK_SECS``
        of ``nuvom/worker.py`` later).
        """
        kept: dict[str, frozenset[str]] = self.__dict__.setdefault("_refusals", {})
        kept[worker_id] = kept.get(worker_id, frozenset()) | frozenset(tags)

    def refused_by(self, worker_id: str) -> frozenset[str]:
        """The hold tags ``worker_id`` refused through this instance (``refuse``)."""
        kept: dict[str, frozenset[str]] = self.__dict__.get("_refusals", {})
        return kept.get(worker_id, frozenset())

    def pause_queue(self, queue: str, paused: bool = True) -> bool:
        """Pause claims from ``queue`` (or resume them); True if that changed anything.

        The pause lives in the store: it survives worker restarts and holds for every
        worker. A queue can be paused before any job is in it.
        """
        raise self._no_limits()

    def paused_queues(self) -> list[str]:
        """The paused queue names, sorted."""
        return []

    def hold_of(self, job_id: str) -> str | None:
        """The hold tag of a waiting job a limit held back at its last claim, or None."""
        return None

    def unique_holder(self, key: str) -> str | None:
        """The id of the job that holds unique key ``key`` now (waiting, claimed, or
        finished less than its ``keep_secs`` ago), or None."""
        return None

    def _no_limits(self) -> BackendError:
        return BackendError(
            f"the {self.name} queue backend keeps no flow control (rate and concurrency "
            "limits, unique jobs, paused queues): use memory, file, sqlite, postgres or redis",
            backend=self.name,
        )

    # -- inspecting and removing -------------------------------------------
    @abstractmethod
    def qsize(self, queue: str | None = None) -> int:
        """Jobs waiting (due or scheduled), not counting claimed ones."""

    @abstractmethod
    def clear(self) -> int:
        """Remove every job, claimed or not; return how many."""

    @abstractmethod
    def cancel(self, job_id: str) -> bool:
        """Remove a job that is waiting; False if it is claimed or unknown."""

    def purge(self, queue: str, results: BaseResultBackend) -> int:
        """Cancel every job waiting in ``queue`` (not the claimed ones), each recorded
        CANCELLED; return how many. The default cancels them one by one (each atomic)."""
        return sum(
            1
            for job in self.waiting_jobs()
            if job.queue == queue and self.cancel_job(job.id, results)
        )

    def waiting_jobs(self) -> list[Job]:
        """Every job not claimed now, in claim order (``nuvom migrate-queue`` moves them).

        Undecodable records are skipped with a logged warning. Default: refuses.
        """
        raise BackendError(
            f"the {self.name!r} queue cannot list its waiting jobs", backend=self.name
        )

    def stats(self) -> dict[str, int]:
        """Flat counts for ``nuvom queue stats``; backends add what they know."""
        return {"waiting": self.qsize()}

    def queue_stats(self) -> list[QueueStats]:
        """Counts per queue (``nuvom queue stats``). Read-only; a snapshot, not a transaction.

        The default is one row for all queues (``queue == "*"``) built from ``stats()``;
        built-in backends override it with one row per queue and the lease owners.
        """
        counts = self.stats()
        return [
            QueueStats(
                ALL_QUEUES,
                pending=counts.get("pending", counts.get("waiting", 0)),
                scheduled=counts.get("scheduled", 0),
                running=counts.get("running", 0),
                expired=counts.get("expired", 0),
                quarantined=counts.get("quarantined", 0),
            )
        ]

    # -- dead letters: what claims quarantined -------------------------------------
    # A claim sets aside a record it cannot decode or run (``Claimed.quarantined``) with
    # its reason; it stays, never claimed, until a person deletes it or re-injects it once
    # what spoilt it is fixed (a signing key, a codec, a hand edit): ``revive_dead``
    # decodes it with today's settings, the caller submits the job, then ``forget_dead``.
    # A queue that quarantines nothing (a plugin's) lists none.
    def dead_letters(self, *, limit: int = 100, after: str | None = None) -> list[DeadLetter]:
        """Quarantined records by id, ascending, starting after the id ``after``."""
        return []

    def revive_dead(self, job_id: str) -> Job | None:
        """The quarantined ``job_id`` decoded as today's settings read it, or None when there
        is no such dead letter; ``CorruptJob`` naming why when it still cannot be decoded
        or run. Changes nothing: the letter stays until ``forget_dead``."""
        return None

    def forget_dead(self, job_id: str) -> bool:
        """Delete a dead letter (its record only: the job's history stays); False if none."""
        return False

    # -- waking up -------------------------------------------------------
    def listen(self, worker_id: str) -> None:  # noqa: B027 - optional hook
        """Get ready to be woken when jobs arrive (the worker's waker thread calls it once).

        Raises ``BackendError`` when the push channel cannot be opened; the worker then polls.
        """

    def wait_for_jobs(self, timeout: float) -> bool:
        """Block up to ``timeout`` seconds or until new jobs may be claimable.

        True when woken by a push. The default only sleeps: polling backends are
        polled by the worker with adaptive back-off.
        """
        time.sleep(timeout)
        return False

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release connections and files. Idempotent."""

    # -- worker registry (optional) ----------------------------------------
    # Workers record themselves so ``nuvom workers`` can list them. A backend
    # that keeps no registry leaves these as they are: workers run the same,
    # and the listing says the backend does not record workers.

    def register_worker(self, info: WorkerInfo) -> None:  # noqa: B027 - optional hook
        """Record a worker that started (replacing any record with its id)."""

    def heartbeat_worker(self, worker_id: str, *, inflight: int, at: float) -> None:  # noqa: B027
        """Note that ``worker_id`` is alive at ``at`` holding ``inflight`` jobs."""

    def unregister_worker(self, worker_id: str) -> None:  # noqa: B027 - optional hook
        """Forget a worker that stopped cleanly. Idempotent."""

    def list_workers(self) -> list[WorkerInfo]:
        """Recorded workers, oldest first, live and lost (``WorkerInfo.is_lost``)."""
        return []

    # -- the steps that also write the result backend ----------------------
    # nuvom calls these four; each goes through ``writer(self, results)``: one
    # atomic step when the result backend shares this queue's store, else two writes.

    def submit(self, jobs: Sequence[Job], results: BaseResultBackend) -> Duplicates:
        """Enqueue ``jobs`` and record them as PENDING/SCHEDULED (``JointWriter.submit``);
        the unique jobs not stored, each with the id of the job that holds its key."""
        if not self.keeps_dependencies and waits(jobs):
            raise self._no_workflows()
        if not self.keeps_limits and limited(jobs):
            raise self._no_limits()
        return self._writer_for(results).submit(jobs)

    def claim(
        self,
        n: int,
        *,
        worker_id: str,
        lease_secs: float,
        results: BaseResultBackend,
        queues: Queues = None,
    ) -> list[Job]:
        """Claim jobs and record them RUNNING (``JointWriter.claim``)."""
        return self._writer_for(results).claim(
            n, worker_id=worker_id, lease_secs=lease_secs, queues=queues
        )

    def settle(self, outcomes: Sequence[Outcome], results: BaseResultBackend) -> None:
        """Store outcomes, then ack finished jobs and nack retries (``JointWriter.settle``)."""
        self._writer_for(results).settle(outcomes)

    def cancel_job(self, job_id: str, results: BaseResultBackend) -> bool:
        """Cancel a waiting job and record it CANCELLED; False if it is not waiting."""
        return self._writer_for(results).cancel(job_id)

    def _writer_for(self, results: BaseResultBackend) -> JointWriter:
        # One result backend per queue in practice: keep its writer for the next call.
        cached: tuple[BaseResultBackend, JointWriter] | None = getattr(self, "_paired", None)
        if cached is not None and cached[0] is results:
            return cached[1]
        made = writer(self, results)
        self._paired = (results, made)
        return made


class BaseResultBackend(ABC):
    """Keeps what happened to each job. Methods are safe to call from several threads.

    Only the four methods of nuvom's first releases are abstract, so a plugin that
    writes just ``set_result/get_result/set_error/get_error`` works: the richer
    methods have documented defaults derived from those four (a listing refuses
    with a ``BackendError`` saying so), which built-in backends override. A plugin
    class with the four methods and no base is wrapped (``nuvom.plugins.registry``).
    """

    #: What logs and errors call it; a plugin backend left at "base" gets its registered name.
    name: str = "base"
    shared_across_processes: ClassVar[bool] = False

    @abstractmethod
    def set_result(self, job_id: str, result: Any) -> None:
        """Store a successful job's return value (``None`` included)."""

    @abstractmethod
    def get_result(self, job_id: str) -> Any:
        """The stored return value, or ``None`` when there is none."""

    @abstractmethod
    def set_error(self, job_id: str, error: ErrorInfo | BaseException | str) -> None:
        """Store why a job failed for good."""

    @abstractmethod
    def get_error(self, job_id: str) -> str | None:
        """``"Type: message"`` of the failure, or ``None`` when the job did not fail."""

    # -- richer methods, with defaults built on the four above ------------
    def record_enqueued(self, jobs: Sequence[Job]) -> None:  # noqa: B027 - optional hook
        """Note jobs as PENDING or SCHEDULED. Default: nothing (history starts at the outcome)."""

    def record_fired(self, jobs: Sequence[Job]) -> None:
        """Record the jobs of fired ticks PENDING, each only if it has no record yet: a
        worker may already have claimed or finished it, and that record must stand.

        The default checks then writes (a narrow race); engines do it in one step.
        """
        for job in jobs:
            if self.get_status(job.id) is None:
                self.record_enqueued([job])

    def mark_running(  # noqa: B027 - optional hook
        self, jobs: Sequence[Job], *, worker_id: str, started_at: float
    ) -> None:
        """Note that an attempt of each job started. Default: nothing."""

    def mark_released(self, job_ids: Sequence[str]) -> None:  # noqa: B027 - optional hook
        """Note that running jobs went back to the queue unfinished (shutdown). Default: nothing."""

    def mark_cancelled(self, job_id: str, *, at: float) -> None:
        """Note a job as CANCELLED. Default: stored as its error."""
        self.set_error(job_id, ErrorInfo("Cancelled", "job was cancelled"))

    def mark_dependents_cancelled(self, cancelled: Sequence[tuple[str, str]], *, at: float) -> None:
        """Note jobs CANCELLED because one they waited for did not succeed: (id, reason),
        the reason kept as the error message (error type ``Cancelled``). Default: stored as
        each one's error, which reads back CANCELLED."""
        for job_id, reason in cancelled:
            self.set_error(job_id, ErrorInfo("Cancelled", reason))

    def save_outcomes(self, outcomes: Sequence[Outcome]) -> None:
        """Store the end of each attempt. Default: ``set_result``/``set_error`` per final one."""
        for outcome in outcomes:
            if outcome.status is JobStatus.SUCCESS:
                self.set_result(outcome.job.id, outcome.result if outcome.store_result else None)
            elif outcome.status is JobStatus.FAILED and outcome.error is not None:
                self.set_error(outcome.job.id, outcome.error)

    def get_full(self, job_id: str) -> JobRecord | None:
        """Everything known about a job, or ``None``.

        The default can only tell a failure from a non-``None`` result; a job
        that returned ``None`` looks unfinished, and a job not finished yet is
        unknown. Built-in backends know better.
        """
        error = self.get_error(job_id)
        if error is not None:
            info = self.describe_error(str(error))
            status = JobStatus.CANCELLED if info.type == "Cancelled" else JobStatus.FAILED
            return JobRecord(
                id=job_id, status=status, error_type=info.type, error_message=info.message
            )
        result = self.get_result(job_id)
        if result is None:
            return None
        return JobRecord(id=job_id, status=JobStatus.SUCCESS, result=result, has_result=True)

    def get_status(self, job_id: str) -> JobStatus | None:
        """A job's status alone, or ``None`` when unknown; built-ins read less than ``get_full``."""
        record = self.get_full(job_id)
        return None if record is None else record.status

    def list_jobs(
        self, *, status: JobStatus | None = None, limit: int = 20, offset: int = 0
    ) -> list[JobRecord]:
        """Most recently updated jobs first. Default: refuses, as four methods cannot list."""
        raise BackendError(
            f"the {self.name!r} result backend keeps no job history: it stores only each "
            "job's result or error (look one up with `nuvom status <id>`)",
            backend=self.name,
        )

    def status_counts(self) -> dict[str, int] | None:
        """How many jobs are in each status; ``None`` when the backend keeps no history."""
        return None

    def failed_by_queue(self) -> dict[str, int] | None:
        """FAILED jobs per queue name, for ``nuvom queue stats``; ``None`` when unknown.

        The default puts them all under ``ALL_QUEUES`` from ``status_counts``.
        """
        counts = self.status_counts()
        return None if counts is None else {ALL_QUEUES: int(counts.get("FAILED", 0))}

    def prune(self, *, older_than: float, statuses: Sequence[JobStatus] | None = None) -> int:
        """Delete finished jobs last updated before ``older_than``; return how many. Default: 0."""
        return 0

    # -- listings for people (the dashboard) ---------------------------------
    def find_jobs(self, query: JobQuery) -> list[JobRecord]:
        """Up to ``query.limit`` records passing ``query``, most recently updated first
        (ties by id, descending), starting after ``query.before``.

        The default reads ``list_jobs`` pages (at most ``SCAN_LIMIT`` records) and filters
        them here; built-in backends answer from their own index.
        """
        found: list[JobRecord] = []
        page = 500
        for offset in range(0, SCAN_LIMIT, page):
            batch = self.list_jobs(status=query.status, limit=page, offset=offset)
            found += [r for r in batch if query.matches(r)]
            if len(batch) < page:
                break
        found.sort(key=lambda r: (r.updated_at or 0.0, r.id), reverse=True)
        return found[: query.limit]

    def activity(self, *, since: float, until: float, bucket_secs: float) -> Activity:
        """What ended between ``since`` and ``until`` (``Activity``). The default reads the
        records updated since then through ``find_jobs``."""
        records = self.find_jobs(JobQuery(since=since, limit=SCAN_LIMIT))
        # Retried jobs' earlier attempts are in their full records only.
        full = [self.get_full(r.id) or r if r.attempts > 1 and not r.history else r
                for r in records]  # fmt: skip
        return activity_of(full, since, until, bucket_secs)

    def delete_job(self, job_id: str) -> bool:
        """Forget a finished job's record (result, error, history); False if there is none
        or it is not finished (cancel it first)."""
        raise BackendError(f"the {self.name!r} result backend cannot delete a job's record",
                           backend=self.name)  # fmt: skip

    def joint_writer(self, queue: BaseJobQueue) -> JointWriter | None:
        """A writer that commits each step on ``queue`` and here at once, or ``None``.

        Built-in backends return one when ``queue`` lives in the same store (one
        SQLite file, one PostgreSQL schema, one Redis, one process's memory).
        ``None`` means the two-write default, ``TwoStepWriter``.
        """
        return None

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release connections and files. Idempotent."""

    @staticmethod
    def describe_error(error: ErrorInfo | BaseException | str) -> ErrorInfo:
        if isinstance(error, ErrorInfo):
            return error
        if isinstance(error, BaseException):
            return ErrorInfo.from_exception(error)
        kind, sep, message = error.partition(": ")
        return ErrorInfo(kind, message) if sep else ErrorInfo("Error", error)


class JointWriter(ABC):
    """The four steps that change a queue and its result backend together.

    A job's queue state and its record must tell the same story: waiting and
    PENDING/SCHEDULED/RETRYING, claimed and RUNNING, gone and final. A joint
    writer makes each step one atomic write (a transaction, a MULTI, a lock),
    so no crash leaves them disagreeing; the two-step default can, between its
    two writes, and then relies on at-least-once delivery to put it right.
    """

    @abstractmethod
    def submit(self, jobs: Sequence[Job]) -> Duplicates:
        """Enqueue ``jobs`` and record them PENDING (SCHEDULED when due later). All or none.

        A job whose unique key is held is neither stored nor recorded: it is returned,
        with the holder's id (``BaseJobQueue.enqueue_many``)."""

    @abstractmethod
    def claim(
        self, n: int, *, worker_id: str, lease_secs: float, queues: Queues = None
    ) -> list[Job]:
        """``pop_batch`` and record each claimed job RUNNING with a new attempt (an earlier
        attempt still RUNNING is marked LOST); record each quarantined job FAILED ``CorruptJob``."""

    @abstractmethod
    def settle(self, outcomes: Sequence[Outcome]) -> None:
        """Record each outcome, then ack a finished job or nack a retry at its ``retry_at``."""

    @abstractmethod
    def cancel(self, job_id: str) -> bool:
        """Remove a waiting job and record it CANCELLED; False (and nothing written) if it is
        claimed, finished or unknown."""


class TwoStepWriter(JointWriter):
    """Each step as two writes, for a queue and a result backend in different stores.

    The order of the two is the one whose crash in between is safe: records
    before the queue on submit (no worker can finish a job before it is
    recorded) and on settle (a crash re-runs the job rather than losing its
    outcome); the claim before its record (a crash leaves the job to be
    claimed again once its lease runs out).
    """

    def __init__(self, queue: BaseJobQueue, results: BaseResultBackend) -> None:
        self.queue = queue
        self.results = results

    def submit(self, jobs: Sequence[Job]) -> Duplicates:
        self.queue.check_jobs(jobs)
        self.results.record_enqueued(jobs)
        duplicates = self.queue.enqueue_many(jobs) or {}
        if duplicates:  # recorded before the queue knew: their records say why they never ran
            self.results.mark_dependents_cancelled(
                [(job_id, duplicate_reason(holder)) for job_id, holder in duplicates.items()],
                at=self.queue.clock.time(),
            )
        self.note(self.queue.resolve(finished_before(jobs, self.results)) if waits(jobs) else None)
        return duplicates

    def claim(
        self, n: int, *, worker_id: str, lease_secs: float, queues: Queues = None
    ) -> list[Job]:
        claimed = self.queue.claim_batch(
            n, worker_id=worker_id, lease_secs=lease_secs, queues=queues
        )
        if claimed.jobs:
            self.results.mark_running(
                claimed.jobs, worker_id=worker_id, started_at=self.queue.clock.time()
            )
        for job_id, reason in claimed.quarantined:
            self.results.set_error(job_id, ErrorInfo("CorruptJob", reason))
        return claimed.jobs

    def settle(self, outcomes: Sequence[Outcome]) -> None:
        self.results.save_outcomes(outcomes)
        self.note(self.queue.ack_outcomes(outcomes))

    def cancel(self, job_id: str) -> bool:
        if not self.queue.cancel(job_id):
            return False
        self.results.mark_cancelled(job_id, at=self.queue.clock.time())
        if self.queue.keeps_dependencies:
            self.note(self.queue.resolve([(job_id, False)]))
        return True

    def note(self, resolved: Resolved | None) -> None:
        """Record the jobs a resolve cancelled (the queue already took them out)."""
        if resolved is not None and resolved.cancelled:
            self.results.mark_dependents_cancelled(resolved.cancelled, at=self.queue.clock.time())


def duplicate_reason(holder: str) -> str:
    return f"not run: a duplicate of job {holder}, which holds the same unique key"


def limited(jobs: Sequence[Job]) -> bool:
    """Whether any of ``jobs`` carries flow control (a limit or a unique key)."""
    return any(job.limited or job.unique is not None for job in jobs)


def waits(jobs: Sequence[Job]) -> bool:
    """Whether any of ``jobs`` waits for another job (an empty group's callback does not)."""
    return any(job.depends_on for job in jobs)


def finished_before(jobs: Sequence[Job], results: BaseResultBackend) -> list[tuple[str, bool]]:
    """The jobs ``jobs`` wait for that already finished for good, as ``resolve`` takes them:
    a dependency done before its dependent was submitted (``handle.then`` on a finished job).
    """
    finished = []
    for dep in dict.fromkeys(d for job in jobs for d in job.depends_on):
        status = results.get_status(dep)
        if status is not None and status.is_final:
            finished.append((dep, status is JobStatus.SUCCESS))
    return finished


def writer(queue: BaseJobQueue, results: BaseResultBackend) -> JointWriter:
    """The writer for this pair: the result backend's joint one if it has one, else two steps."""
    return results.joint_writer(queue) or TwoStepWriter(queue, results)


__all__ = [
    "ALL_QUEUES",
    "Activity",
    "BaseJobQueue",
    "BaseResultBackend",
    "Claimed",
    "Duplicates",
    "Hold",
    "JobQuery",
    "JointWriter",
    "QueueStats",
    "Resolved",
    "TwoStepWriter",
    "writer",
]
