"""What the engines share, written once: decoding claimed rows (quarantining the bad ones),
a result row as a ``JobRecord``, results as bytes, the settle statements, store ownership,
and the current settings a backend built without arguments starts from.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

from nuvom.backends.contract import BaseJobQueue, Claimed, Queues, QueueStats
from nuvom.errors import CorruptJob, SerializationError
from nuvom.job import DEFAULT_QUEUE, FINAL_STATUSES, Job, JobStatus
from nuvom.records import JobPayloadCodec, JobRecord, Outcome, StoredJob

if TYPE_CHECKING:
    from nuvom.clock import Clock
    from nuvom.config import Settings
    from nuvom.runtime import Runtime
    from nuvom.serialization import Codec

log = logging.getLogger("nuvom.backends")

S = TypeVar("S")


class Defaults:
    """A runtime's settings, codec and clock, read only when a backend lacks one.

    A built-in backend built with no arguments (``SQLiteResultBackend()``) takes
    everything from the current runtime; given ``runtime=``, from that one (this is
    how the runtime builds the backends its settings name). What it is given
    explicitly wins.
    """

    def __init__(self, runtime: Runtime | None = None) -> None:
        self._given = runtime  # the runtime building this backend, if one is
        self._runtime = runtime

    @property
    def runtime(self) -> Runtime:
        if self._runtime is None:
            from nuvom.runtime import current

            self._runtime = current()
        return self._runtime

    @property
    def settings(self) -> Settings:
        return self.runtime.settings

    def codec(self, given: Codec | None) -> Codec:
        return given if given is not None else self.runtime.codec

    def clock(self, given: Clock | None) -> Clock:
        return given if given is not None else self.runtime.clock

    def store(self, key: Any, build: Callable[[], S]) -> tuple[S, bool]:
        """A store, and whether this backend closes it: built by a runtime, the one that
        runtime keeps under ``key`` for all its backends; else a new one of its own."""
        if self._given is not None:
            return self._given.shared(key, build), False
        # Not the current runtime's to keep: configure() would close it under this backend.
        return build(), True


# -- claiming ---------------------------------------------------------------------
def decode_claimed(
    payloads: JobPayloadCodec,
    rows: Iterable[tuple[StoredJob, int]],
    *,
    worker_id: str,
    lease_until: float,
) -> tuple[list[tuple[Job, StoredJob]], list[tuple[StoredJob, str]]]:
    """Rebuild claimed ``(row, seq)`` pairs as RUNNING jobs held by ``worker_id``, in claim
    order (priority, due time, then ``seq``: a claim's rows come back in no set order); list
    the rows that are not a valid job apart, each with its reason, for the engine to
    quarantine. A row is never trusted before it is decoded: a bad column (a priority that
    is not a number) is the row's problem, not the claim's.
    """
    claimed: list[tuple[Job, StoredJob, int]] = []
    corrupt: list[tuple[StoredJob, str]] = []
    for row, seq in rows:
        try:
            job = payloads.decode_stored(row)
        except CorruptJob as exc:
            log.warning("quarantined job %s: %s", row.id, exc)
            corrupt.append((row, str(exc)))
            continue
        job.status, job.lease_owner, job.lease_until = JobStatus.RUNNING, worker_id, lease_until
        claimed.append((job, row, seq))
    claimed.sort(key=lambda c: (-c[0].priority, c[0].due_at or 0.0, c[2]))
    return [(job, row) for job, row, _ in claimed], corrupt


def claimed_batch(
    claimed: Sequence[tuple[Job, StoredJob]], corrupt: Sequence[tuple[StoredJob, str]]
) -> Claimed:
    return Claimed([job for job, _ in claimed], [(row.id, reason) for row, reason in corrupt])


def decode_waiting(payloads: JobPayloadCodec, rows: Iterable[StoredJob]) -> list[Job]:
    """Waiting rows as jobs, for ``waiting_jobs``; an undecodable one is skipped and logged."""
    jobs = []
    for row in rows:
        try:
            jobs.append(payloads.decode_stored(row))
        except CorruptJob as exc:
            log.warning("skipping job %s: %s", row.id, exc)
    return jobs


class QuarantiningQueue(BaseJobQueue):
    """A built-in queue: ``claim_batch`` is the claim, ``pop_batch`` its jobs alone.

    It also refuses, at ``check_jobs``, a job whose payload could not be stored,
    and sums its ``queue_stats`` rows for ``stats``.
    """

    payloads: JobPayloadCodec

    def pop_batch(
        self, n: int, *, worker_id: str, lease_secs: float, queues: Queues = None
    ) -> list[Job]:
        return self.claim_batch(n, worker_id=worker_id, lease_secs=lease_secs, queues=queues).jobs

    def claim_batch(
        self, n: int, *, worker_id: str, lease_secs: float, queues: Queues = None
    ) -> Claimed:
        raise NotImplementedError

    def check_jobs(self, jobs: Sequence[Job]) -> None:
        for job in jobs:
            self.payloads.encode(job)

    def stats(self) -> dict[str, int]:
        return QueueStats.totals(self.queue_stats())


def queue_rows(
    jobs: Sequence[Job], payloads: JobPayloadCodec, now: float
) -> list[tuple[object, ...]]:
    """Rows for the SQL engines' ENQUEUE: (id, queue, priority, due, available, attempts,
    enqueued_at, payload); every payload encoded before anything is written."""
    rows: list[tuple[object, ...]] = []
    for job in jobs:
        due = job.due_at if job.due_at is not None else now
        payload = payloads.encode(job)
        rows.append((job.id, job.queue, job.priority, due, due, job.attempts, now, payload))
    return rows


def stats_rows(
    counts: Iterable[Sequence[Any]],
    owners: Iterable[Sequence[Any]],
    dead: Iterable[Sequence[Any]],
) -> list[QueueStats]:
    """``queue_stats`` rows from an SQL engine's three reads: (queue, pending, scheduled,
    running, expired), (queue, lease owner, running) and (queue, quarantined)."""
    rows: dict[str, QueueStats] = {}
    for queue, pending, scheduled, running, expired in counts:
        rows[queue] = QueueStats(
            queue, int(pending or 0), int(scheduled or 0), int(running or 0), int(expired or 0)
        )
    for queue, owner, count in owners:
        rows.setdefault(queue, QueueStats(queue)).lease_owners[owner] = int(count)
    for queue, count in dead:
        rows.setdefault(queue, QueueStats(queue)).quarantined = int(count)
    return [rows[name] for name in sorted(rows)]


# -- settling ---------------------------------------------------------------------
class SettleStatements(Protocol):
    """The four statements an SQL engine acks and nacks with (its sql module)."""

    ACK: str
    ACK_ANY: str
    NACK: str
    NACK_ANY: str


def settle_batches(
    outcomes: Sequence[Outcome], sql: SettleStatements
) -> dict[str, list[tuple[object, ...]]]:
    """Ack each finished job and nack each retry, grouped by statement for ``executemany``.

    An outcome with a ``worker_id`` acts only while that worker still holds the job.
    """
    batches: dict[str, list[tuple[object, ...]]] = {}
    for outcome in outcomes:
        job_id, owner, retry_at = outcome.job.id, outcome.worker_id, outcome.retry_at
        params: tuple[object, ...]
        if outcome.status is JobStatus.RETRYING and retry_at is not None:
            if owner is None:
                statement, params = sql.NACK_ANY, (retry_at, retry_at, job_id)
            else:
                statement, params = sql.NACK, (retry_at, retry_at, job_id, owner)
        elif owner is None:
            statement, params = sql.ACK_ANY, (job_id,)
        else:
            statement, params = sql.ACK, (job_id, owner)
        batches.setdefault(statement, []).append(params)
    return batches


def retries(outcomes: Sequence[Outcome]) -> bool:
    """True when any outcome puts its job back in the queue (wake the idle workers)."""
    return any(o.status is JobStatus.RETRYING and o.retry_at is not None for o in outcomes)


# -- results as bytes ---------------------------------------------------------------
def result_blob(codec: Codec, outcome: Outcome) -> bytes | None:
    """The bytes to store for an outcome's result: None unless it succeeded and is kept."""
    if outcome.status is not JobStatus.SUCCESS or not outcome.store_result:
        return None
    if outcome.result_blob is not None:
        return outcome.result_blob
    return codec.dumps(outcome.result)


def stored_result(codec: Codec, blob: bytes | memoryview | None) -> Any:
    """A stored result; one that no longer decodes reads as a note saying so, not an error."""
    if blob is None:
        return None
    try:
        return codec.loads(bytes(blob))
    except SerializationError as exc:
        return f"<undecodable result: {exc}>"


# -- a result row as a record (SQLite and PostgreSQL share the columns) ---------------
JOB_COLUMNS = (
    "id", "status", "func_name", "payload", "queue", "priority", "result", "has_result",
    "error_type", "error_message", "traceback", "attempts", "max_retries", "created_at",
    "due_at", "started_at", "finished_at", "updated_at", "worker_id",
)  # fmt: skip


def record_from_row(row: Sequence[Any], payloads: JobPayloadCodec, codec: Codec) -> JobRecord:
    """A ``JobRecord`` from a row of ``JOB_COLUMNS``.

    The call (args, kwargs) is read from the payload; a job still only in the
    queue has its name, creation time and options there alone. A payload that
    does not decode shows as ``["<undecodable>"]`` rather than hiding the rest.
    """
    values = dict(zip(JOB_COLUMNS, row, strict=True))
    payload = values.pop("payload")
    result, has_result = values.pop("result"), bool(values.pop("has_result"))
    record = JobRecord(
        **values,
        result=stored_result(codec, result) if has_result else None,
        has_result=has_result,
    )
    record.status = JobStatus(record.status)
    record.priority = record.priority or 0
    record.attempts = record.attempts or 0
    fill_call(record, payload, payloads)
    return record


def fill_call(
    record: JobRecord, payload: bytes | memoryview | None, payloads: JobPayloadCodec
) -> None:
    """Read ``record``'s call from its stored payload, keeping what the record already has."""
    if payload is None:
        return
    try:
        job = payloads.decode(bytes(payload), job_id=record.id, queue=record.queue or "")
    except Exception:  # a corrupt payload must not hide the rest of the record
        record.args = ["<undecodable>"]
        return
    record.args, record.kwargs = list(job.args), job.kwargs
    record.func_name = record.func_name or job.func_name
    if record.created_at is None:
        record.created_at = job.created_at
    if record.max_retries is None:
        record.max_retries = job.max_retries
    record.origin = record.origin or job.origin


# -- whole records (the memory and file result backends) -------------------------------
def status_counts(records: Iterable[JobRecord]) -> dict[str, int]:
    return dict(Counter(record.status.value for record in records))


def failed_by_queue(records: Iterable[JobRecord]) -> dict[str, int]:
    return dict(Counter(r.queue or DEFAULT_QUEUE for r in records if r.status is JobStatus.FAILED))


def prunable(
    records: Iterable[JobRecord], older_than: float, statuses: Sequence[JobStatus] | None
) -> list[JobRecord]:
    """The finished records (of ``statuses``) last updated before ``older_than``, but for
    members of a workflow still unfinished: a job waiting for them is fed their results."""
    final = set(statuses or FINAL_STATUSES)
    everything = list(records)
    unfinished = [r for r in everything if not r.status.is_final]
    open_workflows = {r.id for r in unfinished}
    fed = {dep for r in unfinished for dep in (r.origin or {}).get("after", ())}
    return [
        r
        for r in everything
        if r.status in final
        and (r.updated_at or 0.0) < older_than
        and r.id not in fed  # a .then callback or an errback still to be fed it
        and (r.origin or {}).get("workflow", r.id) not in open_workflows
    ]
