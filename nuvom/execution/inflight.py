"""The jobs one worker holds, from claim to settled outcome, and what its pool reports into.

A pool calls ``begin`` when a job starts, ``report`` with how it ended,
``unbegin`` when it could not start it after all and ``set_deadline`` once it
knows the job's timeout; it reads ``stopping``. The worker adds claimed jobs,
takes the outcomes to settle, and asks which jobs are past their deadline.
Nothing here knows the worker: it is the whole seam between the two.
"""

from __future__ import annotations

import logging
import math
import queue as queue_module
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from nuvom.events import EventBus, JobEvent
from nuvom.job import Job

if TYPE_CHECKING:
    from nuvom.clock import Clock
    from nuvom.execution.policies import RunOptions
    from nuvom.records import Outcome

log = logging.getLogger("nuvom.worker")


@dataclass
class Running:
    """A job the worker holds: claimed, maybe started, until its outcome is settled."""

    job: Job
    started_at: float | None = None  # clock time the attempt began; None while waiting to start
    deadline: float | None = None  # monotonic time past which the timeout policy applies
    executor: Any = None  # what runs it: a thread, a child process, an asyncio task
    opts: RunOptions | None = None  # resolved where the task was loaded (a child process)
    reported: bool = False  # its outcome went to the dispatcher; another one is dropped
    abandoned: bool = False  # its timeout was reported; the pool cut it loose
    warned: bool = False  # its ``ignore`` timeout passed and was logged
    # Its claim's attempt while it waits unstarted: "" counted, "refunding" (a heartbeat is
    # giving it back), "refunded"; "started" when it began during a refund (charge it again).
    refund: str = ""


class InFlight:
    """Thread-safe table of held jobs, the outcomes waiting to be settled, and the stop flag."""

    def __init__(self, clock: Clock, events: EventBus, worker_id: str) -> None:
        self.clock = clock
        self.events = events
        self.worker_id = worker_id
        self._lock = threading.Lock()
        self._held: dict[str, Running] = {}
        self._outcomes: queue_module.SimpleQueue[Outcome] = queue_module.SimpleQueue()
        #: Set when an outcome arrives or the worker should stop (the dispatcher waits on it).
        self.wake = threading.Event()
        #: Set when a deadline was added or the worker stops (the watchdog waits on it).
        self.watch = threading.Event()
        # When the watchdog looks next at the latest (``past_deadline``): an earlier deadline
        # wakes it, a later one waits for that look (no wake-up per job started).
        self._watch_until = math.inf
        self._stopping = threading.Event()
        self._forced = threading.Event()
        #: Charges the attempt of a refunded job that starts (set by the worker).
        self.charge: Callable[[Job], None] | None = None

    # -- what a pool calls -------------------------------------------------------
    @property
    def stopping_event(self) -> threading.Event:
        """Set once the worker is shutting down (helpers wait on it)."""
        return self._stopping

    @property
    def stopping(self) -> bool:
        """True once the worker is shutting down: do not start more jobs."""
        return self._stopping.is_set()

    def begin(self, job: Job, executor: object, timeout_secs: float | None) -> Running | None:
        """``job`` starts now on ``executor``; None when it must not (gone, or shutting down).

        ``timeout_secs`` None leaves the deadline unset until ``set_deadline``
        (a child process reports the task's timeout once it has loaded it).
        """
        with self._lock:
            running = self._held.get(job.id)
            if running is None or self._stopping.is_set():
                return None
            running.started_at = self.clock.time()
            running.executor = executor
            tell = timeout_secs is not None and self._new_deadline(running, timeout_secs)
            refunded = running.refund == "refunded"
            running.refund = "started" if running.refund == "refunding" else ""
        if refunded and self.charge is not None:
            self.charge(job)  # counted again before it runs: a job that kills workers stops
        if tell:
            self.watch.set()
        if self.events.active:
            self.events.emit(JobEvent("started", job, self.clock.time(), self.worker_id))
        return running

    def unbegin(self, running: Running) -> None:
        """The pool could not start ``running`` after all; it waits again (released at shutdown)."""
        with self._lock:
            running.started_at = running.deadline = running.executor = None

    def set_deadline(self, running: Running, timeout_secs: float) -> None:
        with self._lock:
            tell = self._new_deadline(running, timeout_secs)
        if tell:
            self.watch.set()

    def _new_deadline(self, running: Running, timeout_secs: float) -> bool:
        """Set ``running``'s deadline (the lock held); True if it falls before the watchdog's
        next look, so the watchdog must be woken."""
        running.deadline = time.monotonic() + timeout_secs
        return running.deadline < self._watch_until

    def report(self, running: Running, outcome: Outcome) -> None:
        """A job ended; its outcome is settled unless its timeout was reported first."""
        with self._lock:  # one outcome per attempt: this or the watchdog's, whichever is first
            late = running.reported
            running.reported = True
        if late:
            log.warning(
                "job %s finished after its timeout was reported; result dropped", running.job.id
            )
            return
        self._outcomes.put(outcome)
        if not self.wake.is_set():  # set already: the dispatcher takes this outcome with the rest
            self.wake.set()

    def stop(self, *, force: bool = False) -> None:
        """Ask the worker to stop: finish or release what it holds (``force``: release at once)."""
        if force:
            self._forced.set()
        self._stopping.set()
        self.wake.set()
        self.watch.set()

    # -- what the worker calls ---------------------------------------------------
    @property
    def forced(self) -> bool:
        return self._forced.is_set()

    def wait_stopping(self, timeout: float) -> bool:
        return self._stopping.wait(timeout)

    def add(self, jobs: Iterable[Job]) -> None:
        with self._lock:
            for job in jobs:
                self._held[job.id] = Running(job)

    def count(self) -> int:
        with self._lock:
            return len(self._held)

    def ids(self) -> list[str]:
        with self._lock:
            return list(self._held)

    def to_refund(self) -> list[str]:
        """Held jobs not started (prefetched), whose claim's attempt can be given back."""
        with self._lock:
            waiting = [r for r in self._held.values() if r.started_at is None and not r.refund]
            for running in waiting:
                running.refund = "refunding"
            return [r.job.id for r in waiting]

    def refunds_done(self, tried: Sequence[str], applied: Iterable[str]) -> list[Job]:
        """The store gave back the attempts of ``applied`` (of ``tried``); the jobs that
        started meanwhile, whose attempt must be charged again."""
        done = set(applied)
        charge: list[Job] = []
        with self._lock:
            for job_id in tried:
                running = self._held.get(job_id)
                if running is None:
                    continue
                if job_id in done and running.refund == "refunding":
                    running.refund = "refunded"
                    continue
                if job_id in done and running.refund == "started":
                    charge.append(running.job)
                running.refund = ""
        return charge

    def refunded(self) -> list[str]:
        """Held jobs whose attempt is given back (released as they are, not refunded again)."""
        with self._lock:
            return [r.job.id for r in self._held.values() if r.refund == "refunded"]

    def unsettled(self, job_ids: Iterable[str]) -> list[str]:
        """Those of ``job_ids`` still held with no outcome reported."""
        with self._lock:
            return [i for i in job_ids if i in self._held and not self._held[i].reported]

    def any_started(self) -> bool:
        with self._lock:
            return any(r.started_at is not None for r in self._held.values())

    def take_outcomes(self, into: list[Outcome]) -> list[Outcome]:
        """Append every outcome reported since the last call to ``into``; return it."""
        while True:
            try:
                into.append(self._outcomes.get_nowait())
            except queue_module.Empty:
                return into

    def settled(self, outcomes: Sequence[Outcome]) -> None:
        """Their outcomes are stored: the worker holds these jobs no more."""
        with self._lock:
            for outcome in outcomes:
                self._held.pop(outcome.job.id, None)

    def past_deadline(
        self, now: float, look_by: float | None = None
    ) -> tuple[list[Running], float | None]:
        """Jobs past their (monotonic) deadline and not reported, and the next deadline.

        ``look_by``: the watchdog looks again by then at the latest; until it does, only a
        job given an earlier deadline than its next look sets ``watch``.
        """
        next_deadline: float | None = None
        expired: list[Running] = []
        with self._lock:
            for running in self._held.values():
                if running.deadline is None or running.reported:
                    continue
                if running.deadline > now:
                    next_deadline = min(next_deadline or running.deadline, running.deadline)
                    continue
                expired.append(running)
            if look_by is not None:
                self._watch_until = min(look_by, next_deadline or look_by)
            else:
                self._watch_until = math.inf
        return expired, next_deadline

    def time_out(self, running: Running, outcome: Outcome) -> bool:
        """Report ``outcome`` for a job past its timeout; False if it just finished after all."""
        with self._lock:
            if running.reported:
                return False
            running.reported = running.abandoned = True
        self._outcomes.put(outcome)
        if not self.wake.is_set():  # set already: the dispatcher takes this outcome with the rest
            self.wake.set()
        return True

    def release_all(self) -> list[str]:
        """Forget every held job; the ids of those not cut loose, to give back to the queue."""
        with self._lock:
            unfinished = [r.job.id for r in self._held.values() if not r.abandoned]
            self._held.clear()
        return unfinished
