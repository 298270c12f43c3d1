"""Execution pools: where claimed jobs run. The worker's dispatcher is the same for all of them.

A pool receives jobs the dispatcher claimed, tells the worker when each starts
(``Worker._begin``) and how it ended (``Worker._report``), and knows how to cut
loose a job whose timeout was reported (``abandon``). Threads cannot be
stopped, child processes can be terminated, coroutines can be cancelled.
"""

from __future__ import annotations

import contextlib
import queue as queue_module
import threading
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

from nuvom.job import Job

if TYPE_CHECKING:
    from nuvom.execution.policies import RunOptions
    from nuvom.worker import Worker

ASYNC_CANCEL_GRACE_SECS = 1.0  # extra time a cancelled coroutine gets before the watchdog steps in


@dataclass
class Running:
    """A job the worker holds: claimed, maybe started, until its outcome is settled."""

    job: Job
    started_at: float | None = None  # clock time the attempt began; None while waiting to start
    deadline: float | None = None  # monotonic time past which the timeout policy applies
    executor: Any = None  # what runs it: a thread, a child process, an asyncio task
    opts: RunOptions | None = None  # resolved where the task was loaded (a child process)
    reported: bool = False  # its outcome went to the dispatcher; another one is dropped
    abandoned: bool = False  # the watchdog reported its timeout; the pool cut it loose
    warned: bool = False


class ExecutionPool(ABC):
    """Runs jobs for one worker. Built by the worker; every method is called from the worker."""

    name: ClassVar[str]
    #: what ``concurrency`` counts, for the start-up log line
    unit: ClassVar[str]
    #: what happens to a job past its timeout, for the warning the worker logs
    timeout_action: ClassVar[str]

    def __init__(self, worker: Worker) -> None:
        self.worker = worker

    @abstractmethod
    def start(self) -> None:
        """Start ``worker.concurrency`` executing units."""

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

    def __init__(self, worker: Worker) -> None:
        super().__init__(worker)
        self._work: queue_module.SimpleQueue[Job | None] = queue_module.SimpleQueue()
        self._threads: list[threading.Thread] = []
        self._retired: set[int] = set()
        self._lock = threading.Lock()

    def start(self) -> None:
        for _ in range(self.worker.concurrency):
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
        worker = self.worker
        runner = worker.runner
        while True:
            job = self._work.get()
            if job is None:
                return
            if worker._stopping.is_set():
                continue  # not started: released at shutdown
            # Import the task first, so its own timeout_secs sets the deadline.
            with contextlib.suppress(Exception):  # a missing task is reported by the runner
                runner.loader.get(job.func_name)
            timeout = runner.options_for(job).timeout_secs
            task = worker.registry.find(job.func_name)
            if task is not None and task.is_async:
                # The runner cancels a coroutine at its timeout; the watchdog is
                # only the backstop for one that blocks its event loop.
                timeout += ASYNC_CANCEL_GRACE_SECS
            running = worker._begin(job, threading.current_thread(), timeout)
            if running is None:
                continue
            worker._report(running, runner.run(job))
            if me in self._retired:  # a set lookup needs no lock; additions happen under it
                return  # a replacement thread took this one's place when it overran
