"""Job lifecycle events: the seam monitoring plugins listen on.

The queue facade emits ``enqueued``; the worker emits ``started`` when a thread
picks a job up and ``succeeded``/``failed``/``retried`` once the outcome is
stored. A listener that raises is logged and never affects the job.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from nuvom.job import Job, JobStatus
from nuvom.records import Outcome

log = logging.getLogger("nuvom.events")

EventName = Literal["enqueued", "started", "succeeded", "failed", "retried"]

_OUTCOME_EVENTS: dict[JobStatus, EventName] = {
    JobStatus.SUCCESS: "succeeded",
    JobStatus.FAILED: "failed",
    JobStatus.RETRYING: "retried",
}


@dataclass(frozen=True, slots=True)
class JobEvent:
    name: EventName
    job: Job
    at: float
    worker_id: str | None = None
    outcome: Outcome | None = None  # set for succeeded, failed and retried

    @property
    def duration_secs(self) -> float | None:
        outcome = self.outcome
        if outcome is None or outcome.started_at is None or outcome.finished_at is None:
            return None
        return outcome.finished_at - outcome.started_at


Listener = Callable[[JobEvent], None]


class EventBus:
    """Delivers events to listeners synchronously, in subscription order. Thread-safe."""

    def __init__(self) -> None:
        self._listeners: tuple[Listener, ...] = ()
        self._lock = threading.Lock()

    def subscribe(self, listener: Listener) -> Callable[[], None]:
        """Add a listener; returns a function that removes it."""
        with self._lock:
            self._listeners = (*self._listeners, listener)

        def unsubscribe() -> None:
            with self._lock:
                self._listeners = tuple(x for x in self._listeners if x is not listener)

        return unsubscribe

    @property
    def active(self) -> bool:
        return bool(self._listeners)

    def emit(self, event: JobEvent) -> None:
        for listener in self._listeners:  # a tuple snapshot: subscribing mid-emit is safe
            try:
                listener(event)
            except Exception:
                log.exception("event listener %r failed on %s", listener, event.name)

    def emit_outcome(self, outcome: Outcome, at: float) -> None:
        name = _OUTCOME_EVENTS.get(outcome.status)
        if name is not None and self._listeners:
            self.emit(JobEvent(name, outcome.job, at, outcome.worker_id, outcome))
