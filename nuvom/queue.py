"""The queue facade: enqueue jobs on the configured backend.

``enqueue(Job("name"))`` works for hand-built jobs; ``@task``'s ``.delay`` and
``.map`` come through ``submit``.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from nuvom.backends.contract import BaseJobQueue
from nuvom.errors import DuplicateJob, TaskDefinitionError
from nuvom.handle import JobHandle
from nuvom.job import Job, JobStatus
from nuvom.limits import ON_CONFLICT, flow_origin

if TYPE_CHECKING:
    from nuvom.runtime import Runtime
    from nuvom.task import Task

#: The options ``submit`` reads to give a job its limits (``nuvom.limits``).
FLOW_OPTIONS = ("rate_limit", "concurrency", "concurrency_key", "unique", "unique_for")


def get_queue_backend() -> BaseJobQueue:
    """The process-wide queue backend, built from settings on first use."""
    from nuvom.runtime import current

    return current().queue


def due_time(
    *, at: dt.datetime | float | None = None, in_: dt.timedelta | float | None = None
) -> float | None:
    """An epoch time from ``at`` (datetime or epoch seconds) or ``in_`` (seconds from now)."""
    from nuvom.runtime import current

    if at is not None and in_ is not None:
        raise TaskDefinitionError("give at= or in_=, not both")
    if at is not None:
        if isinstance(at, dt.datetime):
            return (at if at.tzinfo else at.astimezone()).timestamp()
        return float(at)
    if in_ is not None:
        seconds = in_.total_seconds() if isinstance(in_, dt.timedelta) else float(in_)
        return current().clock.time() + seconds
    return None


def submit(
    jobs: Sequence[Job],
    *,
    task_retries: int | None = None,
    task: Task[Any, Any] | None = None,
    on_conflict: str = "return",
) -> list[JobHandle]:
    """Enqueue ``jobs`` in one transaction and record them; a handle for each, in order.

    Each job gets its task's limits (``task``, else the registered or declared task of its
    name). A unique job whose key is held is not stored: its handle is the holder's
    (``on_conflict="return"``) or ``DuplicateJob`` is raised (``"raise"``) once the
    others are stored.
    """
    from nuvom.runtime import current

    if on_conflict not in ON_CONFLICT:
        raise TaskDefinitionError(f"on_conflict must be 'return' or 'raise', not {on_conflict!r}")
    runtime = current()
    now = runtime.clock.time()
    options = _FlowOptions(runtime, task)
    for job in jobs:
        job.status = JobStatus.SCHEDULED if (job.due_at or 0) > now else JobStatus.PENDING
        options.apply(job)
    duplicates = runtime.queue.submit(jobs, runtime.results) or {}  # a plugin's writer: None
    if runtime.events.active:
        from nuvom.events import JobEvent

        for job in jobs:
            if job.id not in duplicates:
                runtime.events.emit(JobEvent("enqueued", job, now))
    handles = []
    for job in jobs:
        holder = duplicates.get(job.id)
        if holder is None:
            handles.append(JobHandle(job, runtime.results, task_retries=task_retries))
            continue
        key = job.unique.key if job.unique is not None else "?"
        if on_conflict == "raise":
            raise DuplicateJob(key, holder)
        handle = JobHandle(replace(job, id=holder), runtime.results, task_retries=task_retries)
        handle.deduplicated = True
        handles.append(handle)
    return handles


class _FlowOptions:
    """Each job's task options that make limits, read once per task name per submit."""

    def __init__(
        self, runtime: Runtime, task: Task[Any, Any] | None, *, unique: bool = True
    ) -> None:
        self.runtime = runtime
        self.task = task
        self.unique = unique
        self.found: dict[str, tuple[Mapping[str, Any], Callable[..., Any] | None]] = {}
        self.dumps = runtime.codec.dumps

    def apply(self, job: Job) -> None:
        options, func = self.of(job.func_name)
        if not options:
            return
        if not self.unique or (job.origin and "workflow" in job.origin):
            # A tick is unique already; a workflow member's id is its graph's.
            options = {k: v for k, v in options.items() if k not in ("unique", "unique_for")}
        job.origin = flow_origin(
            job.origin, func_name=job.func_name, options=options, func=func,
            args=job.args, kwargs=job.kwargs, dumps=self.dumps,
        )  # fmt: skip

    def of(self, name: str) -> tuple[Mapping[str, Any], Callable[..., Any] | None]:
        found = self.found.get(name)
        if found is None:
            found = self.found[name] = self._read(name)
        return found

    def _read(self, name: str) -> tuple[Mapping[str, Any], Callable[..., Any] | None]:
        task = self.task if self.task is not None and self.task.name == name else None
        if task is None:
            task = self.runtime.registry.find(name)
        if task is not None:
            options = {k: getattr(task, k) for k in FLOW_OPTIONS}
            return {k: v for k, v in options.items() if v}, task.func
        return declared_flow_options(self.runtime, name), None


def flow_applier(runtime: Runtime) -> Callable[[Job], None]:
    """What gives a scheduler's tick jobs their task's rate and concurrency limits, read
    afresh for each job (a declared task's options change with its source)."""

    def apply(job: Job) -> None:
        _FlowOptions(runtime, None, unique=False).apply(job)

    return apply


def declared_flow_options(runtime: Runtime, name: str) -> dict[str, Any]:
    """The flow options the manifest read from task ``name``'s source ({} when unknown):
    a producer that cannot import a task still submits its jobs with their limits."""
    from nuvom.discovery.manifest import load_manifest

    path = runtime.settings.manifest_path
    try:
        stamp = path.stat().st_mtime_ns
    except (OSError, AttributeError):
        return {}
    cached = runtime.shared(("flow-manifest", str(path)), _Declared)
    if cached.stamp != stamp:
        try:
            manifest = load_manifest(path, files=False)
        except Exception:  # an unreadable manifest: the worker reports what it cannot find
            manifest = None
        cached.stamp = stamp
        cached.tasks = {} if manifest is None else {
            entry.name: {k: entry.options[k] for k in FLOW_OPTIONS if entry.options.get(k)}
            for entry in manifest.tasks
        }  # fmt: skip
    return cached.tasks.get(name, {})


class _Declared:
    """The flow options of each declared task, as of the manifest's ``stamp``."""

    def __init__(self) -> None:
        self.stamp: int | None = None
        self.tasks: dict[str, dict[str, Any]] = {}

    def close(self) -> None:
        """Nothing to release (``Runtime.shared`` closes what it keeps)."""


def enqueue(job: Job) -> JobHandle:
    """Enqueue one hand-built job. Raises ``SerializationError`` naming a bad argument."""
    return submit([job])[0]


def enqueue_many(jobs: Sequence[Job]) -> list[JobHandle]:
    """Enqueue many hand-built jobs in one transaction."""
    return submit(jobs)
