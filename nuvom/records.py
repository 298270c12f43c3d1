"""Plain records that pass between the worker and the backends.

``Outcome`` is what one attempt produced; ``JobRecord`` is what a result
backend knows about a job, with the changes each step makes to it written
once; ``JobPayloadCodec`` turns the stored part of a job into bytes and back.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, NamedTuple

from nuvom.errors import CorruptJob, SerializationError
from nuvom.job import Job, JobStatus
from nuvom.serialization import Codec, find_unserializable
from nuvom.signing import unsigned

PAYLOAD_VERSION = 1  # bump when the job payload layout changes


@dataclass(slots=True)
class ErrorInfo:
    type: str
    message: str
    traceback: str | None = None

    @classmethod
    def from_exception(cls, exc: BaseException, traceback: str | None = None) -> ErrorInfo:
        return cls(type=type(exc).__name__, message=str(exc), traceback=traceback)

    def __str__(self) -> str:
        # What ``get_error`` returns, so a result backend that stores ``str(error)`` keeps it.
        return f"{self.type}: {self.message}"


@dataclass(slots=True)
class Outcome:
    """The end of one attempt: a result, a final failure, or a retry at ``retry_at``."""

    job: Job
    status: JobStatus  # SUCCESS, FAILED or RETRYING
    result: Any = None
    error: ErrorInfo | None = None
    started_at: float | None = None
    finished_at: float | None = None
    worker_id: str | None = None
    retry_at: float | None = None
    store_result: bool = True
    result_blob: bytes | None = None  # the result already encoded by the worker, if it was


@dataclass(slots=True)
class AttemptRecord:
    number: int
    status: str
    started_at: float | None = None
    finished_at: float | None = None
    worker_id: str | None = None
    error_type: str | None = None
    error_message: str | None = None
    traceback: str | None = None


@dataclass(slots=True)
class JobRecord:
    """Everything a result backend knows about one job."""

    id: str
    status: JobStatus
    func_name: str | None = None
    args: list[Any] = field(default_factory=list)
    kwargs: dict[str, Any] = field(default_factory=dict)
    queue: str | None = None
    priority: int = 0
    result: Any = None
    has_result: bool = False
    error_type: str | None = None
    error_message: str | None = None
    traceback: str | None = None
    attempts: int = 0
    max_retries: int | None = None
    created_at: float | None = None
    due_at: float | None = None
    started_at: float | None = None
    finished_at: float | None = None
    updated_at: float | None = None
    worker_id: str | None = None
    history: list[AttemptRecord] = field(default_factory=list)
    origin: dict[str, Any] | None = None  # {"schedule": id, "tick": time} for a tick's job

    @property
    def duration_secs(self) -> float | None:
        if self.started_at is None or self.finished_at is None:
            return None
        return self.finished_at - self.started_at

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["status"] = self.status.value
        data["duration_secs"] = self.duration_secs
        return data

    # -- what each step changes (for backends that keep whole records) -------
    def note_enqueued(self, job: Job, now: float) -> None:
        """The job was (re-)enqueued: its call, and PENDING or SCHEDULED by its due time."""
        self.note_call(job.func_name, job.queue, job.args, job.kwargs, job.created_at)
        self.priority, self.due_at, self.max_retries = job.priority, job.due_at, job.max_retries
        self.origin = job.origin or self.origin
        scheduled = job.due_at is not None and job.due_at > now
        self.status = JobStatus.SCHEDULED if scheduled else JobStatus.PENDING
        self.finished_at = None

    def note_call(
        self,
        func_name: str,
        queue: str,
        args: Any,
        kwargs: dict[str, Any],
        created_at: float | None,
    ) -> None:
        self.func_name, self.queue, self.created_at = func_name, queue, created_at
        self.args, self.kwargs = list(args), dict(kwargs)

    def note_started(self, worker_id: str, started_at: float) -> None:
        """A new attempt runs now; one still RUNNING never reported back and is LOST."""
        for earlier in self.history:
            if earlier.status == JobStatus.RUNNING.value:
                earlier.status = LOST
        number = len(self.history) + 1
        self.history.append(
            AttemptRecord(number, JobStatus.RUNNING.value, started_at, None, worker_id)
        )
        self.status, self.started_at = JobStatus.RUNNING, started_at
        self.attempts, self.worker_id = number, worker_id
        self.finished_at = None

    def note_released(self) -> None:
        """The running attempt went back to the queue unfinished: it is not counted."""
        if self.status is not JobStatus.RUNNING:
            return
        if self.history and self.history[-1].status == JobStatus.RUNNING.value:
            self.history.pop()
        self.status, self.attempts = JobStatus.PENDING, max(0, self.attempts - 1)

    def note_outcome(self, outcome: Outcome) -> None:
        """The current attempt ended; the caller keeps the result (a value or its bytes)."""
        error = outcome.error
        self.status = outcome.status
        self.error_type = error.type if error else None
        self.error_message = error.message if error else None
        self.traceback = error.traceback if error else None
        if outcome.status is JobStatus.SUCCESS and outcome.store_result:
            self.has_result = True
        if outcome.status is JobStatus.RETRYING:
            self.due_at = outcome.retry_at
        else:
            self.finished_at = outcome.finished_at
        if self.history:
            attempt = self.history[-1]
            attempt.status, attempt.finished_at = outcome.status.value, outcome.finished_at
            if error:
                attempt.error_type, attempt.error_message = error.type, error.message
                attempt.traceback = error.traceback


LOST = "LOST"  # the status of an attempt whose worker never reported back


@dataclass(slots=True)
class WorkerInfo:
    """A running worker as the backend records it, for ``nuvom workers``."""

    id: str
    host: str
    pid: int
    pool: str
    concurrency: int
    inflight: int  # jobs it holds (running or prefetched) at its last heartbeat
    heartbeat_at: float
    started_at: float
    lease_secs: float  # its heartbeat is stale, and the worker lost, after this long

    def is_lost(self, now: float) -> bool:
        return now > self.heartbeat_at + self.lease_secs

    def to_dict(self, now: float) -> dict[str, Any]:
        data = asdict(self)
        data["status"] = "lost" if self.is_lost(now) else "live"
        return data


class StoredJob(NamedTuple):
    """A job as a queue keeps it: its own columns, and the payload with the call."""

    id: str
    queue: str
    priority: int
    due_at: float | None
    attempts: int
    payload: bytes


class JobPayloadCodec:
    """Turns the stored part of a ``Job`` into bytes and back.

    Id, queue, priority, due time and attempts live in the backend's own
    columns or keys; the payload carries the call itself.
    """

    def __init__(self, codec: Codec) -> None:
        self.codec = codec

    def encode(self, job: Job) -> bytes:
        """The payload of a job about to be stored; ``InvalidJob`` first if a field changed
        to something no queue can store since the job was built."""
        job.validate()
        # args as a list: a top-level tuple would go through the codec's slower extension hook.
        body = [PAYLOAD_VERSION, job.func_name, list(job.args), job.kwargs, job.created_at]
        overrides = job.overrides()
        if overrides or job.origin:
            body.append(overrides)
        if job.origin:
            body.append(job.origin)
        try:
            data = self.codec.dumps(body)
        except SerializationError as exc:
            culprit = find_unserializable(self.codec, job.args, job.kwargs)
            if culprit is None:
                raise
            message = f"{culprit} of {job.func_name}() cannot be serialized: {exc}"
            raise SerializationError(message, argument=culprit) from None
        signer = self.codec.signer
        return data if signer is None else signer.sign(data)

    def _body(self, data: bytes | memoryview) -> bytes:
        """The serializer's bytes of a stored payload: its signature checked when a key is
        set (``BadSignature``), taken off unchecked when not."""
        signer = self.codec.signer
        return unsigned(bytes(data)) if signer is None else signer.verify(bytes(data))

    def origin(self, data: bytes | memoryview) -> dict[str, Any] | None:
        """A payload's ``origin`` alone, without building a ``Job`` (``prune`` reads many);
        None when it has none. Raises ``SerializationError`` for what is not a payload."""
        body = self.codec.loads(unsigned(bytes(data)))
        if not isinstance(body, list) or not body or body[0] != PAYLOAD_VERSION:
            raise SerializationError("payload is not a job record")
        origin = body[6] if len(body) > 6 else None  # the layout ``encode`` writes
        return origin if isinstance(origin, dict) else None

    def decode(
        self,
        data: bytes | memoryview,
        *,
        job_id: str,
        queue: str,
        priority: int = 0,
        attempts: int = 0,
        due_at: float | None = None,
    ) -> Job:
        """Rebuild the job; raises ``CorruptJob`` for anything that is not a valid payload."""
        try:
            body = self.codec.loads(self._body(data))
            if not isinstance(body, list) or len(body) < 5:
                raise SerializationError("payload is not a job record")
            version, func_name, args, kwargs, created_at = body[:5]
            if version != PAYLOAD_VERSION:
                raise SerializationError(f"payload version {version!r} is not {PAYLOAD_VERSION}")
            overrides = body[5] if len(body) > 5 else {}
            if not isinstance(overrides, dict):
                raise SerializationError("payload options are not a mapping")
            origin = body[6] if len(body) > 6 else None
            job = Job(
                func_name,
                args=args,
                kwargs=kwargs,
                id=job_id,
                queue=queue,
                priority=priority,
                attempts=attempts,
                created_at=created_at,
                due_at=due_at,
                origin=origin,
                **overrides,
            )
        except Exception as exc:  # whatever is wrong with a record, it is that record's problem
            raise CorruptJob(f"job {job_id} cannot be decoded: {exc}", job_id=job_id) from None
        return job

    def decode_stored(self, row: StoredJob) -> Job:
        """``decode`` of a queue row; raises ``CorruptJob``."""
        return self.decode(
            row.payload,
            job_id=row.id,
            queue=row.queue,
            priority=row.priority,
            attempts=row.attempts,
            due_at=row.due_at,
        )


@dataclass(slots=True)
class Schedule:
    """A recurring call of a task: its timetable (``cron`` or ``interval``), where it is in
    it (``next_run_at``, the last tick fired and that tick's job) and whether it is paused.

    Declared ones (``@task(cron=...)``) get an id from the task name and the timetable,
    so every worker upserting them from the manifest writes the same record.
    """

    id: str
    func_name: str
    args: list[Any] = field(default_factory=list)
    kwargs: dict[str, Any] = field(default_factory=dict)
    cron: str | None = None
    interval: float | None = None
    timezone: str = "UTC"
    anchor: float = 0.0  # an interval's tick n is at anchor + n * interval (no drift)
    next_run_at: float = 0.0
    overlap: str = "allow"  # allow | skip (no new run while the last tick's job is unfinished)
    catchup: str = "latest"  # latest | all | none: what a scheduler does with missed ticks
    max_catchup: int = 100
    queue: str | None = None
    priority: int | None = None
    declared: bool = False  # from @task in source: retired when the declaration goes
    paused: bool = False
    last_run_at: float | None = None  # the last tick claimed (fired or skipped)
    last_job_id: str | None = None
    created_at: float = 0.0

    DEFINITION = ("func_name", "args", "kwargs", "cron", "interval", "timezone", "anchor",
                  "overlap", "catchup", "max_catchup", "queue", "priority", "declared",
                  "created_at")  # fmt: skip

    def definition(self) -> dict[str, Any]:
        """What the user set (stored as one blob); the rest moves as ticks fire."""
        return {name: getattr(self, name) for name in self.DEFINITION}

    @classmethod
    def from_stored(
        cls,
        schedule_id: str,
        definition: dict[str, Any],
        *,
        next_run_at: float,
        paused: bool,
        last_run_at: float | None,
        last_job_id: str | None,
    ) -> Schedule:
        known = {k: v for k, v in definition.items() if k in cls.DEFINITION}
        return cls(schedule_id, **known, next_run_at=next_run_at, paused=bool(paused),
                   last_run_at=last_run_at, last_job_id=last_job_id)  # fmt: skip

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True, slots=True)
class TickClaim:
    """One tick a scheduler claims (``fire_ticks``): the job it runs (None: skipped by the
    overlap or catch-up policy) and where the schedule goes next once it is claimed."""

    schedule_id: str
    tick: float
    job: Job | None
    next_run_at: float
