"""The Redis queue: Streams with a consumer group per queue and priority, steps as Lua scripts.

Claims read each stream with ``XREADGROUP`` (highest priority first, merged in
due-time and FIFO order), expired leases move with ``XCLAIM``, acks are ``XACK``.
Scheduled jobs and retry delays wait in a sorted set and move to their stream
atomically when due. Idle workers block on ``XREAD`` of a wake-up stream.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, suppress
from typing import TYPE_CHECKING, Any

from nuvom.clock import SYSTEM_CLOCK, Clock
from nuvom.errors import BackendError, BackendUnavailable, CorruptJob
from nuvom.job import Job, JobStatus
from nuvom.queue_backends import redis_scripts as lua
from nuvom.queue_backends.base import BaseJobQueue
from nuvom.records import ErrorInfo, JobPayloadCodec
from nuvom.serialization import Codec

if TYPE_CHECKING:
    from nuvom.records import Outcome
    from nuvom.result_backends.base import BaseResultBackend
    from nuvom.result_backends.redis_backend import RedisResultBackend

log = logging.getLogger("nuvom.redis")

DEFAULT_PREFIX = "nuvom"
SOCKET_TIMEOUT_SECS = 10.0  # a command that gets no answer in this long fails (never hangs)
CONNECT_TIMEOUT_SECS = 5.0  # a TCP connect to Redis gives up after this long
WAKE_RETRY_MAX_SECS = 5.0  # longest pause before retrying a failed wake-up read
INSTALL_HINT = 'the Redis backend needs redis-py: pip install "nuvom[redis]"'


def import_redis() -> Any:
    try:
        import redis
    except ImportError:
        raise BackendError(INSTALL_HINT, backend="redis") from None
    return redis


def connect(url: str) -> Any:
    """A client with bounded timeouts; it reconnects by itself after the server comes back."""
    redis = import_redis()
    return redis.Redis.from_url(
        url,
        socket_timeout=SOCKET_TIMEOUT_SECS,
        socket_connect_timeout=CONNECT_TIMEOUT_SECS,
        health_check_interval=30,
    )


@contextmanager
def translated(url: str) -> Iterator[None]:
    """Driver errors as nuvom errors: unreachable -> ``BackendUnavailable``."""
    redis = import_redis()
    try:
        yield
    except (redis.ConnectionError, redis.TimeoutError, redis.BusyLoadingError) as exc:
        raise BackendUnavailable(
            f"Redis at {_redact(url)} is unavailable: {exc}", backend="redis"
        ) from None
    except redis.RedisError as exc:
        raise BackendError(f"Redis error on {_redact(url)}: {exc}", backend="redis") from None


def in_transaction(pipe: Any, script: Any, args: Sequence[object]) -> None:
    """Queue ``script`` on a MULTI pipeline as EVAL of its source.

    Not EVALSHA: redis-py then asks ``SCRIPT EXISTS`` before every EXEC (a round
    trip of its own), and a NOSCRIPT inside EXEC would apply only part of the
    transaction. Redis caches the compiled script, so EVAL costs only the bytes.
    """
    pipe.eval(script.script, 0, *args)


def _redact(url: str) -> str:
    head, sep, tail = url.rpartition("@")
    if not sep:
        return url
    scheme, _, _ = head.partition("://")
    return f"{scheme}://***@{tail}"


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


class RedisJobQueue(BaseJobQueue):
    name = "redis"
    shared_across_processes = True
    pushes_wakeups = True

    def __init__(
        self,
        url: str | None = None,
        *,
        prefix: str = DEFAULT_PREFIX,
        codec: Codec | None = None,
        clock: Clock = SYSTEM_CLOCK,
    ) -> None:
        super().__init__(clock=clock)
        if url is None:
            raise BackendError(
                "the redis queue needs NUVOM_REDIS_URL (e.g. redis://127.0.0.1:6379/0)",
                backend="redis",
            )
        self.url = url
        self.prefix = prefix
        self.client = connect(url)
        self.payloads = JobPayloadCodec(codec or Codec())
        self._scripts = {
            name: self.client.register_script(getattr(lua, name))
            for name in ("ENQUEUE", "CLAIM", "SETTLE", "RELEASE", "HEARTBEAT", "REQUEUE_EXPIRED",
                         "CANCEL", "CLEAR", "STATS", "WAITING")
        }  # fmt: skip
        self._claim_and_start: Any = None  # registered on first use with a shared result backend
        self._waker: Any = None
        self._wake_lock = threading.Lock()
        self._wake_last = "$"
        self._wake_pause = 0.1
        self._closed = threading.Event()

    def __repr__(self) -> str:
        return f"RedisJobQueue({_redact(self.url)!r}, prefix={self.prefix!r})"

    def _run(self, script: str, *args: object) -> Any:
        with translated(self.url):
            return self._scripts[script](args=[self.prefix, *args])

    # -- producing -------------------------------------------------------
    def enqueue(self, job: Job) -> None:
        self.enqueue_many([job])

    def _enqueue_args(self, jobs: Sequence[Job]) -> list[object]:
        now = self.clock.time()
        args: list[object] = [self.prefix, repr(now)]
        for job in jobs:  # every payload encoded before anything is written: all or nothing
            due = job.due_at if job.due_at is not None else now
            payload = self.payloads.encode(job)
            args += [job.id, job.queue, job.priority, repr(due), job.attempts, payload]
        return args

    def enqueue_many(self, jobs: Sequence[Job]) -> None:
        if jobs:
            args = self._enqueue_args(jobs)
            with translated(self.url):
                self._scripts["ENQUEUE"](args=args)

    def _shared(self, results: BaseResultBackend) -> RedisResultBackend | None:
        """The result backend if it is on this queue's Redis, so steps can share a transaction."""
        from nuvom.result_backends.redis_backend import RedisResultBackend

        if isinstance(results, RedisResultBackend) and results.url == self.url:
            return results
        return None

    def submit(self, jobs: Sequence[Job], results: BaseResultBackend) -> None:
        """Record and enqueue in one MULTI: no worker can finish a job before it is recorded."""
        if not jobs:
            return
        shared = self._shared(results)
        if shared is None:
            for job in jobs:  # refuse a bad payload before anything is recorded
                self.payloads.encode(job)
            results.record_enqueued(jobs)
            self.enqueue_many(jobs)
            return
        args = self._enqueue_args(jobs)
        items = shared.enqueued_items(jobs)
        with translated(self.url):
            pipe = self.client.pipeline(transaction=True)
            shared.write_in(pipe, items)
            in_transaction(pipe, self._scripts["ENQUEUE"], args)
            pipe.execute()

    # -- wake-ups --------------------------------------------------------
    def listen(self, worker_id: str) -> None:
        """Start following the wake-up stream (called by the worker's waker thread)."""

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
                self._wake_last = _text(got[0][1][-1][0])
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
        return _text(newest[0][0]) if newest else "0-0"

    # -- consuming -------------------------------------------------------
    def pop_batch(
        self,
        n: int,
        *,
        worker_id: str,
        lease_secs: float,
        queues: Sequence[str] | None = None,
    ) -> list[Job]:
        return self._claim(n, worker_id, lease_secs, queues, None)

    def _claim(
        self,
        n: int,
        worker_id: str,
        lease_secs: float,
        queues: Sequence[str] | None,
        quarantined: list[tuple[str, str]] | None,
        shared: RedisResultBackend | None = None,
        unrecorded: list[Job] | None = None,
    ) -> list[Job]:
        """Claim up to ``n`` jobs; with ``shared``, also mark them running in the same script.

        Jobs that had no result record to mark are appended to ``unrecorded``.
        """
        now = self.clock.time()
        until = now + lease_secs
        width = 6
        if shared is None:
            flat = self._run("CLAIM", repr(now), repr(until), worker_id, n, *(queues or ()))
        else:
            width = 7
            flat = self._run_claim_and_start(shared, now, until, worker_id, n, queues)
        jobs: list[Job] = []
        for i in range(0, len(flat), width):
            job_id, queue, priority, due, attempts, payload = flat[i : i + 6]
            job_id, queue = _text(job_id), _text(queue)
            try:
                job = self.payloads.decode(
                    payload,
                    job_id=job_id,
                    queue=queue,
                    priority=int(priority),
                    attempts=int(attempts),
                    due_at=float(due),
                )
            except CorruptJob as exc:
                log.warning("quarantined job %s: %s", job_id, exc)
                self._run("SETTLE", repr(now), "ack", job_id, "", "0")
                if quarantined is not None:
                    quarantined.append((job_id, str(exc)))
                continue
            job.status, job.lease_owner, job.lease_until = JobStatus.RUNNING, worker_id, until
            jobs.append(job)
            if width == 7 and unrecorded is not None and int(flat[i + 6]) == 0:
                unrecorded.append(job)
        return jobs

    def _run_claim_and_start(
        self,
        shared: RedisResultBackend,
        now: float,
        until: float,
        worker_id: str,
        n: int,
        queues: Sequence[str] | None,
    ) -> Any:
        if self._claim_and_start is None:
            from nuvom.result_backends.redis_backend import SAVE_SCRIPT

            self._claim_and_start = self.client.register_script(lua.claim_and_start(SAVE_SCRIPT))
        args = [self.prefix, repr(now), repr(until), worker_id, n,
                shared.prefix, shared.ttl_secs or 0, shared.history_cap, *(queues or ())]  # fmt: skip
        with translated(self.url):
            return self._claim_and_start(args=args)

    def claim(
        self,
        n: int,
        *,
        worker_id: str,
        lease_secs: float,
        results: BaseResultBackend,
        queues: Sequence[str] | None = None,
    ) -> list[Job]:
        shared = self._shared(results)
        if shared is None:
            return super().claim(
                n, worker_id=worker_id, lease_secs=lease_secs, results=results, queues=queues
            )
        # Claim and mark running in one script: one round trip on the idle path.
        quarantined: list[tuple[str, str]] = []
        unrecorded: list[Job] = []
        jobs = self._claim(n, worker_id, lease_secs, queues, quarantined, shared, unrecorded)
        if unrecorded:
            results.mark_running(unrecorded, worker_id=worker_id, started_at=self.clock.time())
        for job_id, reason in quarantined:
            results.set_error(job_id, ErrorInfo("CorruptJob", reason))
        return jobs

    def pop_batch_reporting_corrupt(
        self,
        n: int,
        *,
        worker_id: str,
        lease_secs: float,
        queues: Sequence[str] | None = None,
    ) -> tuple[list[Job], list[tuple[str, str]]]:
        quarantined: list[tuple[str, str]] = []
        return self._claim(n, worker_id, lease_secs, queues, quarantined), quarantined

    def settle(self, outcomes: Sequence[Outcome], results: BaseResultBackend) -> None:
        """Results first, then every ack and nack in one script (one MULTI on a shared Redis)."""
        args: list[object] = [self.prefix, repr(self.clock.time())]
        for outcome in outcomes:
            retry = outcome.status is JobStatus.RETRYING and outcome.retry_at is not None
            args += [
                "nack" if retry else "ack",
                outcome.job.id,
                outcome.worker_id or "",
                repr(outcome.retry_at) if retry else "0",
            ]
        shared = self._shared(results)
        if shared is None:
            results.save_outcomes(outcomes)
            with translated(self.url):
                self._scripts["SETTLE"](args=args)
            return
        items = shared.outcome_items(outcomes)
        with translated(self.url):
            pipe = self.client.pipeline(transaction=True)
            shared.write_in(pipe, items)
            in_transaction(pipe, self._scripts["SETTLE"], args)
            pipe.execute()

    def ack(self, job_id: str, *, worker_id: str | None = None) -> None:
        self._run("SETTLE", repr(self.clock.time()), "ack", job_id, worker_id or "", "0")

    def nack(self, job_id: str, *, retry_at: float, worker_id: str | None = None) -> None:
        self._run(
            "SETTLE", repr(self.clock.time()), "nack", job_id, worker_id or "", repr(retry_at)
        )

    def release(self, job_ids: Sequence[str], *, worker_id: str) -> None:
        if job_ids:
            self._run("RELEASE", worker_id, *job_ids)

    def heartbeat(self, job_ids: Sequence[str], *, worker_id: str, lease_secs: float) -> list[str]:
        if not job_ids:
            return []
        until = self.clock.time() + lease_secs
        return [_text(i) for i in self._run("HEARTBEAT", worker_id, repr(until), *job_ids)]

    def requeue_expired(self) -> int:
        return int(self._run("REQUEUE_EXPIRED", repr(self.clock.time())))

    def qsize(self, queue: str | None = None) -> int:
        key = f"{self.prefix}:waiting"
        with translated(self.url):
            if queue is None:
                return sum(int(v) for v in self.client.hvals(key))
            return int(self.client.hget(key, queue) or 0)

    def clear(self) -> int:
        return int(self._run("CLEAR"))

    def cancel(self, job_id: str) -> bool:
        return self._run("CANCEL", job_id) is not None

    def cancel_job(self, job_id: str, results: BaseResultBackend) -> bool:
        if not self.cancel(job_id):
            return False
        results.mark_cancelled(job_id, at=self.clock.time())
        return True

    def waiting_jobs(self) -> list[Job]:
        """Every job not currently claimed, in claim order (for ``nuvom migrate-queue``)."""
        flat = self._run("WAITING")
        rows = [flat[i : i + 7] for i in range(0, len(flat), 7)]
        rows.sort(key=lambda r: (-int(r[2]), float(r[3]), int(r[6])))
        jobs = []
        for job_id, queue, priority, due, attempts, payload, _ in rows:
            try:
                jobs.append(
                    self.payloads.decode(
                        payload,
                        job_id=_text(job_id),
                        queue=_text(queue),
                        priority=int(priority),
                        attempts=int(attempts),
                        due_at=float(due),
                    )
                )
            except CorruptJob as exc:
                log.warning("skipping job %s: %s", _text(job_id), exc)
        return jobs

    def stats(self) -> dict[str, int]:
        pending, scheduled, running, expired = (
            int(v) for v in self._run("STATS", repr(self.clock.time()))
        )
        return {
            "pending": pending,
            "scheduled": scheduled,
            "running": running,
            "expired": expired,
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
