"""The worker: claims jobs in batches, runs them on a pool, stores outcomes in group commits.

One dispatcher (the thread that calls ``run``) owns claiming and settling; the
pool (threads, child processes or an event loop: ``execution/``) only runs jobs.
A watchdog renews leases, beats the worker's heartbeat and enforces timeouts.
``Worker(...).run(burst=True)`` drains the queue and returns: for tests and batches.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from nuvom.backends.contract import Hold
from nuvom.errors import BackendError, BackendUnavailable, ConfigError, NuvomError
from nuvom.execution import policies
from nuvom.execution.inflight import InFlight, Running
from nuvom.execution.pools import ExecutionPool, ThreadPool
from nuvom.execution.runner import JobRunner
from nuvom.job import Job, JobStatus
from nuvom.limits import describe_hold, version_tag
from nuvom.options import run_defaults
from nuvom.records import ErrorInfo, Outcome, WorkerInfo

if TYPE_CHECKING:
    from nuvom.backends.contract import BaseJobQueue, BaseResultBackend
    from nuvom.registry import TaskRegistry
    from nuvom.runtime import Runtime
    from nuvom.scheduler import Scheduler

log = logging.getLogger("nuvom.worker")

MIN_IDLE_POLL_SECS = 0.001  # first pause after an empty claim
MAX_IDLE_POLL_SECS = 1.0  # longest pause between claims when idle (push wake-ups come sooner)
BACKEND_RETRY_SECS = 0.5  # pause before retrying a claim or settle the backend refused
VERSION_RECHECK_SECS = 2.0  # a job given back for another task version is due again after
BURST_CLAIM_ATTEMPTS = 5  # failed claims in a row after which a --burst worker stops trying
WAKER_WAIT_SECS = 0.25  # the waker re-checks for shutdown this often
POOLS = ("thread", "process", "async")


@dataclass
class WorkerStats:
    processed: int = 0
    succeeded: int = 0
    failed: int = 0
    retried: int = 0
    released: int = 0
    started_at: float = field(default_factory=time.time)
    finished_at: float | None = None
    forced: bool = False

    def count(self, outcome: Outcome) -> None:
        self.processed += 1
        if outcome.status is JobStatus.SUCCESS:
            self.succeeded += 1
        elif outcome.status is JobStatus.RETRYING:
            self.retried += 1
        else:
            self.failed += 1


def default_worker_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{os.urandom(2).hex()}"


class Worker:
    """Runs jobs from the queue until stopped (or, with ``burst=True``, until it is empty)."""

    def __init__(
        self,
        workers: int | None = None,
        pool: str | None = None,
        *,
        batch_size: int | None = None,
        prefetch: int | None = None,
        queues: Sequence[str] | None = None,
        lease_secs: float | None = None,
        grace_secs: float | None = None,
        worker_id: str | None = None,
        runtime: Runtime | None = None,
        queue: BaseJobQueue | None = None,
        results: BaseResultBackend | None = None,
        registry: TaskRegistry | None = None,
        on_outcome: Callable[[Outcome], None] | None = None,
        max_tasks_per_child: int | None = None,
        max_memory_per_child_mb: float | None = None,
        scheduler: bool = True,
    ) -> None:
        from nuvom.discovery.loader import TaskLoader
        from nuvom.runtime import current

        self.runtime = runtime or current()
        settings = self.runtime.settings
        pool = pool or settings.worker_pool
        if pool not in POOLS:
            raise ConfigError(f"unknown worker pool {pool!r} (choose one of: {', '.join(POOLS)})")
        self.concurrency = workers or settings.max_workers
        if self.concurrency < 1:
            raise ConfigError("a worker needs at least 1 thread, process or concurrent job")
        self.pool = pool
        self.batch_size = batch_size or settings.batch_size
        # Jobs claimed beyond the running ones, waiting for a thread (their leases are renewed).
        self.prefetch = self.batch_size if prefetch is None else prefetch
        self.queues = list(queues) if queues else None
        self.lease_secs = lease_secs or settings.lease_secs
        self.grace_secs = settings.shutdown_grace_secs if grace_secs is None else grace_secs
        self.worker_id = worker_id or default_worker_id()
        self.queue = queue or self.runtime.queue
        self.results = results or self.runtime.results
        self.registry = registry if registry is not None else self.runtime.registry
        self.on_outcome = on_outcome
        self.scheduler = scheduler  # fire the ticks of due schedules too (any number may)
        self.clock = self.runtime.clock
        self.events = self.runtime.events
        self.runner = JobRunner(
            TaskLoader(self.registry, manifest_path=settings.manifest_path),
            run_defaults(settings),
            self.runtime.codec,
            self.clock,
            self.worker_id,
        )
        self.stats = WorkerStats()
        self.held = InFlight(self.clock, self.events, self.worker_id)
        self.held.charge = self._charge
        self._unsettled: list[Outcome] = []
        self._claim_failures = 0  # claims in a row that raised (a burst worker retries them)
        # Rolling deploys: jobs of task versions this code does not run are given back.
        self.version_policy = settings.version_policy
        self._versions: dict[str, frozenset[int] | None] = {}
        self._told: set[str] = set()  # the version holds already logged
        self.executor = _make_pool(
            pool, self.runner, self.held, self.concurrency, max_tasks_per_child,
            max_memory_per_child_mb,
        )  # fmt: skip

    # -- public ------------------------------------------------------------
    def stop(self, *, force: bool = False) -> None:
        """Ask the worker to stop: finish or release in-flight jobs (``force``: release at once)."""
        self.held.stop(force=force)

    @property
    def inflight(self) -> int:
        """Jobs this worker holds now: running, or claimed and waiting for a free unit."""
        return self.held.count()

    def run(self, burst: bool = False) -> WorkerStats:
        """Work until stopped, or until nothing is due and nothing runs when ``burst``."""
        from nuvom.plugins.loader import start_worker_plugins

        plugins = start_worker_plugins(self)  # before "started:": their endpoints are up by then
        restore = self._install_signal_handlers()
        log.info(
            "worker %s started: %d %s, queue %s, results %s",
            self.worker_id, self.concurrency, self.executor.unit, self.queue.name,
            self.results.name,
        )  # fmt: skip
        helpers = [self._start_thread(self._watchdog_loop, "nuvom-watchdog")]
        if self.queue.pushes_wakeups and not burst:
            helpers.append(self._start_thread(self._waker_loop, "nuvom-waker"))
        if self.scheduler:
            if burst:
                self._schedule_once()
            else:
                helpers.append(self._start_thread(self._scheduler_loop, "nuvom-scheduler"))
        self._register()
        try:
            self.executor.start()
            self._dispatch(burst)
        finally:
            self._shutdown()
            self.held.stop()
            for helper in helpers:
                helper.join(timeout=2)
            self._unregister()
            restore()
            plugins.stop()
            self.stats.finished_at = time.time()
            log.info(
                "worker %s stopped: %d processed (%d ok, %d failed, %d retried, %d released)",
                self.worker_id, self.stats.processed, self.stats.succeeded, self.stats.failed,
                self.stats.retried, self.stats.released,
            )  # fmt: skip
        return self.stats

    # -- dispatcher --------------------------------------------------------
    def _dispatch(self, burst: bool) -> None:
        held = self.held
        pause = MIN_IDLE_POLL_SECS
        while True:
            held.wake.clear()
            settled = self._settle()
            if held.stopping:
                return
            claimed = self._claim()
            if claimed or settled:
                pause = MIN_IDLE_POLL_SECS
                continue
            holding = held.count()
            if burst and not holding and not self._unsettled:
                if not self._claim_failures:
                    return  # the queue is empty, not merely out of reach
                if self._claim_failures >= BURST_CLAIM_ATTEMPTS:
                    log.error(
                        "burst worker gives up: %d claims in a row failed", BURST_CLAIM_ATTEMPTS
                    )
                    return
                continue  # _claim already paused before this retry
            # Busy: executors wake us when a job ends. Idle: poll with back-off
            # (a push backend's waker cuts the wait short when jobs arrive).
            busy = holding >= self.concurrency
            held.wake.wait(MAX_IDLE_POLL_SECS if busy else pause)
            pause = min(pause * 2, MAX_IDLE_POLL_SECS)

    def _claim(self) -> int:
        holding = self.held.count()
        room = self.concurrency + self.prefetch - holding
        # Keep a buffer of claimed jobs ahead of the threads, refilled in
        # batches: one round trip per job would cap throughput at the threads' count.
        if room <= 0 or (holding >= self.concurrency and room < max(1, self.prefetch // 2)):
            return 0
        try:
            jobs = self.queue.claim(
                min(room, self.batch_size),
                worker_id=self.worker_id,
                lease_secs=self.lease_secs,
                results=self.results,
                queues=self.queues,
            )
        except Exception as exc:  # a backend refusing, or a backend's bug: never the worker's end
            log.error(
                "claiming jobs failed: %s; retrying in %.1fs",
                exc,
                BACKEND_RETRY_SECS,
                exc_info=not isinstance(exc, NuvomError),
            )
            self._claim_failures += 1
            self.held.wait_stopping(BACKEND_RETRY_SECS)
            return 0
        self._claim_failures = 0
        if self.version_policy == "strict" and any(job.origin for job in jobs):
            jobs = self._of_my_versions(jobs)
        if any(job.origin and "feed" in job.origin for job in jobs):
            jobs = self._fed(jobs)
        self.held.add(jobs)
        for job in jobs:
            self.executor.submit(job)
        return len(jobs)

    def _of_my_versions(self, jobs: list[Job]) -> list[Job]:
        """The jobs of a task version this worker runs; the others are given back to the
        queue for a worker that has theirs (no attempt spent, the reason kept as their hold
        tag), so in a rolling deploy old workers leave new jobs to new workers and back."""
        # A queue that honours refusals passes over these jobs in this worker's next claims:
        # they are due at once for the others. One that does not brings them back here.
        due = self.clock.time() + (0.0 if self.queue.honours_refusals else VERSION_RECHECK_SECS)
        foreign = []
        for job in jobs:
            version = (job.origin or {}).get("version", 1)
            runs = self._versions_of(job.func_name)
            if runs is not None and version not in runs:
                foreign.append(Hold(job.id, version_tag(job.func_name, version), due))
        if not foreign:
            return jobs
        self.queue.refuse({h.tag for h in foreign}, worker_id=self.worker_id)
        try:  # recorded first: once given back, another worker may start them at once
            self.results.mark_released(sorted(h.job_id for h in foreign))
            given = set(self.queue.hold(foreign, worker_id=self.worker_id))
        except NuvomError as exc:  # their leases run out and they are claimed again
            log.warning("giving back %d job(s) of other task versions failed: %s", len(foreign), exc)  # fmt: skip
            given = {h.job_id for h in foreign}
        for h in foreign:
            if h.tag not in self._told:
                self._told.add(h.tag)
                log.info(
                    "this worker does not run %s; left for a worker that does (job %s)",
                    describe_hold(h.tag).removeprefix("waiting for a worker with "), h.job_id,
                )  # fmt: skip
        return [job for job in jobs if job.id not in given]

    def _versions_of(self, name: str) -> frozenset[int] | None:
        """The versions of task ``name`` this worker's code runs (its own and the older ones
        it declares it still runs); None when it does not know the task."""
        known = self._versions.get(name)
        if known is not None or name in self._versions:
            return known
        task = self.registry.find(name)
        if task is not None:
            version, older = task.version, task.runs_versions
        else:
            manifest = self.runner.loader.manifest
            entry = manifest.find(name) if manifest is not None else None
            if entry is None:
                self._versions[name] = None
                return None
            version, older = entry.version, entry.options.get("runs_versions")
        runs = frozenset({int(version), *(int(v) for v in older or ())})
        self._versions[name] = runs
        return runs

    def _fed(self, jobs: list[Job]) -> list[Job]:
        """Workflow jobs with the results they come after put first; one whose inputs are
        gone fails alone (settled with the next batch)."""
        from nuvom.workflow import ready_jobs

        ready, failed = ready_jobs(
            jobs, self.results, worker_id=self.worker_id, now=self.clock.time()
        )
        self._unsettled.extend(failed)
        return ready

    def _settle(self) -> int:
        batch = self.held.take_outcomes(self._unsettled)
        if not batch:
            return 0
        try:
            self.queue.settle(batch, self.results)
            stored, self._unsettled = batch, []
        except BackendUnavailable as exc:
            # Keep the outcomes and try again: dropping them would lose work.
            log.error("storing %d outcomes failed: %s; retrying", len(batch), exc)
            self._unsettled = batch
            self.held.wait_stopping(BACKEND_RETRY_SECS)
            return 0
        except Exception as exc:
            log.error(
                "storing %d outcomes failed: %s; storing them one by one", len(batch), exc,
                exc_info=not isinstance(exc, NuvomError),
            )  # fmt: skip
            stored, self._unsettled = self._settle_each(batch)
            if not stored:
                self.held.wait_stopping(BACKEND_RETRY_SECS)
        self.held.settled(stored)
        for outcome in stored:
            self.stats.count(outcome)
            policies.log_outcome(outcome)
            self.events.emit_outcome(outcome, self.clock.time())
            if self.on_outcome is not None:
                try:
                    self.on_outcome(outcome)
                except Exception:
                    log.exception("on_outcome callback failed")
        return len(stored)

    def _settle_each(self, batch: list[Outcome]) -> tuple[list[Outcome], list[Outcome]]:
        """Store outcomes one at a time; one the backend refuses (a value it cannot take, not
        an outage) is stored as its job's failure instead. Returns (stored, left to retry)."""
        stored: list[Outcome] = []
        left: list[Outcome] = []
        refused: list[tuple[Outcome, Exception]] = []
        for outcome in batch:
            try:
                self.queue.settle([outcome], self.results)
                stored.append(outcome)
            except BackendUnavailable:
                left.append(outcome)
            except Exception as exc:
                refused.append((outcome, exc))
        if not stored and all(isinstance(why, NuvomError) for _, why in refused):
            # The store refuses every write (read-only, full): not these outcomes' fault.
            return [], left + [outcome for outcome, _ in refused]
        for outcome, why in refused:
            error = ErrorInfo("OutcomeNotStored", f"the outcome could not be stored: {why!r}")
            failure = policies.failed(
                outcome.job, error, started=outcome.started_at, now=self.clock.time(),
                worker_id=self.worker_id,
            )  # fmt: skip
            try:
                self.queue.settle([failure], self.results)
                stored.append(failure)
            except Exception:
                log.exception("job %s: not even its failure could be stored", outcome.job.id)
                left.append(failure)
        return stored, left

    # -- helpers -------------------------------------------------------------
    def _register(self) -> None:
        """Record this worker in the backend (``nuvom workers``); a failure only logs."""
        now = self.clock.time()
        info = WorkerInfo(
            id=self.worker_id,
            host=socket.gethostname(),
            pid=os.getpid(),
            pool=self.pool,
            concurrency=self.concurrency,
            inflight=0,
            heartbeat_at=now,
            started_at=now,
            lease_secs=self.lease_secs,
        )
        try:
            self.queue.register_worker(info)
        except NuvomError as exc:
            log.warning("cannot record this worker in the backend: %s", exc)

    def _unregister(self) -> None:
        try:
            self.queue.unregister_worker(self.worker_id)
        except NuvomError as exc:
            log.warning("cannot remove this worker from the backend: %s", exc)

    def _start_thread(self, target: Callable[[], None], name: str) -> threading.Thread:
        thread = threading.Thread(target=target, name=name, daemon=True)
        thread.start()
        return thread

    # -- watchdog: leases and timeouts --------------------------------------
    def _watchdog_loop(self) -> None:
        held = self.held
        beat_every = max(0.05, self.lease_secs / 3)
        next_beat = time.monotonic() + beat_every
        while not held.stopping:
            now = time.monotonic()
            if now >= next_beat:
                self._heartbeat()
                next_beat = now + beat_every
            expired, next_deadline = held.past_deadline(now, look_by=next_beat)
            for running in expired:
                self._time_out(running)
            wait_until = min(next_beat, next_deadline) if next_deadline else next_beat
            held.watch.wait(max(0.0, wait_until - time.monotonic()))
            held.watch.clear()

    def _heartbeat(self) -> None:
        ids = self.held.ids()
        try:
            self.queue.heartbeat_worker(self.worker_id, inflight=len(ids), at=self.clock.time())
        except NuvomError as exc:
            log.warning("worker heartbeat failed: %s", exc)
        try:
            kept = self.queue.heartbeat(ids, worker_id=self.worker_id, lease_secs=self.lease_secs)
        except NuvomError as exc:
            log.warning("lease heartbeat failed: %s", exc)
            return
        # A job settled while the heartbeat was on its way has no lease left: it is not lost.
        lost = self.held.unsettled(set(ids) - set(kept))
        if lost:
            log.warning("lost the lease on %d job(s): %s", len(lost), ", ".join(sorted(lost)))
        self._refund_prefetched()

    def _refund_prefetched(self) -> None:
        """Give back the claim's attempt of each held job not started yet: if this worker
        dies, a job it only prefetched has not used up its lost-attempt allowance."""
        tried = self.held.to_refund()
        if not tried:
            return
        try:
            applied = self.queue.adjust_attempts(dict.fromkeys(tried, -1), worker_id=self.worker_id)
        except Exception as exc:  # the attempts stay counted: the old behaviour, not a loss
            log.warning("refunding %d prefetched attempt(s) failed: %s", len(tried), exc)
            applied = []
        for job in self.held.refunds_done(tried, applied):
            self._charge(job)

    def _charge(self, job: Job) -> None:
        """Count the attempt of a refunded job that starts now."""
        try:
            self.queue.adjust_attempts({job.id: 1}, worker_id=self.worker_id)
        except Exception as exc:
            log.warning("counting the attempt of job %s failed: %s", job.id, exc)

    def _time_out(self, running: Running) -> None:
        job = running.job
        opts = running.opts or self.runner.options_for(job)
        if opts.timeout_policy == "ignore":
            if not running.warned:
                running.warned = True
                log.warning(
                    "job %s passed its %gs timeout; policy is ignore, so it runs on",
                    job.id,
                    opts.timeout_secs,
                )
            return
        # Report the timeout now; the pool stops what runs the job (a child
        # process, a coroutine) or, for a thread, cuts it loose and replaces it.
        outcome = self.runner.timed_out(job, running.started_at or self.clock.time(), opts)
        if not self.held.time_out(running, outcome):
            return  # it finished just as its time ran out
        log.warning(
            "job %s passed its %gs timeout; %s",
            job.id,
            opts.timeout_secs,
            self.executor.timeout_action,
        )
        self.executor.abandon(running)

    # -- scheduler: due ticks become jobs -------------------------------------
    def _make_scheduler(self, *, sync: bool) -> Scheduler | None:
        """A scheduler (with the project's declared schedules synced, if ``sync``); None if
        the queue keeps no schedules (a plugin's, say)."""
        from nuvom.calls import tick_preparer
        from nuvom.scheduler import Scheduler

        scheduler = Scheduler(
            self.queue, self.results, self.clock, flow=tick_preparer(self.runtime)
        )
        try:
            self.queue.next_schedule_at()
        except BackendError as exc:
            log.info("no scheduler in this worker: %s", exc)
            return None
        manifest = self.runner.loader.manifest if sync else None
        # No tasks at all is more likely the wrong folder than a project whose every
        # declaration went: then nothing is synced, so nothing is retired.
        if manifest is not None and manifest.tasks:
            from nuvom.discovery.schedules import declared_schedules

            scheduler.sync_declared(declared_schedules(manifest, self.clock.time()))
        return scheduler

    def _schedule_once(self) -> None:
        """A burst worker fires the ticks due now, once, before it drains (it leaves the
        project's declarations to long-running workers: it reads no manifest)."""
        try:
            scheduler = self._make_scheduler(sync=False)
            if scheduler is not None:
                scheduler.run_once()
        except NuvomError as exc:
            log.error("the scheduler's pass failed: %s", exc)

    def _scheduler_loop(self) -> None:
        try:
            scheduler = self._make_scheduler(sync=True)
        except NuvomError as exc:
            log.error("cannot start the scheduler: %s", exc)
            return
        if scheduler is not None:
            scheduler.run(self.held.stopping_event)

    def _waker_loop(self) -> None:
        try:
            self.queue.listen(self.worker_id)
        except NuvomError as exc:
            log.warning("cannot listen for wake-ups (%s); polling only", exc)
            return
        while not self.held.stopping:
            if self.queue.wait_for_jobs(WAKER_WAIT_SECS):
                self.held.wake.set()

    # -- shutdown ------------------------------------------------------------
    def _shutdown(self) -> None:
        held = self.held
        deadline = time.monotonic() + self.grace_secs
        while not held.forced and time.monotonic() < deadline:
            self._settle()
            if not held.any_started() and not self._unsettled:
                break
            held.wake.wait(min(0.1, max(0.0, deadline - time.monotonic())))
            held.wake.clear()
        self._settle()
        refunded = held.refunded()
        unfinished = held.release_all()
        if unfinished:
            try:
                if refunded:  # release gives the attempt back: count it first, not twice off
                    self.queue.adjust_attempts(dict.fromkeys(refunded, 1), worker_id=self.worker_id)
                self.queue.release(unfinished, worker_id=self.worker_id)
                self.results.mark_released(unfinished)
                self.stats.released += len(unfinished)
                log.info("released %d unfinished job(s) back to the queue", len(unfinished))
            except NuvomError as exc:
                log.error(
                    "releasing %d job(s) failed (%s); their leases will expire",
                    len(unfinished),
                    exc,
                )
        self.executor.stop(force=held.forced)

    def _install_signal_handlers(self) -> Callable[[], None]:
        from nuvom.stopsignals import on_stop_signals

        def handle(signum: int) -> None:
            # Act before logging: a second signal can arrive while the first
            # is still being logged, and must then find us stopping.
            if self.held.stopping:
                self.stats.forced = True
                self.stop(force=True)
                log.warning("second signal: releasing in-flight jobs and exiting now")
            else:
                self.stop()
                log.warning("stopping: finishing in-flight jobs (signal again to exit now)")

        return on_stop_signals(handle)


def _make_pool(
    pool: str,
    runner: JobRunner,
    held: InFlight,
    concurrency: int,
    max_tasks: int | None,
    max_memory_mb: float | None,
) -> ExecutionPool:
    if pool != "process" and (max_tasks is not None or max_memory_mb is not None):
        raise ConfigError(
            "--max-tasks-per-child and --max-memory-per-child apply to the process pool only"
        )
    if pool == "process":
        from nuvom.execution.process_pool import ProcessPool

        return ProcessPool(
            runner, held, concurrency, max_tasks_per_child=max_tasks, max_memory_mb=max_memory_mb
        )
    if pool == "async":
        from nuvom.execution.async_pool import AsyncPool

        return AsyncPool(runner, held, concurrency)
    return ThreadPool(runner, held, concurrency)
