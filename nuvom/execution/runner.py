"""Run one claimed job in the calling thread and say how it ended, as an ``Outcome``.

Order: find the task, resolve options, ``before_job``, call, encode the result,
``after_job`` or ``on_error``. A failing hook is logged and changes nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import traceback
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from nuvom.clock import Clock
from nuvom.errors import JobTimeout, SerializationError, TaskImportError, TaskNotFound
from nuvom.execution import policies
from nuvom.execution.policies import RunOptions
from nuvom.job import Job, JobStatus
from nuvom.records import ErrorInfo, Outcome
from nuvom.serialization import Codec

if TYPE_CHECKING:
    from nuvom.discovery.loader import TaskLoader

log = logging.getLogger("nuvom.worker")

MAX_TRACEBACK_CHARS = 32_000  # keep stored tracebacks bounded
ASYNC_CANCEL_GRACE_SECS = 1.0  # extra time a cancelled coroutine gets before the watchdog steps in
OPTIONS_FALLBACK_TIMEOUT_SECS = 30.0  # the watchdog's deadline for a job whose options are broken


def _traceback_text(exc: BaseException) -> str:
    text = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
    return text if len(text) <= MAX_TRACEBACK_CHARS else "…" + text[-MAX_TRACEBACK_CHARS:]


def _run_hook(name: str, hook: Callable[..., Any] | None, job: Job, *args: Any) -> None:
    if hook is None:
        return
    try:
        hook(job, *args)
    except Exception:
        log.exception(
            "%s hook of task %s failed for job %s; the job's outcome stands",
            name,
            job.func_name,
            job.id,
        )


class JobRunner:
    """Turns a claimed job into an outcome. Stateless apart from its collaborators.

    ``defaults`` are what the settings supply for options a job and its task
    leave unset (``nuvom.options.run_defaults``).
    """

    def __init__(
        self,
        loader: TaskLoader,
        defaults: Mapping[str, Any],
        codec: Codec,
        clock: Clock,
        worker_id: str,
    ) -> None:
        self.loader = loader
        self.defaults = defaults
        self.codec = codec
        self.clock = clock
        self.worker_id = worker_id
        self._by_task: dict[Any, RunOptions] = {}  # for the jobs that override nothing (most)

    def _options(self, job: Job, task: Any) -> RunOptions:
        if task is None or job.overrides():
            return RunOptions.resolve(job, task, self.defaults)
        opts = self._by_task.get(task)
        if opts is None:
            opts = self._by_task[task] = RunOptions.resolve(job, task, self.defaults)
        return opts

    def options_for(self, job: Job) -> RunOptions:
        """Options for a job, even when its task cannot be loaded (defaults then)."""
        return self._options(job, self.loader.registry.find(job.func_name))

    def watchdog_timeout(self, job: Job) -> float:
        """Seconds the watchdog lets the job run before its timeout policy applies.

        Imports the task first (a failure is reported when the job runs), so its
        own ``timeout_secs`` counts. An ``async def`` task is cancelled at its
        timeout by the runner itself; the watchdog is its backstop, a little later.
        """
        task = self.loader.registry.find(job.func_name)
        if task is None:
            with contextlib.suppress(Exception):  # a missing task is reported by the runner
                task = self.loader.get(job.func_name)
        try:
            timeout = self._options(job, task).timeout_secs
        except Exception:  # the runner fails the job when it runs; the watchdog needs a number
            timeout = float(self.defaults.get("timeout_secs") or OPTIONS_FALLBACK_TIMEOUT_SECS)
        return timeout + ASYNC_CANCEL_GRACE_SECS if task is not None and task.is_async else timeout

    def prepare(self, job: Job, started: float) -> tuple[Any, RunOptions] | Outcome:
        """Find the task and its options, or the outcome that ends the job before it runs."""
        try:
            task = self.loader.get(job.func_name)
        except TaskNotFound as exc:
            return self._failed(job, ErrorInfo.from_exception(exc), started)
        except TaskImportError as exc:  # the stored traceback is the import's own
            cause = exc.__cause__ or exc
            return self._failed(job, ErrorInfo.from_exception(exc, _traceback_text(cause)), started)
        except Exception as exc:  # the loader itself failed (a manifest it cannot read, a bug)
            error = ErrorInfo(
                type(exc).__name__, f"importing task {job.func_name}: {exc}", _traceback_text(exc)
            )
            return self._failed(job, error, started)
        try:
            opts = self._options(job, task)
            lost = policies.too_many_lost_attempts(job, opts)
        except Exception as exc:  # the job's options cannot be resolved: this job fails, alone
            return self.broken(job, exc, started)
        if lost is not None:
            return self._failed(job, lost, started)
        return task, opts

    def broken(self, job: Job, exc: Exception, started: float | None = None) -> Outcome:
        """The outcome of a job nuvom itself could not handle (not its task's error): it fails,
        with the traceback, and the worker goes on to the next job."""
        log.error("job %s %s could not be run: %r", job.id, job.func_name, exc, exc_info=exc)
        message = f"nuvom could not run this job: {type(exc).__name__}: {exc}"
        error = ErrorInfo("JobNotRunnable", message, _traceback_text(exc))
        return self._failed(job, error, self.clock.time() if started is None else started)

    def _start(self, job: Job) -> tuple[Any, RunOptions, float] | Outcome:
        """``prepare``, then ``before_job``: the task, its options and the start time."""
        started = self.clock.time()
        prepared = self.prepare(job, started)
        if isinstance(prepared, Outcome):
            return prepared
        task, opts = prepared
        _run_hook("before_job", task.before_job, job)
        return task, opts, started

    def run(self, job: Job) -> Outcome:
        """How ``job`` ended; never raises (what nuvom itself cannot handle fails the job)."""
        try:
            return self._run(job)
        except Exception as exc:
            return self.broken(job, exc)

    def _run(self, job: Job) -> Outcome:
        begun = self._start(job)
        if isinstance(begun, Outcome):
            return begun
        task, opts, started = begun
        try:
            result = self._call(task, job, opts)
        except JobTimeout:
            return self.finish_timed_out(task, job, opts, started)
        except Exception as exc:
            return self.finish_failed(task, job, opts, exc, started)
        return self.finish(task, job, opts, result, started)

    async def run_async(self, job: Job) -> Outcome:
        """``run`` for an ``async def`` task, awaited on the caller's event loop.

        The timeout cancels the coroutine (its ``finally`` blocks run); a sync
        task given here is an error of the caller. Never raises but ``CancelledError``.
        """
        try:
            return await self._run_async(job)
        except Exception as exc:
            return self.broken(job, exc)

    async def _run_async(self, job: Job) -> Outcome:
        begun = self._start(job)
        if isinstance(begun, Outcome):
            return begun
        task, opts, started = begun
        try:
            coroutine = task.func(*job.args, **job.kwargs)
            if opts.timeout_policy == "ignore":
                result = await coroutine
            else:
                result = await asyncio.wait_for(coroutine, timeout=opts.timeout_secs)
        except asyncio.TimeoutError:
            return self.finish_timed_out(task, job, opts, started)
        except Exception as exc:
            return self.finish_failed(task, job, opts, exc, started)
        return self.finish(task, job, opts, result, started)

    def finish(self, task: Any, job: Job, opts: RunOptions, result: Any, started: float) -> Outcome:
        """The outcome of a call that returned ``result``: encoded, then ``after_job``."""
        blob = None
        if opts.store_result:
            try:
                blob = self.codec.dumps(result)
            except SerializationError as exc:
                # The task ran; running it again would not make its result storable.
                message = f"result of {job.func_name}() cannot be stored: {exc}"
                return self._failed(job, ErrorInfo("SerializationError", message), started)
        _run_hook("after_job", task.after_job, job, result)
        return Outcome(
            job,
            JobStatus.SUCCESS,
            result=result if opts.store_result else None,
            result_blob=blob,
            started_at=started,
            finished_at=self.clock.time(),
            worker_id=self.worker_id,
            store_result=opts.store_result,
        )

    def finish_failed(
        self, task: Any, job: Job, opts: RunOptions, exc: Exception, started: float
    ) -> Outcome:
        _run_hook("on_error", task.on_error, job, exc)
        error = ErrorInfo.from_exception(exc, _traceback_text(exc))
        return policies.retry_or_fail(
            job, opts, error, started=started, now=self.clock.time(), worker_id=self.worker_id
        )

    def finish_timed_out(self, task: Any, job: Job, opts: RunOptions, started: float) -> Outcome:
        _run_hook("on_error", task.on_error, job, JobTimeout(job.id, opts.timeout_secs))
        return policies.timed_out(
            job, opts, started=started, now=self.clock.time(), worker_id=self.worker_id
        )

    def _call(self, task: Any, job: Job, opts: RunOptions) -> Any:
        if not task.is_async:
            return task.func(*job.args, **job.kwargs)
        coroutine = task.func(*job.args, **job.kwargs)
        if opts.timeout_policy == "ignore":
            return asyncio.run(coroutine)
        try:
            # A coroutine can be cancelled for real, so its timeout is enforced here.
            return asyncio.run(asyncio.wait_for(coroutine, timeout=opts.timeout_secs))
        except asyncio.TimeoutError:
            raise JobTimeout(job.id, opts.timeout_secs) from None

    def _failed(self, job: Job, error: ErrorInfo, started: float) -> Outcome:
        return policies.failed(
            job, error, started=started, now=self.clock.time(), worker_id=self.worker_id
        )

    def timed_out(self, job: Job, started: float, opts: RunOptions | None = None) -> Outcome:
        """The outcome for a job the watchdog found past its timeout."""
        opts = opts or self.options_for(job)
        return policies.timed_out(
            job, opts, started=started, now=self.clock.time(), worker_id=self.worker_id
        )
