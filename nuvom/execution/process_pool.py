"""The process pool: N spawned children, one job each at a time, real hard timeouts.

One manager thread owns the children: it hands them jobs, reads their
messages, and replaces any that time out (terminated), die (segfault,
``os._exit``, OOM) or reach their task or memory limit (recycled). Jobs and
outcomes cross the pipe as nuvom's codec bytes (see ``child``), never pickle.
Children use the ``spawn`` context everywhere, so Linux runs what Windows runs.
"""

from __future__ import annotations

import logging
import multiprocessing
import queue as queue_module
import signal
import sys
import threading
import time
from collections import deque
from dataclasses import dataclass
from multiprocessing.connection import wait
from typing import TYPE_CHECKING, Any

from nuvom.errors import ConfigError
from nuvom.execution import policies
from nuvom.execution.child import DONE, READY, RUN, START, STOP, WIRE, child_main
from nuvom.execution.inflight import InFlight, Running
from nuvom.execution.policies import RunOptions
from nuvom.execution.pools import ExecutionPool
from nuvom.execution.runner import ASYNC_CANCEL_GRACE_SECS
from nuvom.job import Job, JobStatus
from nuvom.records import ErrorInfo, JobPayloadCodec, Outcome, StoredJob

if TYPE_CHECKING:
    from multiprocessing.connection import Connection
    from multiprocessing.process import BaseProcess

    from nuvom.execution.runner import JobRunner

log = logging.getLogger("nuvom.worker")

CHILD_EXIT_GRACE_SECS = 2.0  # a child told to stop, or terminated, gets this long before a kill
RESPAWN_BACKOFF_SECS = 1.0  # pause before replacing a child that died while starting up
STOP_JOIN_SECS = 15.0  # longest stop() waits for the manager to see every child gone
BYTES_PER_MB = 1024 * 1024


@dataclass(eq=False)
class _Child:
    process: BaseProcess
    conn: Connection
    tasks: int = 0  # jobs finished
    ready: bool = False  # imported its tasks and said so
    running: Running | None = None  # the job it runs
    exit_by: float | None = None  # monotonic: told to stop (or terminated); killed after this
    killed: bool = False


def describe_exit(code: int | None) -> str:
    if code is None:
        return "vanished"
    if code < 0:
        try:
            return f"was killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"was killed by signal {-code}"
    return f"exited with code {code}"


class ProcessPool(ExecutionPool):
    """``concurrency`` child processes; a job past its timeout has its child terminated."""

    name = "process"
    unit = "processes"
    timeout_action = "its child process is terminated and replaced"

    def __init__(
        self,
        runner: JobRunner,
        inflight: InFlight,
        concurrency: int,
        *,
        max_tasks_per_child: int | None = None,
        max_memory_mb: float | None = None,
    ) -> None:
        super().__init__(runner, inflight, concurrency)
        if max_tasks_per_child is not None and max_tasks_per_child < 1:
            raise ConfigError("--max-tasks-per-child must be at least 1")
        if max_memory_mb is not None and max_memory_mb <= 0:
            raise ConfigError("--max-memory-per-child must be more than 0 MB")
        if max_memory_mb is not None and sys.platform == "win32":
            log.warning("--max-memory-per-child is not measured on Windows; children are kept")
        self.max_tasks = max_tasks_per_child
        self.max_memory_bytes = None if max_memory_mb is None else max_memory_mb * BYTES_PER_MB
        self._ctx = multiprocessing.get_context("spawn")
        self._codec = runner.codec
        self._payloads = JobPayloadCodec(self._codec)
        self._requests: queue_module.SimpleQueue[tuple[str, Any]] = queue_module.SimpleQueue()
        self._pending: deque[Job] = deque()
        self._children: list[_Child] = []
        self._exiting: list[_Child] = []
        self._respawn_at = 0.0
        self._stopping = False
        self._wake_r, self._wake_w = self._ctx.Pipe(duplex=False)
        self._poke_lock = threading.Lock()
        self._poked = False
        self._thread: threading.Thread | None = None
        self._config: dict[str, Any] = {}

    # -- called by the worker ----------------------------------------------
    def start(self) -> None:
        runner = self.runner
        registry = runner.loader.registry
        modules = set()
        for name in registry.names():
            task = registry.find(name)
            module = getattr(task.func, "__module__", None) if task is not None else None
            if module and module != "__main__":  # __main__ is re-run by spawn as __mp_main__
                modules.add(module)
        self._config = {
            "worker_id": runner.worker_id,
            "log_level": logging.getLevelName(logging.getLogger("nuvom").getEffectiveLevel()),
            "serializer": self._codec.name,
            "max_payload_bytes": self._codec.max_bytes,
            "defaults": dict(runner.defaults),
            "modules": sorted(modules),
            "manifest_path": str(runner.loader.manifest_path),
            "measure_rss": self.max_memory_bytes is not None,
        }
        for _ in range(self.concurrency):
            self._children.append(self._spawn())
        self._thread = threading.Thread(target=self._manage, name="nuvom-process-pool", daemon=True)
        self._thread.start()

    def submit(self, job: Job) -> None:
        self._request("run", job)

    def abandon(self, running: Running) -> None:
        self._request("kill", running)

    def stop(self, *, force: bool) -> None:
        if self._thread is None:
            return
        self._request("stop", force)
        self._thread.join(STOP_JOIN_SECS)
        if self._thread.is_alive():
            log.error("process pool did not stop within %gs", STOP_JOIN_SECS)

    def _request(self, kind: str, value: Any) -> None:
        self._requests.put((kind, value))
        with self._poke_lock:
            if self._poked:
                return  # the manager has a wake-up byte it has not read yet
            self._poked = True
            self._wake_w.send_bytes(b"\0")

    # -- the manager thread ---------------------------------------------------
    def _manage(self) -> None:
        try:
            self._manage_loop()
        except BaseException:
            log.critical("the process pool failed; stopping the worker", exc_info=True)
            for child in self._children + self._exiting:
                child.process.kill()
            self.inflight.stop(force=True)

    def _manage_loop(self) -> None:
        while True:
            self._take_requests()
            now = time.monotonic()
            if not self._stopping:
                self._fill(now)
                self._assign()
            self._enforce_exits(now)
            if self._stopping and not self._children and not self._exiting:
                return
            by_handle: dict[Any, tuple[str, _Child]] = {}
            for child in self._children:
                by_handle[child.conn] = ("conn", child)
            for child in self._children + self._exiting:
                by_handle[child.process.sentinel] = ("exit", child)
            ready = wait([self._wake_r, *by_handle], timeout=self._next_timer(now))
            for handle in ready:
                if handle is self._wake_r:
                    continue  # drained at the top of the loop
                kind, child = by_handle[handle]
                if kind == "conn" and child in self._children:
                    self._read(child)
                elif kind == "exit" and (child in self._children or child in self._exiting):
                    self._exited(child)

    def _take_requests(self) -> None:
        # Drain, then clear the flag, then read requests: a request put after
        # the flag is cleared sends a new byte, one put before it is read here.
        while self._wake_r.poll():
            self._wake_r.recv_bytes()
        with self._poke_lock:
            self._poked = False
        while True:
            try:
                kind, value = self._requests.get_nowait()
            except queue_module.Empty:
                return
            if kind == "run":
                self._pending.append(value)
            elif kind == "kill":
                self._kill(value)
            elif kind == "stop":
                self._stop_children()

    def _next_timer(self, now: float) -> float | None:
        times = [c.exit_by for c in self._exiting if c.exit_by is not None and not c.killed]
        if not self._stopping and len(self._children) < self.concurrency:
            times.append(self._respawn_at)
        return max(0.0, min(times) - now) if times else None

    # -- children ----------------------------------------------------------
    def _spawn(self) -> _Child:
        parent_end, child_end = self._ctx.Pipe()
        process = self._ctx.Process(
            target=child_main,
            args=(child_end, self._config),
            name="nuvom-child",
            daemon=True,  # multiprocessing terminates daemon children if the worker exits anyhow
        )
        process.start()
        child_end.close()
        log.debug("child process %s started", process.pid)
        return _Child(process, parent_end)

    def _fill(self, now: float) -> None:
        while len(self._children) < self.concurrency and now >= self._respawn_at:
            self._children.append(self._spawn())

    def _assign(self) -> None:
        while self._pending:
            idle = next((c for c in self._children if c.running is None), None)
            if idle is None:
                return
            job = self._pending.popleft()
            # A job counts as started when handed over: shutdown waits for it from here.
            running = self.inflight.begin(job, idle.process, None)
            if running is None:
                continue  # shutting down: it is released with the rest
            idle.running = running
            row = StoredJob(job.id, job.queue, job.priority, job.due_at, job.attempts,
                            self._payloads.encode(job))  # fmt: skip
            try:
                idle.conn.send_bytes(WIRE.dumps([RUN, *row]))
            except OSError:
                self._exited(idle)

    def _read(self, child: _Child) -> None:
        try:
            while child.conn.poll():
                self._on_message(child, WIRE.loads(child.conn.recv_bytes()))
                if child not in self._children:
                    return  # recycled on that message
        except (EOFError, OSError):
            self._exited(child)

    def _on_message(self, child: _Child, message: list[Any]) -> None:
        kind = message[0]
        if kind == READY:
            child.ready = True
        elif kind == START:
            running = child.running
            if running is not None and running.job.id == message[1]:
                # The attempt starts now, not when the job was handed over (the
                # child may have been starting up): its record and timeout say so.
                running.started_at = self.runner.clock.time()
                running.opts = RunOptions(**message[2])
                grace = ASYNC_CANCEL_GRACE_SECS if message[3] else 0.0
                self.inflight.set_deadline(running, running.opts.timeout_secs + grace)
        elif kind == DONE:
            running, child.running = child.running, None
            child.tasks += 1
            if running is not None and running.job.id == message[1]:
                self.inflight.report(running, self._outcome(running.job, message))
            self._maybe_recycle(child, message[9])

    def _outcome(self, job: Job, message: list[Any]) -> Outcome:
        _, _, status, blob, error, started, finished, retry_at, store_result, _ = message
        return Outcome(
            job,
            JobStatus(status),
            result=self._codec.loads(blob) if blob is not None else None,
            error=None if error is None else ErrorInfo(*error),
            started_at=started,
            finished_at=finished,
            worker_id=self.runner.worker_id,
            retry_at=retry_at,
            store_result=store_result,
            result_blob=blob,
        )

    def _maybe_recycle(self, child: _Child, rss: int | None) -> None:
        why = None
        if self.max_tasks is not None and child.tasks >= self.max_tasks:
            why = f"ran {child.tasks} jobs"
        elif self.max_memory_bytes is not None and rss is not None and rss > self.max_memory_bytes:
            why = f"uses {rss / BYTES_PER_MB:.0f} MB"
        if why is None:
            return
        log.info("recycling child process %s: it %s", child.process.pid, why)
        self._retire(child, terminate=False)
        self._respawn_at = 0.0

    def _retire(self, child: _Child, *, terminate: bool) -> None:
        """Take ``child`` out of service: ask it to stop (idle) or terminate it (busy)."""
        if child in self._children:
            self._children.remove(child)
        child.running = None
        child.exit_by = time.monotonic() + CHILD_EXIT_GRACE_SECS
        self._exiting.append(child)
        if terminate:
            child.process.terminate()
            return
        try:
            child.conn.send_bytes(WIRE.dumps([STOP]))
        except OSError:
            child.process.terminate()

    def _kill(self, running: Running) -> None:
        child = next((c for c in self._children if c.running is running), None)
        if child is None:
            return  # it finished (its late result is dropped) or its child already died
        log.debug(
            "terminating child process %s (job %s timed out)", child.process.pid, running.job.id
        )
        self._retire(child, terminate=True)
        self._respawn_at = 0.0

    def _exited(self, child: _Child) -> None:
        """``child`` is gone (or its pipe broke): reap it, and report the job it held as failed."""
        if child.process.exitcode is None:
            child.process.join(CHILD_EXIT_GRACE_SECS)
            if child.process.exitcode is None:
                child.process.kill()
                child.process.join()
        child.conn.close()
        code = child.process.exitcode
        if child in self._exiting:
            self._exiting.remove(child)
            return  # retired on purpose
        self._children.remove(child)
        running = child.running
        if running is not None and not child.ready:
            # It died starting up, before it could read the job: not the job's fault.
            self.inflight.unbegin(running)
            self._pending.appendleft(running.job)
        elif running is not None:
            self._report_crash(running, child, code)
        elif not self._stopping:
            log.warning("child process %s %s while idle", child.process.pid, describe_exit(code))
        if not child.ready:
            log.error(
                "child process %s %s while starting; replacing it in %gs",
                child.process.pid, describe_exit(code), RESPAWN_BACKOFF_SECS,
            )  # fmt: skip
            self._respawn_at = time.monotonic() + RESPAWN_BACKOFF_SECS

    def _report_crash(self, running: Running, child: _Child, code: int | None) -> None:
        job = running.job
        opts = running.opts or self.runner.options_for(job)
        message = (
            f"the child process (pid {child.process.pid}) running this job "
            f"{describe_exit(code)} before it finished"
        )
        log.warning("job %s: %s; the child is replaced", job.id, message)
        outcome = policies.retry_or_fail(
            job,
            opts,
            ErrorInfo("ChildProcessDied", message),
            started=running.started_at,
            now=self.runner.clock.time(),
            worker_id=self.runner.worker_id,
        )
        self.inflight.report(running, outcome)

    def _stop_children(self) -> None:
        """Shutdown: jobs still running were released by the worker, so their children are stopped."""
        self._stopping = True
        self._pending.clear()
        for child in list(self._children):
            # A child still starting up would read "stop" only once it has
            # imported everything: terminating it loses nothing and is quicker.
            self._retire(child, terminate=child.running is not None or not child.ready)

    def _enforce_exits(self, now: float) -> None:
        for child in list(self._exiting):
            if child.process.exitcode is not None:
                self._exited(child)
            elif not child.killed and child.exit_by is not None and now >= child.exit_by:
                log.warning("child process %s did not exit; killing it", child.process.pid)
                child.process.kill()
                child.killed = True
