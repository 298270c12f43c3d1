"""Execution pools: where claimed jobs run. The worker's dispatcher is the same for all of them.

A pool gets the jobs the dispatcher claimed, tells the in-flight table when
each starts (``InFlight.begin``) and how it ended (``InFlight.report``), and
knows how to cut loose a job whose timeout was reported (``abandon``). Threads
cannot be stopped, child processes can be terminated, coroutines can be cancelled.
"""

from __future__ import annotations

import queue as queue_module
import threading
from abc import ABC, abstractmethod
from typing import TYPE_CHECKING, ClassVar

from nuvom.execution.inflight import InFlight, Running
from nuvom.job import Job

if TYPE_CHECKING:
    from nuvom.execution.runner import JobRunner

__all__ = ["ExecutionPool", "Running", "ThreadPool"]


class ExecutionPool(ABC):
    """Runs jobs for one worker: ``runner`` turns a job into an outcome, ``inflight`` hears of
    it, and ``concurrency`` units run at once. Every method is called from the worker."""

    name: ClassVar[str]
    #: what ``concurrency`` counts, for the start-up log line
    unit: ClassVar[str]
    #: what happens to a job past its timeout, for the warning the worker logs
    timeout_action: ClassVar[str]

    def __init__(self, runner: JobRunner, inflight: InFlight, concurrency: int) -> None:
        self.runner = runner
        self.inflight = inflight
        self.concurrency = concurrency

    @abstractmethod
    def start(self) -> None:
        """Start ``concurrency`` executing units."""

    @abstractmethod
    def submit(self, job: Job) -> None:
        """Run ``job`` when a unit is free. Non-blocking; jobs start in submission order."""

    @abstractmethod
    def abandon(self, running: Running) -> None:
        """``running`` passed its timeout and its outcome is reported: stop it or cut it loose."""

    @abstractmethod
    def stop(self, *, force: bool) -> None:
        """Stop every unit once unfinished jobs were released; return when none is left running.

        Jobs still running here were released back to the queue: stop them if
        the pool can, so nothing runs on behind the worker's back.
        """


class ThreadPool(ExecutionPool):
    """Jobs on threads. A thread cannot be killed: one past its timeout is replaced, not stopped."""

    name = "thread"
    unit = "threads"
    timeout_action = "its thread cannot be stopped and is replaced"

    def __init__(self, runner: JobRunner, inflight: InFlight, concurrency: int) -> None:
        super().__init__(runner, inflight, concurrency)
        self._work: queue_module.SimpleQueue[Job | None] = queue_module.SimpleQueue()
        self._threads: list[threading.Thread] = []
        self._retired: set[int] = set()
        self._lock = threading.Lock()

    def start(self) -> None:
        for _ in range(self.concurrency):
            self._add_thread()

    def submit(self, job: Job) -> None:
        self._work.put(job)

    def abandon(self, running: Running) -> None:
        thread = running.executor
        with self._lock:
            if isinstance(thread, threading.Thread) and thread.ident is not None:
                self._retired.add(thread.ident)
        self._add_thread()

    def stop(self, *, force: bool) -> None:
        # Threads finish the job in hand (already released if it outlived the grace period).
        for _ in self._threads:
            self._work.put(None)

    def _add_thread(self) -> None:
        thread = threading.Thread(
            target=self._loop, name=f"nuvom-pool-{len(self._threads)}", daemon=True
        )
        thread.start()
        self._threads.append(thread)

    def _loop(self) -> None:
        me = threading.get_ident()
        runner, inflight = self.runner, self.inflight
        while True:
            job = self._work.get()
            if job is None:
                return
            if inflight.stopping:
                continue  # not started: released at shutdown
            running = inflight.begin(job, threading.current_thread(), runner.watchdog_timeout(job))
            if running is None:
                continue
            inflight.report(running, runner.run(job))
            if me in self._retired:  # a set lookup needs no lock; additions happen under it
                return  # a replacement thread took this one's place when it overran
