"""What the two SQL engines share, written once: the queue's, the results' and the joint steps
as named queries on a store with ``transaction()`` and ``read()``.

``sqlite/`` and ``postgres/`` each supply their ``sql.py`` (the same names,
their own dialect: the shared statements take the same parameters on both),
their store, and what their server does differently: how a claim is written,
how idle workers are woken, the one-round-trip paths PostgreSQL has.
"""

from __future__ import annotations

import heapq
import logging
import math
from abc import abstractmethod
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager
from functools import partial
from itertools import islice
from types import ModuleType
from typing import TYPE_CHECKING, Any, ClassVar, NamedTuple, Protocol

from nuvom.backends.common import (
    Defaults,
    QuarantiningQueue,
    claimed_batch,
    decode_waiting,
    queue_rows,
    record_from_row,
    result_blob,
    retries,
    settle_batches,
    stats_rows,
    stored_result,
)
from nuvom.backends.contract import (
    SCAN_LIMIT,
    TICKS_KEPT_SECS,
    Activity,
    BaseResultBackend,
    Claimed,
    DeadLetter,
    Duplicates,
    Hold,
    JobQuery,
    JointWriter,
    Queues,
    QueueStats,
    Resolved,
    _quantile,
    activity_of,
    cancel_reason,
    claim_order,
    preview_of,
    waits,
)
from nuvom.errors import CorruptJob, SerializationError
from nuvom.job import Job, JobStatus
from nuvom.limits import CONCURRENCY_TAG, concurrency_tag, rate_tag
from nuvom.records import (
    AttemptRecord,
    ErrorInfo,
    JobPayloadCodec,
    JobRecord,
    Outcome,
    Schedule,
    StoredJob,
    TickClaim,
)

PAYLOAD = 7  # where ``queue_rows`` keeps a job's encoded payload
if TYPE_CHECKING:
    from nuvom.clock import Clock
    from nuvom.config import Settings
    from nuvom.serialization import Codec

log = logging.getLogger("nuvom.backends")

Taken = tuple[list[tuple[Job, StoredJob]], list[tuple[StoredJob, str]]]
#: What a claim's second step took: (job, its row, its seq) in claim order, and the corrupt.
TakenLimited = tuple[list[tuple[Job, StoredJob, int]], list[tuple[StoredJob, str]]]
Row = Sequence[Any]
# A claim's second step (flow control) reads candidates in rounds, past the jobs their
# limits hold back: the first round at least CANDIDATES_PER_ROUND, each next one twice as
# many (up to MAX_CANDIDATES_PER_ROUND), CLAIM_ROUNDS at most, so one claim gets past some
# 4,000 held jobs to the jobs behind them (a burst worker takes a short claim for an empty
# queue); held jobs are due later, so the next claim starts past them anyway.
CLAIM_ROUNDS = 8
CANDIDATES_PER_ROUND = 32
MAX_CANDIDATES_PER_ROUND = 1024
# Statuses a job can show while it is still only in nuvom_queue (SQLite reads them from there).
QUEUED_STATUSES = (JobStatus.PENDING, JobStatus.SCHEDULED, JobStatus.RUNNING)
# A listing that filters in Python (a search) reads the rows of its index this many a page.
FIND_PAGE_ROWS = 500
# Index ranges in one page statement of ``find_jobs`` (SQLite allows 500 in a compound).
FIND_ARMS = 64
# ``activity`` takes the run times of at most this many of the latest jobs that succeeded.
RUN_TIME_SAMPLE = 10_000


#: A transaction's handle: an ``sqlite3.Connection`` or a psycopg cursor (``execute`` returns
#: something with ``fetchone``/``fetchall``, and ``executemany`` runs a statement per row).
Cursor = Any


class SQLStore(Protocol):
    def transaction(self) -> AbstractContextManager[Any]: ...

    def read(self, query: str, params: Any = ...) -> list[Any]: ...

    def reads(self, *queries: tuple[str, Any]) -> list[list[Any]]: ...

    def close(self) -> None: ...


class SQLBackend:
    """What an SQL engine's queue and its result backend are both made of: a store (closed
    with the backend when it opened it), a codec and a clock. The engine's own subclass
    (``SQLiteBackend``, ``PostgresBackend``) takes the arguments and calls ``attach``."""

    sql: ClassVar[ModuleType]
    store: Any  # the engine's SQLStore
    codec: Codec
    payloads: JobPayloadCodec
    clock: Clock
    _owns_store: bool

    def attach(
        self,
        given: Any,
        defaults: Defaults,
        codec: Codec | None,
        clock: Clock | None,
        where: Callable[[Settings], tuple[Any, Callable[[], Any]]],
    ) -> None:
        """Use the store ``given`` (not this backend's to close), or the one ``where(settings)``
        names by its key and opens: the runtime's for that key, or one of this backend's own."""
        if given is not None:
            self.store, self._owns_store = given, False
        else:
            self.store, self._owns_store = defaults.store(*where(defaults.settings))
        self.codec, self.clock = defaults.codec(codec), defaults.clock(clock)
        self.payloads = JobPayloadCodec(self.codec)
        self.ready()

    def run_many(self, cur: Cursor, statement: str, rows: Sequence[Any]) -> None:
        """``statement`` once per row, in the caller's transaction (an engine may batch it)."""
        cur.executemany(statement, rows)

    def ready(self) -> None:
        """Called once attached: set up what the subclass adds."""

    @abstractmethod
    def returned(self, cur: Cursor, statement: str, rows: Sequence[Any]) -> list[Row]:
        """Run ``statement`` once per parameter row in a caller's transaction; every row it
        returned, in order (the engine's fastest way to run many and read them back)."""

    def close(self) -> None:
        if self._owns_store:
            self.store.close()


def stored_job(row: Row) -> StoredJob:
    """(id, queue, priority, due_at, attempts, payload) as read back from either engine."""
    return StoredJob(row[0], row[1], row[2], row[3], row[4], bytes(row[5]))


def stored_schedules(codec: Codec, rows: Sequence[Row]) -> list[Schedule]:
    """Rows of (id, definition, next_run_at, paused, last_run_at, last_job_id) as schedules.

    A definition that no longer decodes is skipped with a logged warning (naming the id,
    so it can be removed): one bad row must not stop the scheduler firing the others.
    """
    schedules: list[Schedule] = []
    for schedule_id, blob, next_run_at, paused, last_run_at, last_job_id in rows:
        try:
            definition = codec.loads(bytes(blob))
            if not isinstance(definition, dict):
                raise SerializationError("the definition is not a mapping")
            schedule = Schedule.from_stored(
                schedule_id, definition, next_run_at=next_run_at, paused=paused,
                last_run_at=last_run_at, last_job_id=last_job_id,
            )  # fmt: skip
        except (SerializationError, TypeError) as exc:
            log.warning("skipping schedule %s: its stored definition is unreadable: %s",
                        schedule_id, exc)  # fmt: skip
            continue
        schedules.append(schedule)
    return schedules


# -- flow control (the contract's "flow control"; ``nuvom.limits``) -----------------------
def limit_columns(job: Job) -> tuple[bool, str | None]:
    """A job's ``limited`` and ``conc_key`` columns: whether a claim checks its limits first,
    and its concurrency key."""
    if not job.limited:
        return False, None
    conc = job.concurrency_limit
    return True, None if conc is None else conc.key


def nacked(outcome: Outcome) -> bool:
    """Whether a settle gives ``outcome``'s job back to the queue (``settle_batches``'s nack)."""
    return outcome.status is JobStatus.RETRYING and outcome.retry_at is not None


def without(
    duplicates: Duplicates, jobs: Sequence[Job], rows: Sequence[tuple[object, ...]]
) -> tuple[list[Job], list[tuple[object, ...]]]:
    """``jobs`` and their ``rows`` but the duplicates a submit does not store."""
    kept = [(job, row) for job, row in zip(jobs, rows, strict=True) if job.id not in duplicates]
    return [job for job, _ in kept], [row for _, row in kept]


def in_claim_order(
    first: Sequence[tuple[Job, StoredJob]], seqs: Mapping[str, int], more: TakenLimited
) -> Taken:
    """A claim's two steps as one: the first step's jobs (``seqs``: their rows' seq by id) and
    the second's, in claim order; the corrupt rows of the second step."""
    if not more[0]:
        return list(first), more[1]
    every = [(job, row, seqs[row.id]) for job, row in first] + more[0]
    every.sort(key=lambda c: (-c[0].priority, c[0].due_at or 0.0, c[2]))
    return [(job, row) for job, row, _ in every], more[1]


def running(
    job: Job, row: StoredJob, seq: int, worker_id: str, until: float
) -> tuple[Job, StoredJob, int]:
    """A row the second step claimed, as ``decode_claimed`` makes a claimed one."""
    row = row._replace(attempts=row.attempts + 1)
    job.attempts = row.attempts
    job.status, job.lease_owner, job.lease_until = JobStatus.RUNNING, worker_id, until
    return job, row, seq


def bucket_state(key: str, tokens: Any, updated_at: Any) -> tuple[float, float] | None:
    """A stored token bucket as (tokens, updated at); None (logged) when it does not read as
    two finite numbers: the claim then starts that bucket anew, full, rather than fail."""
    try:
        state = (float(tokens), float(updated_at))
    except (TypeError, ValueError):
        state = (math.nan, math.nan)
    if not all(math.isfinite(value) for value in state):
        log.warning("the token bucket of %s is unreadable (%r, %r); starting it anew",
                    key, tokens, updated_at)  # fmt: skip
        return None
    return state


class LimitState(NamedTuple):
    """What a claim read of some limits, in its transaction: the hold tags it may decide on
    (all on SQLite, whose writers take turns; those whose advisory lock it got on
    PostgreSQL), the token buckets by task ((tokens, updated at); none yet: full) and the
    slots taken per concurrency key ((count, first lease end))."""

    decidable: set[str]
    buckets: dict[str, tuple[float, float]]
    slots: dict[str, tuple[int, float | None]]


#: ``ClaimLimits.check``: a job whose limits another claimer is deciding on right now.
BUSY = ("", 0.0)


class ClaimLimits:
    """One claim's view of the limits of the jobs it looks at, as ``MemoryJobQueue`` keeps
    them: concurrency first (the slots of its key taken, this claim's picks counted), then
    the task's token bucket (refilled since its last update, capped at its burst)."""

    def __init__(self, now: float, until: float) -> None:
        self.now, self.until = now, until
        self.asked: set[str] = set()  # hold tags whose state was read (or refused)
        self.decidable: set[str] = set()
        self.buckets: dict[str, tuple[float, float]] = {}
        self.changed: set[str] = set()  # buckets to write back
        self.slots: dict[str, tuple[int, float | None]] = {}
        self.rate_holds: dict[str, int] = {}  # holds per bucket so far: each waits a token more

    def unknown(self, jobs: Iterable[Job]) -> tuple[list[str], list[str]]:
        """The task names and concurrency keys of ``jobs`` whose state is not read yet."""
        rate_keys: dict[str, None] = {}
        conc_keys: dict[str, None] = {}
        for job in jobs:
            rate, conc = job.rate_limit, job.concurrency_limit
            if rate is not None and rate_tag(rate.key) not in self.asked:
                rate_keys[rate.key] = None
            if conc is not None and concurrency_tag(conc.key) not in self.asked:
                conc_keys[conc.key] = None
        return list(rate_keys), list(conc_keys)

    def learn(self, rate_keys: Sequence[str], conc_keys: Sequence[str], state: LimitState) -> None:
        self.asked.update(rate_tag(key) for key in rate_keys)
        self.asked.update(concurrency_tag(key) for key in conc_keys)
        self.decidable |= state.decidable
        self.buckets.update(state.buckets)
        self.slots.update(state.slots)

    def check(self, job: Job) -> tuple[str, float] | None:
        """None: ``job``'s limits let this claim take it (its slot and token are taken);
        else (its hold tag, when it may be due again), or ``BUSY``."""
        conc, rate = job.concurrency_limit, job.rate_limit
        if (conc is not None and concurrency_tag(conc.key) not in self.decidable) or (
            rate is not None and rate_tag(rate.key) not in self.decidable
        ):
            return BUSY
        if conc is not None:
            taken, first_end = self.slots.get(conc.key, (0, None))
            if taken >= conc.limit:
                return concurrency_tag(conc.key), self.now if first_end is None else first_end
        if rate is not None:
            tag = rate_tag(rate.key)
            tokens, at = self.buckets.get(rate.key, (float(rate.burst), self.now))
            tokens = min(float(rate.burst), tokens + max(0.0, self.now - at) * rate.per_sec)
            self.buckets[rate.key] = (tokens, self.now)
            self.changed.add(rate.key)
            if tokens < 1.0:
                behind = self.rate_holds.get(rate.key, 0)
                self.rate_holds[rate.key] = behind + 1
                return tag, self.now + (1.0 - tokens + behind) / rate.per_sec
            self.buckets[rate.key] = (tokens - 1.0, self.now)
        if conc is not None:
            taken, first_end = self.slots.get(conc.key, (0, None))
            self.slots[conc.key] = (taken + 1, min(first_end or self.until, self.until))
        return None

    def saved(self) -> list[dict[str, object]]:
        """``SAVE_BUCKET`` parameters for each bucket this claim changed."""
        return [
            {"key": key, "tokens": self.buckets[key][0], "at": self.buckets[key][1]}
            for key in sorted(self.changed)
        ]


class SQLJobQueue(SQLBackend, QuarantiningQueue):
    """The queue steps both SQL engines run the same way; ``take`` and ``heartbeat`` are theirs.

    A job that waits for others is parked in ``nuvom_parked``, with one ``nuvom_edges`` row
    per job it waits for; an ack that removes a job someone waits for resolves it in the
    same transaction (``resolve_in``).

    Flow control: a queue row marks a job with a rate or concurrency limit (``limited``,
    ``conc_key``). An engine's claim statement takes only unlimited rows and tells when it
    left limited ones, which ``take_limited`` then decides on in claim order, in Python, in
    a transaction (token buckets in ``nuvom_buckets``; a key's slots counted from its
    claimed rows); a held job keeps its ``hold`` tag and a later due time. Unique keys live
    in ``nuvom_unique``, taken in the submit's transaction and let go in the ack's.
    Paused queues are ``nuvom_paused`` rows every claim statement skips.
    """

    keeps_dependencies = True
    keeps_limits = True
    honours_refusals = True

    # -- what each engine does its own way -------------------------------------
    @abstractmethod
    def take(self, cur: Cursor, n: int, worker_id: str, lease_secs: float, queues: Queues) -> Taken:
        """Claim up to ``n`` rows in a caller's transaction; move undecodable ones aside."""

    @abstractmethod
    def candidates(
        self,
        cur: Cursor,
        n: int,
        queues: Queues,
        now: float,
        skip: Sequence[int],
        refused: frozenset[str],
    ) -> list[tuple[int, StoredJob]]:
        """The first ``n`` claimable rows (limited or not) in claim order, but those in
        ``skip`` (by seq) and those held with a ``refused`` tag, with their seq; on
        PostgreSQL locked, rows others lock skipped."""

    @abstractmethod
    def limit_state(
        self, cur: Cursor, rate_keys: Sequence[str], conc_keys: Sequence[str], now: float
    ) -> LimitState:
        """The buckets of ``rate_keys`` and the slots of ``conc_keys``, read only once no
        other claimer can change them before this transaction ends."""

    def lock_settling(self, cur: Cursor, job_ids: Sequence[str]) -> None:
        """Before a step that frees slots or lets keys go for ``job_ids``: make racing claims
        and settles of the same keys and jobs take turns (SQLite's writers already do)."""

    def requeued(self, cur: Cursor) -> None:
        """In a transaction that put jobs back in the queue: tell idle workers (at commit)."""

    def nudge(self) -> None:
        """After a commit that put jobs back in the queue: wake idle workers."""

    # -- steps inside a caller's transaction ------------------------------------
    def insert(self, cur: Cursor, jobs: Sequence[Job], rows: Sequence[tuple[object, ...]]) -> None:
        """Write ``jobs`` (``rows``: their ``queue_rows``): waiting, or parked when they wait
        for others (``nudge`` once committed)."""
        if not waits(jobs):
            self.enqueue_rows(cur, jobs, rows)
            self.requeued(cur)
            return
        parked = [(job, row) for job, row in zip(jobs, rows, strict=True) if job.depends_on]
        ready = [(job, row) for job, row in zip(jobs, rows, strict=True) if not job.depends_on]
        if ready:
            self.enqueue_rows(cur, [job for job, _ in ready], [row for _, row in ready])
            self.requeued(cur)
        self.park(cur, parked)

    def enqueue_rows(
        self, cur: Cursor, jobs: Sequence[Job], rows: Sequence[tuple[object, ...]]
    ) -> None:
        """The plain ``ENQUEUE``, or, when a job carries limits, ``ENQUEUE_LIMITED`` with every
        row's limit columns (one statement for all: their seq keeps their order)."""
        if not any(job.origin and job.limited for job in jobs):  # a plain job has no origin
            self.run_many(cur, self.sql.ENQUEUE, rows)
            return
        cur.executemany(
            self.sql.ENQUEUE_LIMITED,
            [(*row, *limit_columns(job)) for job, row in zip(jobs, rows, strict=True)],
        )

    def park(self, cur: Cursor, parked: Sequence[tuple[Job, tuple[object, ...]]]) -> None:
        """Store jobs that wait for others, each with the edges to what it waits for (those
        of an earlier job of the same id replaced)."""
        cur.executemany(
            self.sql.PARK,
            [
                (job.id, row[1], row[2], job.due_at, row[5], row[6], row[PAYLOAD],
                 job.on_failure, len(set(job.depends_on)), *limit_columns(job))
                for job, row in parked
            ],
        )  # fmt: skip
        cur.executemany(self.sql.FORGET_EDGES, [(job.id,) for job, _ in parked])
        cur.executemany(
            self.sql.ADD_EDGE, [(job.id, dep) for job, _ in parked for dep in job.depends_on]
        )
        waited_for = sorted({dep for job, _ in parked for dep in job.depends_on})
        for statement in self.sql.MARK_WAITED_FOR:
            cur.executemany(statement, [(dep,) for dep in waited_for])

    def finish(
        self, cur: Cursor, outcomes: Sequence[Outcome]
    ) -> tuple[bool, list[tuple[str, bool]]]:
        """Ack finished jobs and nack retries, one batch per statement.

        Returns whether a job went back to the queue (``nudge`` the idle workers once
        committed), and the jobs acked for good that others wait for, as ``resolve_in``
        takes them. The ack itself tells which those are (``acked``): a settle of jobs no
        one waits for costs no round trip more.
        """
        finals = {o.job.id: o.status is JobStatus.SUCCESS for o in outcomes if o.status.is_final}
        finished: list[tuple[str, bool]] = []
        now = self.clock.time()
        # By id: the row locks in the order a racing submit marks the jobs it waits for.
        by_id = sorted(outcomes, key=lambda outcome: outcome.job.id)
        woke = self.before_settle(cur, by_id, now)
        for statement, rows in settle_batches(by_id, self.sql).items():
            acking = statement in (self.sql.ACK, self.sql.ACK_ANY)
            statement, params = self.settle_statement(statement, rows, now)
            if not acking:
                cur.executemany(statement, params)
                continue
            for job_id, waited_for, *freed in self.acked(cur, statement, params):
                woke = woke or any(freed)
                if waited_for and job_id in finals:
                    finished.append((job_id, finals[job_id]))
        if not (retries(outcomes) or woke):
            return False, finished
        self.requeued(cur)
        return True, finished

    # -- flow control in the settling steps ----------------------------------------
    # An outcome's job is the worker's copy: its limits are read from the store, not from it.
    def before_settle(self, cur: Cursor, outcomes: Sequence[Outcome], now: float) -> bool:
        """Before the acks and nacks of ``outcomes`` (by id): each job of a concurrency key
        its worker still holds frees its slot, waking the first job the key held back, and
        each acked job lets its unique key go (kept its ``keep_secs``); True if one woke.
        An engine whose settle statements do it themselves does less here."""
        self.lock_settling(cur, [o.job.id for o in outcomes])
        rows = [(o.job.id, o.worker_id) for o in outcomes]
        woke = self.free_slots(cur, rows, now)
        acked = [(o.job.id, o.worker_id) for o in outcomes if not nacked(o)]
        self.let_go(cur, acked, now)
        return woke

    def settle_statement(
        self, statement: str, rows: list[tuple[object, ...]], now: float
    ) -> tuple[str, Sequence[Any]]:
        """The statement a settle runs for ``settle_batches``' ``statement`` and ``rows``."""
        return statement, rows

    def free_slots(self, cur: Cursor, held: Sequence[tuple[str, str | None]], now: float) -> bool:
        """Each (job id, worker id) its worker (any, when None) still holds gives its slot
        back: the first job its key held back and not due yet is due now. True if one woke
        (as far as the engine tells: SQLite does)."""
        params = [{"id": job_id, "owner": owner, "now": now, "prefix": CONCURRENCY_TAG}
                  for job_id, owner in held]  # fmt: skip
        return self.changed(cur, self.sql.WAKE_HELD, params)

    def changed(self, cur: Cursor, statement: str, rows: Sequence[Any]) -> bool:
        """Run ``statement`` per row; whether it changed a row, where that costs nothing to
        know (else False)."""
        cur.executemany(statement, rows)
        return False

    def let_go(self, cur: Cursor, acked: Sequence[tuple[str, str | None]], now: float) -> None:
        """Each (job id, worker id) about to be acked lets its unique key go: kept its
        ``keep_secs`` from ``now`` (a quarantined job's too)."""
        params = [{"id": job_id, "owner": owner, "now": now} for job_id, owner in acked]
        cur.executemany(self.sql.LET_GO, params)

    def take_unique(self, cur: Cursor, jobs: Sequence[Job], now: float) -> Duplicates:
        """Take the unique key of each of ``jobs`` that has one, in order; those whose key
        another job holds, with its id (two of one key in ``jobs``: the first wins)."""
        keyed = [(job, key) for job in jobs if job.origin and (key := job.unique) is not None]
        if not keyed:
            return {}
        cur.execute(self.sql.DROP_EXPIRED_KEYS, (now,))
        params = [{"key": key.key, "id": job.id, "keep": key.keep_secs, "now": now}
                  for job, key in keyed]  # fmt: skip
        holders = self.returned(cur, self.sql.TAKE_UNIQUE, params)
        return {
            job.id: str(holder[0])
            for (job, _), holder in zip(keyed, holders, strict=True)
            if holder[0] != job.id
        }

    def take_limited(
        self, cur: Cursor, n: int, worker_id: str, lease_secs: float, queues: Queues, now: float
    ) -> TakenLimited:
        """A claim's second step, once its statement left limited jobs: up to ``n`` more jobs,
        limited or not, in claim order, each limited one taken only if its limits allow it now
        and else held (``ClaimLimits``); held ones do not count towards ``n``, so it reads on,
        in ever larger rounds (``CLAIM_ROUNDS``). Rows that do not decode (a limit entry among
        them) are quarantined."""
        until = now + lease_secs
        limits = ClaimLimits(now, until)
        claimed: list[tuple[Job, StoredJob, int]] = []
        corrupt: list[tuple[StoredJob, str]] = []
        skip: list[int] = []  # rows another claimer is deciding on (PostgreSQL)
        refused = self.refused_by(worker_id)
        for round_number in range(CLAIM_ROUNDS):
            size = min(CANDIDATES_PER_ROUND << round_number, MAX_CANDIDATES_PER_ROUND)
            wanted = max(n - len(claimed), size)
            rows = self.candidates(cur, wanted, queues, now, skip, refused)
            jobs: list[tuple[int, StoredJob, Job]] = []
            bad: list[tuple[StoredJob, str]] = []
            for seq, row in rows:
                try:
                    jobs.append((seq, row, self.payloads.decode_stored(row)))
                except CorruptJob as exc:
                    log.warning("quarantined job %s: %s", row.id, exc)
                    bad.append((row, str(exc)))
            self.quarantine(cur, bad)
            corrupt += bad
            rate_keys, conc_keys = limits.unknown(job for _, _, job in jobs if job.limited)
            if rate_keys or conc_keys:
                limits.learn(rate_keys, conc_keys,
                             self.limit_state(cur, rate_keys, conc_keys, now))  # fmt: skip
            takes, holds = [], []
            for seq, row, job in jobs:
                if len(claimed) >= n:
                    break
                hold = limits.check(job) if job.limited else None
                if hold is BUSY:
                    skip.append(seq)
                elif hold is not None:
                    holds.append({"seq": seq, "tag": hold[0], "due": hold[1]})
                else:
                    limited, conc_key = limit_columns(job)
                    takes.append({"seq": seq, "worker": worker_id, "until": until,
                                  "limited": limited, "conc_key": conc_key})  # fmt: skip
                    claimed.append(running(job, row, seq, worker_id, until))
            cur.executemany(self.sql.CLAIM_ROW, takes)
            cur.executemany(self.sql.HOLD_ROW, holds)
            if len(claimed) >= n or len(rows) < wanted:
                break
        cur.executemany(self.sql.SAVE_BUCKET, limits.saved())
        return claimed, corrupt

    def quarantine(self, cur: Cursor, corrupt: Sequence[tuple[StoredJob, str]]) -> None:
        """Move undecodable rows aside (``nuvom_dead``); their unique keys go as an ack's."""
        if not corrupt:
            return
        now = self.clock.time()
        for row, reason in corrupt:
            cur.execute(self.sql.QUARANTINE, (row.id, row.queue, row.payload, reason, now))
        self.let_go(cur, [(row.id, None) for row, _ in corrupt], now)
        cur.executemany(self.sql.DELETE_QUEUED, [(row.id,) for row, _ in corrupt])

    def acked(self, cur: Cursor, statement: str, rows: Sequence[Any]) -> list[Row]:
        """Run an ack ``statement`` per row; (id, whether a parked job waits for it) of each
        job it acked, or of none when no job waits for another."""
        return self.returned(cur, statement, rows)

    def resolve_in(self, cur: Cursor, finished: Sequence[tuple[str, bool]], now: float) -> Resolved:
        """``resolve`` in a caller's transaction, one batch of statements per level of the
        graph: count each finished job once (its edges deleted), then decide each parked job
        it touched, under a row lock taken in id order (racing resolves take turns)."""
        resolved = Resolved()
        level = list(finished)
        while level:
            succeeded: dict[str, bool] = {}
            for dep, ok in level:
                succeeded.setdefault(dep, ok)
            counted = self.count_finished(cur, sorted(succeeded))
            if not counted:
                break
            order = {dep: i for i, dep in enumerate(succeeded)}
            level, still, released, dropped = [], [], [], []
            for job_id, (waiting, errback, deps) in sorted(counted.items()):
                for dep in sorted(deps, key=order.__getitem__):
                    ok = succeeded[dep]
                    if ok:
                        waiting -= 1
                        if waiting > 0:
                            continue
                    # Cancelled (and what waits for it in turn): an errback when nothing
                    # failed, any other job when one it waits for did not succeed.
                    if ok is errback:
                        resolved.cancelled.append((job_id, cancel_reason(dep, ok)))
                        level.append((job_id, False))
                        dropped.append((job_id,))
                    else:
                        released.append(job_id)
                    break
                else:
                    still.append((waiting, job_id))
            cur.executemany(self.sql.SET_WAITING, still)
            if released:
                rows = [{"now": now, "id": job_id} for job_id in released]
                cur.executemany(self.sql.RELEASE_PARKED, rows)
                dropped += [(job_id,) for job_id in released]
                resolved.released += released
            cur.executemany(self.sql.DROP_PARKED, dropped)
            cur.executemany(self.sql.FORGET_EDGES, dropped)
        if resolved.cancelled:  # a cancel lets a unique key go
            cur.executemany(self.sql.FORGET_UNIQUE, [(job_id,) for job_id, _ in resolved.cancelled])
        if resolved.released:
            self.requeued(cur)
        return resolved

    def count_finished(
        self, cur: Cursor, deps: Sequence[str]
    ) -> dict[str, tuple[int, bool, list[str]]]:
        """Count finished jobs ``deps`` once each (their edges deleted) and lock the parked
        jobs that waited for them, in id order; each one's (waiting, errback, deps counted)."""
        counted: dict[str, list[str]] = {}
        for job_id, dep in self.returned(cur, self.sql.COUNT_DEPENDENCY, [(d,) for d in deps]):
            counted.setdefault(job_id, []).append(dep)
        locked = self.returned(cur, self.sql.LOCK_PARKED, [(job_id,) for job_id in sorted(counted)])
        return {
            job_id: (waiting, bool(errback), counted[job_id]) for job_id, waiting, errback in locked
        }

    def remove(self, cur: Cursor, job_id: str) -> Row | None:
        """Delete a waiting or parked job; its (queue, priority, payload, due_at), or None if
        it is neither."""
        row: Row | None = cur.execute(self.sql.CANCEL, (job_id,)).fetchone()
        if row is None:
            row = cur.execute(self.sql.UNPARK, (job_id,)).fetchone()
            if row is not None:
                cur.execute(self.sql.FORGET_EDGES, (job_id,))
        if row is not None:
            cur.execute(self.sql.FORGET_UNIQUE, (job_id,))
        return row

    # -- the contract -------------------------------------------------------
    def enqueue(self, job: Job) -> None:
        self.enqueue_many([job])

    def enqueue_many(self, jobs: Sequence[Job]) -> Duplicates:
        if not jobs:
            return {}
        now = self.clock.time()
        rows = queue_rows(jobs, self.payloads, now)
        with self.store.transaction() as cur:
            duplicates = self.take_unique(cur, jobs, now)
            if duplicates:
                jobs, rows = without(duplicates, jobs, rows)
            if jobs:
                self.insert(cur, jobs, rows)
        self.nudge()
        return duplicates

    def claim_batch(
        self, n: int, *, worker_id: str, lease_secs: float, queues: Queues = None
    ) -> Claimed:
        with self.store.transaction() as cur:
            return claimed_batch(*self.take(cur, n, worker_id, lease_secs, queues))

    def ack_outcomes(self, outcomes: Sequence[Outcome]) -> Resolved | None:
        resolved = None
        with self.store.transaction() as cur:
            requeued, finished = self.finish(cur, outcomes)
            if finished:
                resolved = self.resolve_in(cur, finished, self.clock.time())
        if requeued or (resolved is not None and resolved.released):
            self.nudge()
        return resolved

    def resolve(self, finished: Sequence[tuple[str, bool]]) -> Resolved:
        if not finished:
            return Resolved()
        with self.store.transaction() as cur:
            resolved = self.resolve_in(cur, finished, self.clock.time())
        if resolved.released:
            self.nudge()
        return resolved

    def parked_jobs(self) -> list[Job]:
        rows = self.store.read(self.sql.PARKED_JOBS)
        return decode_waiting(self.payloads, (stored_job(row) for row in rows))

    def ack(self, job_id: str, *, worker_id: str | None = None) -> None:
        now = self.clock.time()
        with self.store.transaction() as cur:
            self.lock_settling(cur, [job_id])
            self.free_slots(cur, [(job_id, worker_id)], now)
            self.let_go(cur, [(job_id, worker_id)], now)
            if worker_id is None:
                cur.execute(self.sql.ACK_ANY, (job_id,))
            else:
                cur.execute(self.sql.ACK, (job_id, worker_id))

    def nack(self, job_id: str, *, retry_at: float, worker_id: str | None = None) -> None:
        with self.store.transaction() as cur:
            self.lock_settling(cur, [job_id])
            self.free_slots(cur, [(job_id, worker_id)], self.clock.time())
            if worker_id is None:
                cur.execute(self.sql.NACK_ANY, (retry_at, retry_at, job_id))
            else:
                cur.execute(self.sql.NACK, (retry_at, retry_at, job_id, worker_id))
            self.requeued(cur)
        self.nudge()

    def release(self, job_ids: Sequence[str], *, worker_id: str) -> None:
        if not job_ids:
            return
        now = self.clock.time()
        with self.store.transaction() as cur:
            self.lock_settling(cur, sorted(job_ids))
            self.free_slots(cur, [(job_id, worker_id) for job_id in job_ids], now)
            cur.executemany(self.sql.RELEASE, [(now, job_id, worker_id) for job_id in job_ids])
            self.requeued(cur)
        self.nudge()

    def adjust_attempts(self, deltas: Mapping[str, int], *, worker_id: str) -> list[str]:
        if not deltas:
            return []
        changed: list[str] = []
        with self.store.transaction() as cur:
            for job_id, delta in deltas.items():
                if cur.execute(self.sql.ADJUST_ATTEMPTS, (delta, job_id, worker_id)).fetchone():
                    changed.append(job_id)
        return changed

    # -- schedules ---------------------------------------------------------
    def save_schedule(self, schedule: Schedule) -> None:
        blob = self.codec.dumps(schedule.definition())
        row = (schedule.id, blob, schedule.next_run_at, bool(schedule.paused),
               schedule.last_run_at, schedule.last_job_id)  # fmt: skip
        with self.store.transaction() as cur:
            cur.execute(self.sql.SAVE_SCHEDULE, row)

    def list_schedules(self) -> list[Schedule]:
        return stored_schedules(self.codec, self.store.read(self.sql.LIST_SCHEDULES))

    def remove_schedule(self, schedule_id: str) -> bool:
        with self.store.transaction() as cur:
            removed = cur.execute(self.sql.REMOVE_SCHEDULE, (schedule_id,)).fetchone()
            cur.execute(self.sql.FORGET_TICKS, (schedule_id,))
        return removed is not None

    def pause_schedule(self, schedule_id: str, paused: bool) -> bool:
        with self.store.transaction() as cur:
            row = cur.execute(self.sql.PAUSE_SCHEDULE, (bool(paused), schedule_id)).fetchone()
        return row is not None

    def due_schedules(self, now: float, limit: int) -> list[Schedule]:
        rows = self.store.read(self.sql.DUE_SCHEDULES, (now, limit))
        return stored_schedules(self.codec, rows)

    def next_schedule_at(self) -> float | None:
        rows = self.store.read(self.sql.NEXT_SCHEDULE_AT)
        return None if not rows or rows[0][0] is None else float(rows[0][0])

    def fire_tick(
        self, schedule_id: str, tick: float, *, job: Job | None, next_run_at: float
    ) -> bool:
        return self.fire_ticks([TickClaim(schedule_id, tick, job, next_run_at)])[0]

    def fire_ticks(self, claims: Sequence[TickClaim]) -> list[bool]:
        # Encoded before the transaction: a job that cannot be stored changes nothing.
        now = self.clock.time()
        rows = [[] if c.job is None else queue_rows([c.job], self.payloads, now) for c in claims]
        won = [False] * len(claims)
        with self.store.transaction() as cur:
            for i in claim_order(claims):
                won[i] = self._fire_one(cur, claims[i], rows[i])
        if any(won[i] and rows[i] for i in range(len(claims))):
            self.nudge()
        return won

    def _fire_one(self, cur: Cursor, claim: TickClaim, rows: list[tuple[object, ...]]) -> bool:
        job_id = None if claim.job is None else claim.job.id
        # Read right after its statement: nothing unread before it in a pipeline.
        key = {"sid": claim.schedule_id, "tick": claim.tick, "job": job_id}
        if cur.execute(self.sql.CLAIM_TICK, key).fetchone() is None:
            return False  # gone, paused, stale (another scheduler moved it on) or claimed
        if claim.job is not None and rows:
            self.insert(cur, [claim.job], rows)
        moved = (claim.next_run_at, claim.tick, job_id, claim.schedule_id)
        cur.execute(self.sql.MOVE_SCHEDULE, moved)
        cur.execute(self.sql.PRUNE_TICKS, (claim.schedule_id, claim.tick - TICKS_KEPT_SECS))
        return True

    def qsize(self, queue: str | None = None) -> int:
        if queue is None:
            return int(self.store.read(self.sql.QSIZE)[0][0])
        return int(self.store.read(self.sql.QSIZE_OF, (queue,))[0][0])

    def clear(self) -> int:
        with self.store.transaction() as cur:
            removed = len(cur.execute(self.sql.CLEAR).fetchall())
            removed += len(cur.execute(self.sql.CLEAR_PARKED).fetchall())
            cur.execute(self.sql.CLEAR_EDGES)
            cur.execute(self.sql.CLEAR_UNIQUE)
        return removed

    def cancel(self, job_id: str) -> bool:
        with self.store.transaction() as cur:
            return self.remove(cur, job_id) is not None

    def waiting_jobs(self) -> list[Job]:
        rows = self.store.read(self.sql.WAITING_JOBS)
        return decode_waiting(self.payloads, (stored_job(row) for row in rows))

    def queue_stats(self) -> list[QueueStats]:
        now = {"now": self.clock.time()}
        counts, owners, dead, held, paused = self.store.reads(
            (self.sql.STATS, now), (self.sql.LEASE_OWNERS, now), (self.sql.DEAD_BY_QUEUE, ()),
            (self.sql.HELD_BY_QUEUE, ()), (self.sql.PAUSED_QUEUES, ()),
        )  # fmt: skip
        rows = {row.queue: row for row in stats_rows(counts, owners, dead)}
        for queue, tag, count in held:
            rows.setdefault(queue, QueueStats(queue)).held[tag] = int(count)
        for (queue,) in paused:
            rows.setdefault(queue, QueueStats(queue)).paused = True
        return [rows[name] for name in sorted(rows)]

    # -- flow control ----------------------------------------------------------
    def hold(self, held: Sequence[Hold], *, worker_id: str) -> list[str]:
        if not held:
            return []
        now = self.clock.time()
        with self.store.transaction() as cur:
            self.lock_settling(cur, sorted(h.job_id for h in held))
            woke = self.free_slots(cur, [(h.job_id, worker_id) for h in held], now)
            rows = [{"id": h.job_id, "owner": worker_id, "due": h.due_at, "tag": h.tag}
                    for h in held]  # fmt: skip
            given = {str(row[0]) for row in self.returned(cur, self.sql.GIVE_BACK, rows)}
            woke = woke or any(h.due_at <= now for h in held)  # due at once for the others
            if woke:
                self.requeued(cur)
        if woke:
            self.nudge()
        return [h.job_id for h in held if h.job_id in given]

    def pause_queue(self, queue: str, paused: bool = True) -> bool:
        with self.store.transaction() as cur:
            if paused:
                row = cur.execute(self.sql.PAUSE_QUEUE, (queue, self.clock.time())).fetchone()
            else:
                row = cur.execute(self.sql.RESUME_QUEUE, (queue,)).fetchone()
                if row is not None:
                    self.requeued(cur)
        if row is not None and not paused:
            self.nudge()
        return row is not None

    def paused_queues(self) -> list[str]:
        return [str(row[0]) for row in self.store.read(self.sql.PAUSED_QUEUES)]

    def hold_of(self, job_id: str) -> str | None:
        rows = self.store.read(self.sql.HOLD_OF, (job_id,))
        return None if not rows or rows[0][0] is None else str(rows[0][0])

    def unique_holder(self, key: str) -> str | None:
        rows = self.store.read(self.sql.UNIQUE_HOLDER, {"key": key, "now": self.clock.time()})
        return str(rows[0][0]) if rows else None

    # -- dead letters: the nuvom_dead table -----------------------------------------------
    def dead_letters(self, *, limit: int = 100, after: str | None = None) -> list[DeadLetter]:
        rows = self.store.read(self.sql.DEAD_LETTERS, (after or "", limit))
        return [DeadLetter(str(job_id), str(queue or "default"), str(reason), float(at),
                           preview_of(bytes(payload) if payload is not None else None))
                for job_id, queue, payload, reason, at in rows]  # fmt: skip

    def revive_dead(self, job_id: str) -> Job | None:
        rows = self.store.read(self.sql.DEAD_LETTER, (job_id,))
        if not rows:
            return None
        _, queue, payload, reason = rows[0]
        if payload is None:
            raise CorruptJob(f"job {job_id} kept no payload: {reason}", job_id=job_id,
                             backend=self.name)  # fmt: skip
        # Decoded as a claim would, with today's codec and key; the priority column did not
        # go with it (the job comes back at the default), nor its attempts: a fresh start.
        try:
            job = self.payloads.decode(bytes(payload), job_id=job_id,
                                       queue=str(queue or "default"))  # fmt: skip
        except CorruptJob as exc:
            raise CorruptJob(str(exc), job_id=job_id, backend=self.name) from None
        job.args = tuple(job.args)  # as the job was submitted, not as the codec reads it back
        return job

    def forget_dead(self, job_id: str) -> bool:
        with self.store.transaction() as cur:
            return cur.execute(self.sql.FORGET_DEAD, (job_id,)).fetchone() is not None


class SQLResultBackend(SQLBackend, BaseResultBackend):
    """Results, attempts and history in the ``nuvom_jobs`` and ``nuvom_attempts`` tables.

    The ``note_*`` steps run inside a transaction their caller opened: this
    backend's own methods, or the engine's joint writer.
    """

    # -- steps inside a caller's transaction ------------------------------------
    def note_submitted(
        self, cur: Cursor, jobs: Sequence[Job], rows: Sequence[tuple[object, ...]], now: float
    ) -> None:
        """Record jobs the same transaction queued (``rows``: their ``queue_rows``)."""
        self.run_many(cur, self.sql.RECORD_ENQUEUED, self.enqueued_rows(jobs, rows, now))

    def enqueued_rows(
        self, jobs: Sequence[Job], rows: Sequence[tuple[object, ...]], now: float
    ) -> list[tuple[object, ...]]:
        """``RECORD_ENQUEUED`` parameters per job, its payload taken from its queue row."""
        recorded: list[tuple[object, ...]] = []
        for job, row in zip(jobs, rows, strict=True):
            scheduled = job.due_at is not None and job.due_at > now
            recorded.append(
                (job.id, job.func_name, job.queue, job.priority,
                 "SCHEDULED" if scheduled else "PENDING", row[PAYLOAD], job.max_retries,
                 job.created_at, job.due_at, now)
            )  # fmt: skip
        return recorded

    def note_running(
        self, cur: Cursor, claimed: Sequence[tuple[Job, bytes]], worker_id: str, started_at: float
    ) -> None:
        """Each claimed job RUNNING, with a new attempt; an earlier RUNNING one is LOST."""
        cur.executemany(
            self.sql.MARK_RUNNING,
            [
                (job.id, job.func_name, job.queue, job.priority, payload, job.created_at,
                 started_at, worker_id, started_at)
                for job, payload in claimed
            ],
        )  # fmt: skip
        cur.executemany(self.sql.MARK_EARLIER_ATTEMPTS_LOST, [(job.id,) for job, _ in claimed])
        cur.executemany(
            self.sql.START_ATTEMPT,
            [{"id": job.id, "at": started_at, "worker": worker_id} for job, _ in claimed],
        )

    def note_outcomes(self, cur: Cursor, outcomes: Sequence[Outcome], now: float) -> None:
        job_rows = []
        attempt_rows = []
        for outcome in outcomes:
            job, error = outcome.job, outcome.error
            blob = result_blob(self.codec, outcome)
            retrying = outcome.status is JobStatus.RETRYING
            error_type = error.type if error else None
            error_message = error.message if error else None
            traceback = error.traceback if error else None
            job_rows.append(
                (job.id, job.func_name, job.queue, job.priority, outcome.status.value, None,
                 blob, blob is not None, error_type, error_message, traceback,
                 job.created_at, outcome.retry_at if retrying else None,
                 None if retrying else outcome.finished_at, outcome.worker_id, now)
            )  # fmt: skip
            attempt_rows.append(
                {"status": outcome.status.value, "at": outcome.finished_at, "type": error_type,
                 "message": error_message, "traceback": traceback, "id": job.id}
            )  # fmt: skip
        self.run_many(cur, self.sql.SAVE_OUTCOME, job_rows)
        self.run_many(cur, self.sql.FINISH_ATTEMPT, attempt_rows)

    def note_dependents_cancelled(
        self, cur: Cursor, cancelled: Sequence[tuple[str, str]], at: float
    ) -> None:
        """Jobs a resolve cancelled CANCELLED, each with its reason as the error message."""
        cur.executemany(
            self.sql.MARK_DEPENDENT_CANCELLED, [(job_id, why, at, at) for job_id, why in cancelled]
        )

    def finished_in(self, cur: Cursor, job_ids: Sequence[str]) -> list[tuple[str, bool]]:
        """Those of ``job_ids`` that finished for good, as ``resolve_in`` takes them."""
        rows = self.returned(cur, self.sql.FINISHED_STATUS, [(job_id,) for job_id in job_ids])
        return [(job_id, status == JobStatus.SUCCESS.value) for job_id, status in rows]

    def note_failed(self, cur: Cursor, job_id: str, error: ErrorInfo, now: float) -> None:
        cur.execute(self.sql.MARK_FAILED, (job_id, error.type, error.message, now, now))

    def note_cancelled(self, cur: Cursor, job_id: str, removed: Row, now: float) -> None:
        """A job cancelled while queued keeps its call, so ``retry_job`` can run it later.

        ``removed`` is its queue row's (queue, priority, payload, due_at).
        """
        queue, priority, payload, due_at = removed
        cur.execute(
            self.sql.MARK_QUEUED_CANCELLED, (job_id, queue, priority, payload, due_at, now, now)
        )

    # -- the four methods every result backend has ---------------------------
    def set_result(self, job_id: str, result: Any) -> None:
        now = self.clock.time()
        blob = self.codec.dumps(result)
        row = (job_id, None, None, 0, "SUCCESS", None, blob, True, None, None, None, None, None,
               now, None, now)  # fmt: skip
        with self.store.transaction() as cur:
            cur.execute(self.sql.SAVE_OUTCOME, row)

    def get_result(self, job_id: str) -> Any:
        rows = self.store.read(self.sql.GET_RESULT, (job_id,))
        if not rows or not rows[0][2]:
            return None
        return stored_result(self.codec, rows[0][1])

    def set_error(self, job_id: str, error: ErrorInfo | BaseException | str) -> None:
        info = self.describe_error(error)
        with self.store.transaction() as cur:
            self.note_failed(cur, job_id, info, self.clock.time())

    def get_error(self, job_id: str) -> str | None:
        rows = self.store.read(self.sql.GET_ERROR, (job_id,))
        if not rows or rows[0][0] not in ("FAILED", "CANCELLED") or rows[0][1] is None:
            return None
        return f"{rows[0][1]}: {rows[0][2]}"

    # -- richer methods ---------------------------------------------------
    def record_enqueued(self, jobs: Sequence[Job]) -> None:
        self._record_pending(self.sql.RECORD_ENQUEUED, jobs)

    def record_fired(self, jobs: Sequence[Job]) -> None:
        self._record_pending(self.sql.RECORD_FIRED, jobs)

    def _record_pending(self, statement: str, jobs: Sequence[Job]) -> None:
        """``jobs`` as PENDING/SCHEDULED rows by ``statement`` (which says what a known id gets)."""
        if not jobs:
            return
        now = self.clock.time()
        rows = queue_rows(jobs, self.payloads, now)
        with self.store.transaction() as cur:
            cur.executemany(statement, self.enqueued_rows(jobs, rows, now))

    def mark_running(self, jobs: Sequence[Job], *, worker_id: str, started_at: float) -> None:
        claimed = [(job, self.payloads.encode(job)) for job in jobs]
        with self.store.transaction() as cur:
            self.note_running(cur, claimed, worker_id, started_at)

    def mark_released(self, job_ids: Sequence[str]) -> None:
        if not job_ids:
            return
        now = self.clock.time()
        with self.store.transaction() as cur:
            cur.executemany(self.sql.UNCOUNT_ATTEMPT, [{"id": job_id} for job_id in job_ids])
            cur.executemany(self.sql.MARK_RELEASED, [(now, job_id) for job_id in job_ids])

    def mark_cancelled(self, job_id: str, *, at: float) -> None:
        with self.store.transaction() as cur:
            cur.execute(self.sql.MARK_CANCELLED, (job_id, at, at))

    def delete_job(self, job_id: str) -> bool:
        """Also False, deleting nothing, for a finished record ``prune`` would keep: a job
        of its workflow still unfinished needs it (``still_needed``). One transaction, as
        prune's: no job can start needing the record between the look and the delete."""
        with self.needs_transaction() as cur:
            found = cur.execute(self.sql.FINISHED_PAYLOAD, (job_id,)).fetchall()
            if not found:
                return False
            needed = self.still_needed(self.unfinished_payloads(cur))
            if needed and not self.unneeded(found, needed):
                return False
            cur.execute(self.sql.DELETE_FINISHED, (job_id,))
            cur.execute(self.sql.DELETE_JOB_ATTEMPTS, (job_id,))
            return True

    def needs_transaction(self) -> AbstractContextManager[Cursor]:
        """The transaction a look at what unfinished jobs need runs in (``unfinished_payloads``)."""
        return self.store.transaction()  # type: ignore[no-any-return]

    def unfinished_payloads(self, cur: Cursor) -> Iterable[Row]:
        """(id, payload) of every unfinished job, read a few at a time where the engine can."""
        return cur.execute(self.sql.UNFINISHED_PAYLOADS)  # type: ignore[no-any-return]

    def mark_dependents_cancelled(self, cancelled: Sequence[tuple[str, str]], *, at: float) -> None:
        if not cancelled:
            return
        with self.store.transaction() as cur:
            self.note_dependents_cancelled(cur, cancelled, at)

    def save_outcomes(self, outcomes: Sequence[Outcome]) -> None:
        with self.store.transaction() as cur:
            self.note_outcomes(cur, outcomes, self.clock.time())

    # -- reading -------------------------------------------------------------
    def _params(self, **values: Any) -> dict[str, Any]:
        return {"now": self.clock.time(), **values}

    def get_full(self, job_id: str) -> JobRecord | None:
        rows, attempts = self.store.reads(
            (self.sql.GET_JOB, self._params(id=job_id)), (self.sql.GET_ATTEMPTS, (job_id,))
        )
        if not rows:
            return None
        record = record_from_row(rows[0], self.payloads, self.codec)
        record.history = [AttemptRecord(*row) for row in attempts]
        return record

    def get_status(self, job_id: str) -> JobStatus | None:
        rows = self.store.read(self.sql.GET_STATUS, self._params(id=job_id))
        return JobStatus(rows[0][0]) if rows else None

    def list_jobs(
        self, *, status: JobStatus | None = None, limit: int = 20, offset: int = 0
    ) -> list[JobRecord]:
        params = self._params(limit=limit, offset=offset, status=status and status.value)
        if status is None:
            statement = self.sql.LIST_JOBS
        elif status in QUEUED_STATUSES:
            statement = self.sql.LIST_LIVE_JOBS_WITH_STATUS
        else:
            statement = self.sql.LIST_JOBS_WITH_STATUS
        return [
            record_from_row(row, self.payloads, self.codec)
            for row in self.store.read(statement, params)
        ]

    def status_counts(self) -> dict[str, int]:
        rows = self.store.read(self.sql.STATUS_COUNTS, self._params())
        return {status: int(count) for status, count in rows}

    def failed_by_queue(self) -> dict[str, int]:
        return {queue: int(count) for queue, count in self.store.read(self.sql.FAILED_BY_QUEUE)}

    # -- listings for people (the dashboard) ------------------------------------
    def find_jobs(self, query: JobQuery) -> list[JobRecord]:
        """From the indexes: a keyset walk of each of ``find_sources``, newest first, merged.

        A source that applies every filter in SQL reads one page of ``query.limit`` rows. A
        search (a job's arguments must be decoded to look in) or a filter the source cannot
        apply reads pages of ``FIND_PAGE_ROWS``, filtered here by ``query.matches``: at most
        ``SCAN_LIMIT`` rows per source, so a search past them finds nothing more. Records
        come without their history, as ``list_jobs``'s do.
        """
        walks = [self._walk(source, query) for source in self.find_sources(query)]
        newest_first = heapq.merge(*walks, key=keyset, reverse=True)
        return list(islice(newest_first, query.limit))

    def find_sources(self, query: JobQuery) -> list[FindSource]:
        """What ``find_jobs`` merges: ``nuvom_jobs`` pages, each one statement of up to
        ``FIND_ARMS`` ordered index ranges (the engine's ``find_jobs``), merged by the SQL.

        With tasks asked for, a range per task — of a status, the one asked for or each in
        turn: the task index is (task, status, updated_at), so a page of a task that rarely
        fails, FAILED, reads no other rows of it. (An IN of many would sort all they hold.)
        """
        filters, params = find_filters(query), find_params(query)
        exact = not query.search
        if query.tasks is None:
            return [FindSource(self.sql.find_jobs(filters), params, exact)]
        statuses = [query.status] if query.status is not None else list(JobStatus)
        shared = tuple(f for f in filters if f != "status")
        arms = [(task, status.value) for task in dict.fromkeys(query.tasks) for status in statuses]
        sources = []
        for start in range(0, len(arms), FIND_ARMS):
            chunk = arms[start : start + FIND_ARMS]
            own = {f"{name}{i}": value for i, (task, status) in enumerate(chunk)
                   for name, value in (("task", task), ("status", status))}  # fmt: skip
            statement = self.sql.find_jobs(shared, ("task", "status"), len(chunk))
            sources.append(FindSource(statement, {**params, **own}, exact))
        return sources

    def _walk(self, source: FindSource, query: JobQuery) -> Iterator[JobRecord]:
        """The records of ``source`` that pass ``query``, newest first, a page at a time."""
        params = {**source.params, "now": self.clock.time()}
        size = query.limit if source.exact else FIND_PAGE_ROWS
        read = 0
        while True:
            rows = self.store.read(source.statement, {**params, "limit": size})
            records = [record_from_row(row, self.payloads, self.codec) for row in rows]
            yield from (r for r in records if source.exact or query.matches(r))
            read += len(rows)
            if len(rows) < size or read >= SCAN_LIMIT:
                return
            params["before_at"], params["before_id"] = keyset(records[-1])

    def activity(self, *, since: float, until: float, bucket_secs: float) -> Activity:
        """Counted in SQL, per bucket: the attempts that ended in the window (one range of
        the attempts' end index), and the records that ended with no attempt recorded
        (results stored without a claim, a quarantined job), as ``activity_of`` counts both.

        Run times are a sample: of the latest ``RUN_TIME_SAMPLE`` jobs that succeeded since
        ``since`` (newest update first), p50 and p95 per task and how many of them, the
        quantiles taken as ``activity_of`` takes them.
        """
        params = {"since": since, "until": until, "bucket": bucket_secs, "sample": RUN_TIME_SAMPLE}
        ended, unattempted, took = self.store.reads(
            (self.sql.ATTEMPTS_ENDED, params), (self.sql.UNATTEMPTED_ENDED, params),
            (self.sql.RUN_TIMES, params),
        )  # fmt: skip
        activity = activity_of([], since, until, bucket_secs)  # its buckets, empty
        last = len(activity.buckets) - 1
        for bucket, status, count in [*ended, *unattempted]:
            activity.buckets[max(0, min(last, int(bucket)))][status] += int(count)
        times: dict[str, list[float]] = {}
        for task, secs in took:
            times.setdefault(task or "?", []).append(float(secs))
        for task, ordered in times.items():
            ordered.sort()
            activity.run_times[task] = (_quantile(ordered, 0.5), _quantile(ordered, 0.95),
                                        len(ordered))  # fmt: skip
        return activity

    # -- pruning (each engine's ``prune`` reads the rows, this decides) ----------------
    def still_needed(self, unfinished: Iterable[Row]) -> Needed:
        """What the unfinished jobs, rows of (id, payload), still need of the finished ones."""
        needed = Needed()
        for job_id, payload in unfinished:
            needed.add(self.origin_of(job_id, payload))
        return needed

    def unneeded(self, candidates: Iterable[Row], needed: Needed) -> list[str]:
        """The ids of the ``candidates``, rows of (id, payload), that ``needed`` does not keep
        (each payload read only when a workflow is unfinished, for the one it belongs to)."""
        return [
            job_id
            for job_id, payload in candidates
            if not needed.keeps(job_id, partial(self.origin_of, job_id, payload))
        ]

    def origin_of(self, job_id: str, payload: bytes | memoryview | None) -> dict[str, Any] | None:
        """A stored payload's ``origin`` alone (no ``Job`` is built); None when it has none or
        does not decode (logged: such a record neither keeps another nor is kept)."""
        if payload is None:
            return None
        try:
            return JobPayloadCodec(self.codec).origin(payload)
        except Exception as exc:  # a corrupt payload is that record's problem, not the prune's
            log.warning("prune: the payload of job %s cannot be read: %s", job_id, exc)
            return None


class FindSource(NamedTuple):
    """One keyset walk ``find_jobs`` merges: a page statement of the engine's ``find_jobs``
    (or SQLite's ``find_queued``), its parameters but the keyset's and the page size's, and
    whether it applies every filter of the query itself (else ``query.matches`` does)."""

    statement: str
    params: dict[str, Any]
    exact: bool


def find_filters(query: JobQuery) -> tuple[str, ...]:
    """The filters of ``query`` a page statement applies (the engines' ``find_jobs``); a
    task is each source's own, a search is decoded."""
    given = {"status": query.status, "queue": query.queue, "since": query.since,
             "until": query.until}  # fmt: skip
    return tuple(name for name, value in given.items() if value is not None)


def find_params(query: JobQuery) -> dict[str, Any]:
    """The named parameters of ``query``'s page statements, its first keyset included (past
    every record when it has none)."""
    before_at, before_id = query.before or (math.inf, "")
    return {"status": query.status and query.status.value, "queue": query.queue,
            "since": query.since, "until": query.until,
            "before_at": before_at, "before_id": before_id}  # fmt: skip


def keyset(record: JobRecord) -> tuple[float, str]:
    """A record's place in a listing: (updated_at, id), newest first."""
    return record.updated_at or 0.0, record.id


class Needed:
    """What unfinished jobs still need of the finished ones, so ``prune`` keeps it: each job
    named in their ``origin["after"]`` (a job is fed their results, or an errback their
    failure, when claimed: ``nuvom.workflow.feed``), and every member of a workflow one of
    whose jobs is unfinished (its ``origin["workflow"]``: as ``common.prunable`` keeps them;
    ``walk`` follows them). A callback of ``handle.then`` is its own workflow: what it comes
    after is kept as what it is fed, not as a member.
    """

    __slots__ = ("after", "workflows")

    def __init__(self) -> None:
        self.after: set[str] = set()
        self.workflows: set[str] = set()

    def add(self, origin: Mapping[str, Any] | None) -> None:
        """Note what an unfinished job with this ``origin`` needs."""
        if not origin:
            return
        after = origin.get("after")
        if isinstance(after, list | tuple):
            self.after.update(dep for dep in after if isinstance(dep, str))
        workflow = origin.get("workflow")
        if isinstance(workflow, str):
            self.workflows.add(workflow)

    def __bool__(self) -> bool:
        return bool(self.after or self.workflows)

    def keeps(self, job_id: str, origin: Callable[[], Mapping[str, Any] | None]) -> bool:
        """Whether the finished job ``job_id`` is still needed; ``origin`` reads its own
        (called only when an unfinished workflow could be its)."""
        if job_id in self.after or job_id in self.workflows:
            return True
        if not self.workflows:
            return False
        workflow = (origin() or {}).get("workflow")
        return isinstance(workflow, str) and workflow in self.workflows


class SQLJointWriter(JointWriter):
    """The four steps, each one transaction on the store the queue and results share: the
    resolve of what waits for the jobs a step finished, and the record of what that
    cancelled, included."""

    def __init__(self, queue: SQLJobQueue, results: SQLResultBackend) -> None:
        self.queue = queue
        self.results = results
        self.store = queue.store

    def submit(self, jobs: Sequence[Job]) -> Duplicates:
        if not jobs:
            return {}
        now = self.queue.clock.time()
        rows = queue_rows(jobs, self.queue.payloads, now)
        with self.store.transaction() as cur:
            duplicates = self.queue.take_unique(cur, jobs, now)
            if duplicates:  # neither queued nor recorded
                jobs, rows = without(duplicates, jobs, rows)
            if jobs:
                self.queue.insert(cur, jobs, rows)
                self.results.note_submitted(cur, jobs, rows, now)
            if waits(jobs):
                waited_for = sorted({dep for job in jobs for dep in job.depends_on})
                self.resolve(cur, self.results.finished_in(cur, waited_for), now)
        self.queue.nudge()
        return duplicates

    def claim(
        self, n: int, *, worker_id: str, lease_secs: float, queues: Queues = None
    ) -> list[Job]:
        with self.store.transaction() as cur:
            claimed, corrupt = self.queue.take(cur, n, worker_id, lease_secs, queues)
            self.record_claimed(cur, claimed, corrupt, worker_id)
        return [job for job, _ in claimed]

    def record_claimed(
        self,
        cur: Cursor,
        started: Sequence[tuple[Job, StoredJob]],
        corrupt: Sequence[tuple[StoredJob, str]],
        worker_id: str,
    ) -> None:
        now = self.queue.clock.time()
        if started:
            self.results.note_running(cur, [(j, row.payload) for j, row in started], worker_id, now)
        for row, reason in corrupt:
            self.results.note_failed(cur, row.id, ErrorInfo("CorruptJob", reason), now)

    def settle(self, outcomes: Sequence[Outcome]) -> None:
        now = self.queue.clock.time()
        released = False
        with self.store.transaction() as cur:
            self.results.note_outcomes(cur, outcomes, now)
            requeued, finished = self.queue.finish(cur, outcomes)
            if finished:
                released = self.resolve(cur, finished, now)
        if requeued or released:
            self.queue.nudge()

    def cancel(self, job_id: str) -> bool:
        now = self.queue.clock.time()
        with self.store.transaction() as cur:
            removed = self.queue.remove(cur, job_id)
            if removed is None:
                return False
            self.results.note_cancelled(cur, job_id, removed, now)
            released = self.resolve(cur, [(job_id, False)], now)
        if released:
            self.queue.nudge()
        return True

    def resolve(self, cur: Cursor, finished: Sequence[tuple[str, bool]], now: float) -> bool:
        """Resolve ``finished`` and record what that cancelled; True if it released any."""
        if not finished:
            return False
        resolved = self.queue.resolve_in(cur, finished, now)
        if resolved.cancelled:
            self.results.note_dependents_cancelled(cur, resolved.cancelled, now)
        return bool(resolved.released)
