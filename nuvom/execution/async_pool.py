"""The async pool: one event loop on its own thread runs up to N jobs at once.

``async def`` tasks are awaited on the loop and cancelled for real at their
timeout (their ``finally`` blocks run). Sync tasks run in a thread executor so
they never block the loop; like any thread, one past its timeout is cut loose.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

from nuvom.execution.inflight import InFlight, Running
from nuvom.execution.pools import ExecutionPool
from nuvom.job import Job

if TYPE_CHECKING:
    from nuvom.execution.runner import JobRunner

log = logging.getLogger("nuvom.worker")
T = TypeVar("T")

LOOP_STOP_SECS = 5.0  # longest stop() waits for cancelled jobs to unwind and the loop to close


class AsyncPool(ExecutionPool):
    """Up to ``concurrency`` jobs at once on one event loop."""

    name = "async"
    unit = "concurrent jobs"
    timeout_action = "it is cancelled"

    def __init__(self, runner: JobRunner, inflight: InFlight, concurrency: int) -> None:
        super().__init__(runner, inflight, concurrency)
        # Made in start(), closed by stop(): a worker that never runs leaves no loop open.
        self._event_loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._slots: asyncio.Semaphore | None = None
        self._jobs: set[asyncio.Task[None]] = set()
        # Jobs handed over by the dispatcher; the loop is woken once per batch,
        # not per job (each wake-up is a write to the loop's self-pipe).
        self._inbox: collections.deque[Job] = collections.deque()
        self._inbox_lock = threading.Lock()
        self._inbox_scheduled = False

    # -- called by the worker ----------------------------------------------
    def start(self) -> None:
        ready = threading.Event()
        self._event_loop = asyncio.new_event_loop()

        def run_loop() -> None:
            asyncio.set_event_loop(self._loop)
            self._slots = asyncio.Semaphore(self.concurrency)
            self._loop.call_soon(ready.set)
            self._loop.run_forever()

        self._thread = threading.Thread(target=run_loop, name="nuvom-async-loop", daemon=True)
        self._thread.start()
        ready.wait()

    def submit(self, job: Job) -> None:
        with self._inbox_lock:
            self._inbox.append(job)
            if self._inbox_scheduled:
                return
            self._inbox_scheduled = True
        self._loop.call_soon_threadsafe(self._take_inbox)

    def abandon(self, running: Running) -> None:
        # An async job gets here only if it ignored its cancellation or blocked
        # the loop; a sync one is running in a thread that cannot be stopped.
        self._loop.call_soon_threadsafe(self._cut_loose, running)

    def stop(self, *, force: bool) -> None:
        if self._thread is None or self._loop.is_closed():
            return
        closing = asyncio.run_coroutine_threadsafe(self._close(), self._loop)
        try:
            closing.result(LOOP_STOP_SECS)
        except Exception:  # TimeoutError, or the loop is blocked by a task
            log.warning("async jobs did not unwind within %gs", LOOP_STOP_SECS)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(LOOP_STOP_SECS)
        if not self._thread.is_alive():
            self._loop.close()

    @property
    def _loop(self) -> asyncio.AbstractEventLoop:
        if self._event_loop is None:
            raise RuntimeError("the async pool has not been started")
        return self._event_loop

    # -- on the loop ---------------------------------------------------------
    def _take_inbox(self) -> None:
        with self._inbox_lock:
            jobs = list(self._inbox)
            self._inbox.clear()
            self._inbox_scheduled = False
        for job in jobs:
            task = self._loop.create_task(self._run(job), name=f"nuvom-job-{job.id}")
            self._jobs.add(task)
            task.add_done_callback(self._jobs.discard)

    async def _run(self, job: Job) -> None:
        assert self._slots is not None
        runner, inflight = self.runner, self.inflight
        async with self._slots:
            if runner.loader.registry.find(job.func_name) is None:
                # Importing the task's module may be slow: not on the loop.
                timeout = await self._in_thread(runner.watchdog_timeout, job)
            else:
                timeout = runner.watchdog_timeout(job)
            task = runner.loader.registry.find(job.func_name)
            running = inflight.begin(job, asyncio.current_task(), timeout)
            if running is None:
                return
            try:
                if task is not None and task.is_async:
                    outcome = await runner.run_async(job)
                else:
                    outcome = await self._in_thread(runner.run, job)
            except asyncio.CancelledError:
                return  # timed out past the backstop, or released at shutdown
            inflight.report(running, outcome)

    def _cut_loose(self, running: Running) -> None:
        task = running.executor
        if isinstance(task, asyncio.Task):
            task.cancel()  # frees its slot; a sync job's thread runs on unseen

    def _in_thread(self, func: Callable[..., T], *args: Any) -> asyncio.Future[T]:
        """Run a sync call on a daemon thread of its own and await it.

        Not an executor: a thread that never returns must not hold up the
        interpreter's exit, and one cut loose must not take a slot from the next job.
        """
        loop = self._loop
        future: asyncio.Future[T] = loop.create_future()

        def settle(value: Any, failed: bool) -> None:
            if future.done():
                return  # cancelled meanwhile
            if failed:
                future.set_exception(value)
            else:
                future.set_result(value)

        def target() -> None:
            try:
                value: Any = func(*args)
                failed = False
            except BaseException as exc:
                value, failed = exc, True
            with contextlib.suppress(RuntimeError):  # the loop closed: nobody is waiting
                loop.call_soon_threadsafe(settle, value, failed)

        threading.Thread(target=target, name="nuvom-async-sync", daemon=True).start()
        return future

    async def _close(self) -> None:
        for task in list(self._jobs):
            task.cancel()
        if self._jobs:
            await asyncio.gather(*self._jobs, return_exceptions=True)
