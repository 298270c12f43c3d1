"""The Redis queue: Streams with a consumer group per queue and priority, steps as Lua scripts.

Claims read each stream with ``XREADGROUP`` (highest priority first, merged in
due-time and FIFO order), expired leases move with ``XCLAIM``, acks are ``XACK``.
Scheduled jobs and retry delays wait in a sorted set and move to their stream
atomically when due. Idle workers block on ``XREAD`` of a wake-up stream.
Schedules are hashes with a sorted due index; a tick is claimed, its job enqueued and
its schedule moved on by one script (``FIRE``), keyed on the tick with ``SET NX``.
A job that waits for others is parked in a hash of its own, with a set of what it still
waits for and, per dependency, a set of what waits for it; the settle script resolves an
acked job's dependents when it has any.
Flow control lives in the same scripts: a job's limits go into its hash as one JSON field,
the claim checks them against per-key slot sets and per-task token buckets and moves a job
it holds back to the delayed set; the submit keeps one job per unique key.
``joint.py`` runs these scripts in one MULTI with the result backend's.
"""

from __future__ import annotations

import json
import logging
import threading
import time
import uuid
from collections.abc import Mapping, Sequence
from contextlib import suppress
from typing import TYPE_CHECKING, Any

from nuvom.backends.common import (
    QuarantiningQueue,
    claimed_batch,
    decode_claimed,
    decode_waiting,
)
from nuvom.backends.contract import (
    TICKS_KEPT_SECS,
    Claimed,
    DeadLetter,
    Duplicates,
    Hold,
    Queues,
    QueueStats,
    Resolved,
    claim_order,
    preview_of,
)
from nuvom.backends.redis import scripts as lua
from nuvom.backends.redis.client import (
    RedisBackend,
    connect,
    import_redis,
    retried,
    text,
    translated,
)
from nuvom.errors import CorruptJob, SerializationError
from nuvom.job import DEFAULT_QUEUE, Job, JobStatus
from nuvom.records import Schedule, StoredJob, TickClaim

if TYPE_CHECKING:
    from nuvom.records import Outcome

log = logging.getLogger("nuvom.redis")

WAKE_RETRY_MAX_SECS = 5.0  # longest pause before retrying a failed wake-up read
# How the settle script acks a final outcome: its dependents count it, or are cancelled.
_ACKS = {JobStatus.SUCCESS: "ack+", JobStatus.FAILED: "ack-", JobStatus.CANCELLED: "ack-"}
CLAIM_ROW = (
    6  # fields per job in the claim script's reply: id, queue, priority, due, attempts, payload
)
# Fields per schedule in a schedule script's reply: id, definition, next run, paused, last
# run ('' = none), last job ('' = none).
SCHEDULE_ROW = 6

Taken = tuple[list[tuple[Job, StoredJob]], list[tuple[StoredJob, str]]]


def _number(value: Any, kind: type[int] | type[float]) -> Any:
    """``value`` as a number if it is one, else as it came (the job's check then names it)."""
    try:
        return kind(value)
    except (TypeError, ValueError):
        return value


def stored_rows(flat: Sequence[Any], width: int = CLAIM_ROW) -> list[tuple[StoredJob, int]]:
    """The claim script's flat reply as rows, with their place in it (already claim order)."""
    rows = []
    for i in range(0, len(flat), width):
        job_id, queue, priority, due, attempts, payload = flat[i : i + CLAIM_ROW]
        row = StoredJob(text(job_id), text(queue), _number(priority, int), _number(due, float),
                        _number(attempts, int), payload)  # fmt: skip
        rows.append((row, i))
    return rows


def limits_arg(job: Job) -> str:
    """What the scripts enforce for ``job``: its limits as JSON, '' when it has none.

    The rate limit carries its bucket's key (the task), so the claim script never needs
    the payload; floats go as ``repr``, which the server's JSON reader reads back exactly.
    """
    origin = job.origin
    if not origin or ("rate" not in origin and "conc" not in origin and "unique" not in origin):
        return ""
    entries: dict[str, list[Any]] = {}
    rate, conc, unique = job.rate_limit, job.concurrency_limit, job.unique
    if rate is not None:
        entries["rate"] = [rate.key, rate.per_sec, rate.burst]
    if conc is not None:
        entries["conc"] = [conc.key, conc.limit]
    if unique is not None:
        entries["unique"] = [unique.key, unique.keep_secs]
    return json.dumps(entries, ensure_ascii=False, separators=(",", ":"))


def duplicates(reply: Any) -> Duplicates:
    """An enqueue script's reply as the duplicates it did not store: 1 or 0 (none), or a flat
    ``id, holder, ...`` list."""
    return dict(pairs(reply)) if isinstance(reply, list) else {}


def pairs(flat: Sequence[Any]) -> list[tuple[str, str]]:
    """A script's flat ``id, reason, ...`` reply as pairs (what it quarantined)."""
    return [(text(flat[i]), text(flat[i + 1])) for i in range(0, len(flat) - 1, 2)]


def resolved(reply: Sequence[Any]) -> Resolved:
    """A resolving script's ``{released ids, (id, reason) flat}`` reply."""
    released, cancelled = reply
    return Resolved([text(i) for i in released], pairs(cancelled))


def dead_letter(job_id: str, fields: Mapping[bytes, bytes]) -> DeadLetter:
    """A dead letter from its record (a job's or a parked job's hash, renamed); one set
    aside before quarantines were timed has no ``quarantined_at``."""
    record = {text(name): value for name, value in fields.items()}
    reason, at = record.pop("reason", b""), record.pop("quarantined_at", None)
    queue, payload = record.get("queue"), record.get("payload")
    stored = record if payload is None else payload
    return DeadLetter(job_id, text(queue) if queue else DEFAULT_QUEUE, text(reason),
                      _time_or_none(at), preview_of(stored))  # fmt: skip


def dead_row(job_id: str, fields: Mapping[bytes, bytes]) -> StoredJob:
    """A dead letter's record as the row a claim decodes; ``CorruptJob`` when it lacks what
    a row needs (a record the claim found missing keeps only its reason)."""
    record = {text(name): value for name, value in fields.items()}
    reason = text(record.get("reason", b""))
    payload, queue = record.get("payload"), record.get("queue")
    if payload is None:
        raise CorruptJob(f"job {job_id} kept no payload: {reason}", job_id=job_id)
    if not queue:
        raise CorruptJob(f"job {job_id} has no queue: {reason}", job_id=job_id)
    priority, due = text(record.get("priority", b"0")), text(record.get("due", b""))
    return StoredJob(job_id, text(queue), _number(priority, int),
                     _number(due, float) if due else None,  # '' for a parked job with none
                     _number(text(record.get("attempts", b"0")), int), payload)  # fmt: skip


def _time_or_none(value: bytes | None) -> float | None:
    try:
        return None if value is None else float(value)
    except ValueError:
        return None


def _count_into(row: QueueStats, counted: str, sub: str, count: int) -> None:
    """Add one of ``STATS_PAGE``'s counts to ``row``; a scheduled job is waiting, not pending."""
    if counted == "scheduled":
        row.scheduled += count
        row.pending = max(0, row.pending - count)
    elif counted in ("running", "expired", "quarantined"):
        setattr(row, counted, getattr(row, counted) + count)
    elif counted == "owner":
        row.lease_owners[sub] = row.lease_owners.get(sub, 0) + count
    elif counted == "held":
        row.held[sub] = row.held.get(sub, 0) + count


def _has_jobs(row: QueueStats) -> bool:
    return bool(row.pending or row.scheduled or row.running or row.expired or row.quarantined)


class RedisJobQueue(RedisBackend, QuarantiningQueue):
    name = "redis"
    shared_across_processes = True
    pushes_wakeups = True
    keeps_dependencies = True
    keeps_limits = True
    honours_refusals = True

    def ready(self) -> None:
        self._scripts = {
            name: self.client.register_script(getattr(lua, name))
            for name in ("ENQUEUE", "CLAIM", "SETTLE", "QUARANTINE", "RELEASE", "HEARTBEAT",
                         "ADJUST_ATTEMPTS",
                         "CANCEL", "CLEAR", "STATS", "WAITING", "RESOLVE", "PARKED",
                         "SAVE_SCHEDULE", "LIST_SCHEDULES", "REMOVE_SCHEDULE", "PAUSE_SCHEDULE",
                         "DUE_SCHEDULES", "SET_ASIDE_SCHEDULE", "FIRE",
                         "HOLD", "PAUSE", "UNIQUE_HOLDER", "STATS_PAGE")
        }  # fmt: skip
        self._waker: Any = None
        self._wake_lock = threading.Lock()
        self._wake_last = "$"
        self._wake_pause = 0.1
        self._closed = threading.Event()

    def script(self, name: str) -> Any:
        return self._scripts[name]

    def run(self, script: str, *args: object) -> Any:
        with translated(self.url):
            return self._scripts[script](args=[self.prefix, *args])

    # -- script arguments (the joint writer queues them in a MULTI) --------------
    def enqueue_args(self, jobs: Sequence[Job], token: str = "") -> list[object]:
        """ENQUEUE's arguments; with ``token``, running them twice stores the jobs once."""
        now = self.clock.time()
        args: list[object] = [self.prefix, repr(now), token]
        for job in jobs:  # every payload encoded before anything is written: all or nothing
            row, deps = self.job_args(job, now), job.depends_on
            if deps:  # parked: kept as submitted, due when it is released
                row[3] = "" if job.due_at is None else repr(job.due_at)
            args += [*row, "1" if job.on_failure else "0", len(deps), *deps]
        return args

    def job_args(self, job: Job, now: float) -> list[object]:
        """One job as ENQUEUE and FIRE take it: id, queue, priority, due, attempts, payload,
        limits ('' = none)."""
        due = job.due_at if job.due_at is not None else now
        payload = self.payloads.encode(job)
        return [job.id, job.queue, job.priority, repr(due), job.attempts, payload,
                limits_arg(job)]  # fmt: skip

    def settle_args(self, outcomes: Sequence[Outcome]) -> list[object]:
        args: list[object] = [self.prefix, repr(self.clock.time())]
        for outcome in outcomes:
            retry = outcome.status is JobStatus.RETRYING and outcome.retry_at is not None
            args += [
                "nack" if retry else _ACKS.get(outcome.status, "ack"),
                outcome.job.id,
                outcome.worker_id or "",
                repr(outcome.retry_at) if retry else "0",
            ]
        return args

    def decode_taken(
        self, rows: Sequence[tuple[StoredJob, int]], worker_id: str, until: float
    ) -> Taken:
        """Claimed rows as jobs; an undecodable one is quarantined with its reason."""
        claimed, corrupt = decode_claimed(
            self.payloads, rows, worker_id=worker_id, lease_until=until
        )
        if corrupt:
            flat = (v for row, why in corrupt for v in (row.id, why))
            self.run("QUARANTINE", repr(self.clock.time()), worker_id, *flat)
        return claimed, corrupt

    # -- producing -------------------------------------------------------
    def enqueue(self, job: Job) -> None:
        self.enqueue_many([job])

    def enqueue_many(self, jobs: Sequence[Job]) -> Duplicates:
        """One script; sent again (with the same token) if its reply is lost, when it answers
        with the duplicates its first run found."""
        if not jobs:
            return {}
        args = self.enqueue_args(jobs, token=uuid.uuid4().hex)
        return duplicates(retried(self.url, lambda: self._scripts["ENQUEUE"](args=args)))

    # -- wake-ups --------------------------------------------------------
    def wait_for_jobs(self, timeout: float) -> bool:
        """Block on ``XREAD`` of the wake-up stream, or until a scheduled job comes due."""
        if self._closed.is_set():
            time.sleep(timeout)
            return False
        redis = import_redis()
        try:
            with self._wake_lock:
                if self._waker is None:
                    self._waker = connect(self.url)
                waker = self._waker
            due = waker.zrange(f"{self.prefix}:delayed", 0, 0, withscores=True)
            if due:
                until_due = due[0][1] - self.clock.time()
                if until_due <= 0:
                    return True
                timeout = min(timeout, until_due)
            block_ms = max(1, int(timeout * 1000))
            got = waker.xread({f"{self.prefix}:wake": self._wake_last}, block=block_ms, count=100)
            self._wake_pause = 0.1
            if got:
                self._wake_last = text(got[0][1][-1][0])
                return True
            if self._wake_last == "$":
                self._wake_last = self._last_wake_id(waker)
            return False
        except redis.RedisError as exc:
            if self._closed.is_set():
                return False
            pause = min(timeout, self._wake_pause)
            log.warning("waiting for jobs on Redis failed (%s); retrying in %.1fs", exc, pause)
            self._wake_pause = min(self._wake_pause * 2, WAKE_RETRY_MAX_SECS)
            time.sleep(pause)
            return True  # let the worker poll once

    def _last_wake_id(self, client: Any) -> str:
        """Follow from the newest wake-up, so none that arrives between two waits is missed."""
        newest = client.xrevrange(f"{self.prefix}:wake", count=1)
        return text(newest[0][0]) if newest else "0-0"

    # -- consuming -------------------------------------------------------
    def claim_batch(
        self, n: int, *, worker_id: str, lease_secs: float, queues: Queues = None
    ) -> Claimed:
        now = self.clock.time()
        until = now + lease_secs
        refused = "\0".join(sorted(self.refused_by(worker_id)))
        flat, dead = self.run("CLAIM", repr(now), repr(until), worker_id, n, refused,
                              *(queues or ()))  # fmt: skip
        claimed = claimed_batch(*self.decode_taken(stored_rows(flat), worker_id, until))
        claimed.quarantined += pairs(dead)
        return claimed

    def ack_outcomes(self, outcomes: Sequence[Outcome]) -> Resolved | None:
        with translated(self.url):
            reply = self._scripts["SETTLE"](args=self.settle_args(outcomes))
        done = resolved(reply)
        return done if done.released or done.cancelled else None

    def ack(self, job_id: str, *, worker_id: str | None = None) -> None:
        self.run("SETTLE", repr(self.clock.time()), "ack", job_id, worker_id or "", "0")

    def nack(self, job_id: str, *, retry_at: float, worker_id: str | None = None) -> None:
        self.run("SETTLE", repr(self.clock.time()), "nack", job_id, worker_id or "", repr(retry_at))

    def release(self, job_ids: Sequence[str], *, worker_id: str) -> None:
        if job_ids:
            self.run("RELEASE", repr(self.clock.time()), worker_id, *job_ids)

    def heartbeat(self, job_ids: Sequence[str], *, worker_id: str, lease_secs: float) -> list[str]:
        if not job_ids:
            return []
        until = self.clock.time() + lease_secs
        return [text(i) for i in self.run("HEARTBEAT", worker_id, repr(until), *job_ids)]

    def adjust_attempts(self, deltas: Mapping[str, int], *, worker_id: str) -> list[str]:
        if not deltas:
            return []
        flat = [v for job_id, delta in deltas.items() for v in (job_id, delta)]
        return [text(i) for i in self.run("ADJUST_ATTEMPTS", worker_id, *flat)]

    # -- workflows -------------------------------------------------------
    def resolve(self, finished: Sequence[tuple[str, bool]]) -> Resolved:
        if not finished:
            return Resolved()
        flat = [v for job_id, ok in finished for v in (job_id, "1" if ok else "0")]
        return resolved(self.run("RESOLVE", repr(self.clock.time()), *flat))

    def parked_jobs(self) -> list[Job]:
        flat = self.run("PARKED")
        rows = []
        for i in range(0, len(flat), CLAIM_ROW):
            job_id, queue, priority, due, attempts, payload = flat[i : i + CLAIM_ROW]
            rows.append(StoredJob(text(job_id), text(queue), _number(priority, int),
                                  _number(due, float) if due else None,
                                  _number(attempts, int), payload))  # fmt: skip
        return sorted(decode_waiting(self.payloads, rows), key=lambda job: job.id)

    # -- flow control ----------------------------------------------------
    def hold(self, held: Sequence[Hold], *, worker_id: str) -> list[str]:
        if not held:
            return []
        flat = [v for h in held for v in (h.job_id, h.tag, repr(float(h.due_at)))]
        return [text(i) for i in self.run("HOLD", repr(self.clock.time()), worker_id, *flat)]

    def pause_queue(self, queue: str, paused: bool = True) -> bool:
        return bool(self.run("PAUSE", "pause" if paused else "resume", queue))

    def paused_queues(self) -> list[str]:
        return sorted(text(name) for name in self.run("PAUSE", "list", ""))

    def hold_of(self, job_id: str) -> str | None:
        with translated(self.url):
            state, hold = self.client.hmget(f"{self.prefix}:job:{job_id}", "state", "hold")
        if hold is None or state not in (b"waiting", b"delayed"):
            return None
        return text(hold)

    def unique_holder(self, key: str) -> str | None:
        holder = self.run("UNIQUE_HOLDER", key, repr(self.clock.time()))
        return text(holder) if holder else None

    # -- schedules -------------------------------------------------------
    def save_schedule(self, schedule: Schedule) -> None:
        definition = self.codec.dumps(schedule.definition())
        last_run = "" if schedule.last_run_at is None else repr(float(schedule.last_run_at))
        self.run("SAVE_SCHEDULE", schedule.id, definition, repr(float(schedule.next_run_at)),
                 "1" if schedule.paused else "0", last_run, schedule.last_job_id or "")  # fmt: skip

    def list_schedules(self) -> list[Schedule]:
        flat, bad = self.run("LIST_SCHEDULES")
        for schedule_id, reason in pairs(bad):
            log.warning("schedule %s cannot be read (%s): left out", schedule_id, reason)
        schedules = []
        for schedule_id, _, schedule, reason in self._decode_schedules(flat):
            if schedule is None:
                log.warning("schedule %s cannot be read (%s): left out", schedule_id, reason)
            else:
                schedules.append(schedule)
        return sorted(schedules, key=lambda s: s.id)

    def remove_schedule(self, schedule_id: str) -> bool:
        return bool(self.run("REMOVE_SCHEDULE", schedule_id))

    def pause_schedule(self, schedule_id: str, paused: bool) -> bool:
        return bool(self.run("PAUSE_SCHEDULE", schedule_id, "1" if paused else "0"))

    def due_schedules(self, now: float, limit: int) -> list[Schedule]:
        """A schedule that cannot be read is taken out of the due index (logged), so it does
        not come due on every pass; saving it again puts it back."""
        flat, bad = self.run("DUE_SCHEDULES", repr(float(now)), int(limit))
        for schedule_id, reason in pairs(bad):
            log.error("schedule %s set aside, its record cannot be read: %s", schedule_id, reason)
        due = []
        for schedule_id, blob, schedule, reason in self._decode_schedules(flat):
            if schedule is None:
                self.run("SET_ASIDE_SCHEDULE", schedule_id, blob)
                log.error("schedule %s set aside, it cannot be decoded: %s", schedule_id, reason)
            else:
                due.append(schedule)
        return due

    def next_schedule_at(self) -> float | None:
        with translated(self.url):
            first = self.client.zrange(f"{self.prefix}:scheds", 0, 0, withscores=True)
        return float(first[0][1]) if first else None

    def fire_tick(
        self, schedule_id: str, tick: float, *, job: Job | None, next_run_at: float
    ) -> bool:
        return self.fire_ticks([TickClaim(schedule_id, tick, job, next_run_at)])[0]

    def fire_ticks(self, claims: Sequence[TickClaim]) -> list[bool]:
        """One script per claim, all in one pipelined round trip; sent again if the reply is
        lost (the ticks' keys make that safe: a claim whose first send won answers False on
        the resend, its job queued all the same)."""
        now = self.clock.time()
        order = claim_order(claims)
        calls: list[list[object]] = []
        for i in order:  # every job encoded before anything is sent
            claim = claims[i]
            args: list[object] = [self.prefix, repr(now), claim.schedule_id,
                                  repr(float(claim.tick)), repr(float(claim.next_run_at)),
                                  int(TICKS_KEPT_SECS)]  # fmt: skip
            if claim.job is not None:
                args += self.job_args(claim.job, now)
            calls.append(args)
        script = self._scripts["FIRE"]

        def send() -> list[Any]:
            pipe = self.client.pipeline(transaction=False)
            for args in calls:
                script(args=args, client=pipe)
            return list(pipe.execute())

        replies = retried(self.url, send) if calls else []
        won = [False] * len(claims)
        for i, reply in zip(order, replies, strict=True):
            won[i] = bool(reply)
        return won

    def _decode_schedules(
        self, flat: Sequence[Any]
    ) -> list[tuple[str, bytes, Schedule | None, str]]:
        """A schedule script's rows as (id, definition blob, schedule or None, why not)."""
        out: list[tuple[str, bytes, Schedule | None, str]] = []
        for i in range(0, len(flat), SCHEDULE_ROW):
            raw_id, blob, next_run, paused, last_run, last_job = flat[i : i + SCHEDULE_ROW]
            schedule_id = text(raw_id)
            try:
                definition = self.codec.loads(blob)
                if not isinstance(definition, dict):
                    raise SerializationError("the definition is not a mapping")
                schedule = Schedule.from_stored(
                    schedule_id,
                    definition,
                    next_run_at=float(next_run),
                    paused=bool(int(paused)),
                    last_run_at=float(last_run) if last_run else None,
                    last_job_id=text(last_job) or None,
                )
            except (SerializationError, TypeError, ValueError) as exc:
                out.append((schedule_id, blob, None, str(exc)))
            else:
                out.append((schedule_id, blob, schedule, ""))
        return out

    # -- inspecting and removing -----------------------------------------
    def qsize(self, queue: str | None = None) -> int:
        key = f"{self.prefix}:waiting"
        with translated(self.url):
            if queue is None:
                return sum(int(v) for v in self.client.hvals(key))
            return int(self.client.hget(key, queue) or 0)

    def clear(self) -> int:
        return int(self.run("CLEAR"))

    def cancel(self, job_id: str) -> bool:
        return bool(self.run("CANCEL", job_id))

    def waiting_jobs(self) -> list[Job]:
        flat = self.run("WAITING")
        rows = [flat[i : i + 7] for i in range(0, len(flat), 7)]
        rows.sort(key=lambda r: (-int(r[2]), float(r[3]), int(r[6])))
        return decode_waiting(
            self.payloads, (row for row, _ in stored_rows([v for r in rows for v in r[:6]]))
        )

    def queue_stats(self) -> list[QueueStats]:
        """One row per queue that holds a job or is paused. The waiting counts are kept per
        queue; the rest is counted over the delayed, lease, hold and quarantine indexes a
        page at a time (``STATS_PAGE``), so a large store never blocks the server long."""
        now = repr(self.clock.time())
        with translated(self.url):
            waiting = self.client.hgetall(f"{self.prefix}:waiting")
        rows: dict[str, QueueStats] = {}
        for name, count in waiting.items():
            rows[text(name)] = QueueStats(text(name), pending=int(count))
        for what in ("delayed", "leases", "holds", "dead"):
            cursor: Any = "0"
            while True:
                cursor, flat = self.run("STATS_PAGE", now, what, cursor)
                for i in range(0, len(flat), 4):
                    queue, counted, sub = text(flat[i]), text(flat[i + 1]), text(flat[i + 2])
                    _count_into(rows.setdefault(queue, QueueStats(queue)), counted, sub,
                                int(flat[i + 3]))  # fmt: skip
                if text(cursor) == "0":
                    break
        for name in self.paused_queues():
            rows.setdefault(name, QueueStats(name)).paused = True
        return [row for _, row in sorted(rows.items()) if row.paused or _has_jobs(row)]

    # -- dead letters: P:dead, and each one's record at P:dead:<id> ---------------------
    def dead_letters(self, *, limit: int = 100, after: str | None = None) -> list[DeadLetter]:
        """Sorted here, as dead letters are few; the records are read in one round trip,
        and one forgotten in between is left out."""
        dead_key = f"{self.prefix}:dead"
        with translated(self.url):
            ids = sorted(text(i) for i in self.client.smembers(dead_key))
            page = [i for i in ids if after is None or i > after][: max(0, limit)]
            pipe = self.client.pipeline(transaction=False)
            for job_id in page:
                pipe.hgetall(f"{dead_key}:{job_id}")
            records = pipe.execute() if page else []
        return [dead_letter(job_id, fields)
                for job_id, fields in zip(page, records, strict=True) if fields]  # fmt: skip

    def revive_dead(self, job_id: str) -> Job | None:
        """Read back as a claim reads a job: the same row, decoded with today's payload codec
        (so a signing key set right since then reads it)."""
        with translated(self.url):
            fields = self.client.hgetall(f"{self.prefix}:dead:{job_id}")
        if not fields:
            return None
        try:
            return self.payloads.decode_stored(dead_row(job_id, fields))
        except CorruptJob as exc:
            raise CorruptJob(str(exc), job_id=job_id, backend=self.name) from None

    def forget_dead(self, job_id: str) -> bool:
        """The record and its id in P:dead go in one MULTI, so the quarantined count (read
        from P:dead) drops with it."""
        with translated(self.url):
            pipe = self.client.pipeline(transaction=True)
            pipe.delete(f"{self.prefix}:dead:{job_id}")
            pipe.srem(f"{self.prefix}:dead", job_id)
            deleted, removed = pipe.execute()
        return bool(deleted or removed)

    def stats(self) -> dict[str, int]:
        pending, scheduled, running, expired, quarantined = (
            int(v) for v in self.run("STATS", repr(self.clock.time()))
        )
        return {
            "pending": pending,
            "scheduled": scheduled,
            "running": running,
            "expired": expired,
            "quarantined": quarantined,
            "waiting": pending + scheduled,
        }

    def close(self) -> None:
        self._closed.set()
        with self._wake_lock:
            waker, self._waker = self._waker, None
        for client in (waker, self.client):
            if client is not None:
                with suppress(Exception):  # closing must not fail because the server went away
                    client.close()
