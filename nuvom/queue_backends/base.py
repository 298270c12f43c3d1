"""The queue backend contract (DESIGN.md §3) that every backend keeps.

At least once, atomic claims under a lease, batches, order by priority then due
time then FIFO, poison records quarantined. ``tests/conformance`` checks it.
"""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, ClassVar

from nuvom.clock import SYSTEM_CLOCK, Clock
from nuvom.job import Job, JobStatus
from nuvom.records import ErrorInfo

if TYPE_CHECKING:
    from nuvom.records import Outcome, WorkerInfo
    from nuvom.result_backends.base import BaseResultBackend


ALL_QUEUES = "*"  # the queue name of a stats row that covers every queue


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

    @staticmethod
    def totals(rows: Sequence[QueueStats]) -> dict[str, int]:
        """The flat counts ``BaseJobQueue.stats`` returns, summed over ``rows``."""
        keys = ("pending", "scheduled", "running", "expired", "quarantined")
        totals = {key: sum(getattr(row, key) for row in rows) for key in keys}
        totals["waiting"] = totals["pending"] + totals["scheduled"]
        return totals


class BaseJobQueue(ABC):
    """Where jobs wait. Subclasses implement the abstract methods; the rest has defaults.

    Every method is safe to call from several threads at once. Backends marked
    ``shared_across_processes`` also keep the contract across processes/hosts.
    """

    name: ClassVar[str] = "base"
    #: True when producers and workers in different processes see the same jobs.
    shared_across_processes: ClassVar[bool] = False
    #: True when ``wait_for_jobs`` returns as soon as a job arrives (push), not by polling.
    pushes_wakeups: ClassVar[bool] = False

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

    def enqueue_many(self, jobs: Sequence[Job]) -> None:
        """Store many jobs, atomically where the backend can (all or none).

        The default loops over ``enqueue`` and is not atomic; built-in backends override it.
        """
        for job in jobs:
            self.enqueue(job)

    # -- consuming -------------------------------------------------------
    @abstractmethod
    def pop_batch(
        self,
        n: int,
        *,
        worker_id: str,
        lease_secs: float,
        queues: Sequence[str] | None = None,
    ) -> list[Job]:
        """Claim up to ``n`` due jobs for ``worker_id`` until now + ``lease_secs``.

        Atomic: no job is held by two claimers at once. Jobs whose lease expired
        are claimable again. Each claimed job's ``attempts`` goes up by one.
        Returned in order: higher priority first, then earlier due time, then FIFO.
        Undecodable records are quarantined (logged, never returned). Non-blocking.
        """

    @abstractmethod
    def ack(self, job_id: str, *, worker_id: str | None = None) -> None:
        """Remove a finished job. Idempotent; with ``worker_id`` only if that worker holds it."""

    @abstractmethod
    def nack(self, job_id: str, *, retry_at: float, worker_id: str | None = None) -> None:
        """Give a claimed job back, claimable again from ``retry_at``. Attempts are kept."""

    @abstractmethod
    def heartbeat(self, job_ids: Sequence[str], *, worker_id: str, lease_secs: float) -> list[str]:
        """Extend the leases ``worker_id`` holds on ``job_ids``; return the ids still held."""

    @abstractmethod
    def requeue_expired(self) -> int:
        """Make jobs whose lease ran out claimable now; return how many. Idempotent."""

    @abstractmethod
    def qsize(self, queue: str | None = None) -> int:
        """Jobs waiting (due or scheduled), not counting claimed ones."""

    @abstractmethod
    def clear(self) -> int:
        """Remove every job, claimed or not; return how many."""

    @abstractmethod
    def cancel(self, job_id: str) -> bool:
        """Remove a job that is waiting; False if it is claimed or unknown."""

    def release(self, job_ids: Sequence[str], *, worker_id: str) -> None:
        """Give back claimed jobs that did not finish (shutdown): claimable now, attempt uncounted.

        The default nacks each with ``retry_at`` = now (the attempt stays counted).
        """
        now = self.clock.time()
        for job_id in job_ids:
            self.nack(job_id, retry_at=now, worker_id=worker_id)

    def wait_for_jobs(self, timeout: float) -> bool:
        """Block up to ``timeout`` seconds or until new jobs may be claimable.

        True when woken by a push. The default only sleeps: polling backends are
        polled by the worker with adaptive back-off.
        """
        time.sleep(timeout)
        return False

    def stats(self) -> dict[str, int]:
        """Counts for ``nuvom queue stats``; backends add what they know."""
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

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release connections and files. Idempotent."""

    # -- worker registry (optional) ----------------------------------------
    # Workers record themselves so ``nuvom workers`` can list them. A backend
    # that keeps no registry leaves these as they are: workers run the same,
    # and the listing says the backend does not record workers.

    #: True when the backend records workers (``list_workers`` means something).
    records_workers: ClassVar[bool] = False

    def register_worker(self, info: WorkerInfo) -> None:  # noqa: B027 - optional hook
        """Record a worker that started (replacing any record with its id)."""

    def heartbeat_worker(self, worker_id: str, *, inflight: int, at: float) -> None:  # noqa: B027
        """Note that ``worker_id`` is alive at ``at`` holding ``inflight`` jobs."""

    def unregister_worker(self, worker_id: str) -> None:  # noqa: B027 - optional hook
        """Forget a worker that stopped cleanly. Idempotent."""

    def list_workers(self) -> list[WorkerInfo]:
        """Recorded workers, oldest first, live and lost (``WorkerInfo.is_lost``)."""
        return []

    # -- working with the result backend -------------------------------
    # Defaults write in two steps. A backend that shares a transaction with
    # its result backend overrides these to make each step atomic.

    def submit(self, jobs: Sequence[Job], results: BaseResultBackend) -> None:
        """Enqueue ``jobs`` (one transaction) and record them as PENDING/SCHEDULED."""
        self.enqueue_many(jobs)
        results.record_enqueued(jobs)

    def claim(
        self,
        n: int,
        *,
        worker_id: str,
        lease_secs: float,
        results: BaseResultBackend,
        queues: Sequence[str] | None = None,
    ) -> list[Job]:
        """``pop_batch``, mark the claimed jobs RUNNING in ``results``, and record
        each job quarantined on the way as FAILED ``CorruptJob`` (else whoever
        waits on it would wait for ever)."""
        jobs, quarantined = self.pop_batch_reporting_corrupt(
            n, worker_id=worker_id, lease_secs=lease_secs, queues=queues
        )
        if jobs:
            results.mark_running(jobs, worker_id=worker_id, started_at=self.clock.time())
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
        """``pop_batch``, plus ``(job id, reason)`` for each record it quarantined.

        The default reports none; backends that quarantine override it.
        """
        return self.pop_batch(n, worker_id=worker_id, lease_secs=lease_secs, queues=queues), []

    def settle(self, outcomes: Sequence[Outcome], results: BaseResultBackend) -> None:
        """Store outcomes, then ack finished jobs and nack retries.

        Results first: a crash in between re-runs a job (at least once) rather
        than losing its outcome.
        """
        results.save_outcomes(outcomes)
        for outcome in outcomes:
            job = outcome.job
            if outcome.status is JobStatus.RETRYING and outcome.retry_at is not None:
                self.nack(job.id, retry_at=outcome.retry_at, worker_id=outcome.worker_id)
            else:
                self.ack(job.id, worker_id=outcome.worker_id)

    def cancel_job(self, job_id: str, results: BaseResultBackend) -> bool:
        """Cancel a waiting job and record it CANCELLED; False if it is not waiting."""
        if not self.cancel(job_id):
            return False
        results.mark_cancelled(job_id, at=self.clock.time())
        return True
