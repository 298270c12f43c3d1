"""What the store holds now, read through the backend contract as plain data: the one
implementation the dashboard's pages, its JSON API and the CLI's commands share.

Nothing here renders or imports a web framework (``nuvom queue stats`` imports it too);
the dashboard's actions on top of it live in ``nuvom.dashboard.actions``.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from nuvom.backends.contract import ALL_QUEUES, Activity, JobQuery, QueueStats
from nuvom.errors import NuvomError
from nuvom.job import FINAL_STATUSES, JobStatus
from nuvom.limits import describe_hold, task_of_tag

if TYPE_CHECKING:
    from nuvom.config import Settings
    from nuvom.job import Job
    from nuvom.records import JobRecord, Schedule
    from nuvom.runtime import Runtime

#: The statuses of a job that still waits: what ``cancel`` takes.
WAITING_STATUSES = frozenset({JobStatus.PENDING, JobStatus.SCHEDULED, JobStatus.RETRYING})
#: The statuses ``nuvom.sdk.retry_job`` takes.
RETRYABLE_STATUSES = frozenset({JobStatus.FAILED, JobStatus.CANCELLED})
_AGE = re.compile(r"\s*(\d+(?:\.\d+)?)\s*([smhdw]?)\s*")
_AGE_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
_COUNTS = ("pending", "scheduled", "held", "parked", "running", "expired", "quarantined")


class NotFound(NuvomError, LookupError):
    """No job, schedule, queue or workflow with that name in the store."""


class Refused(NuvomError):
    """An action the state of the store (or what was typed) does not allow: nothing done."""


def age_secs(text: str) -> float | None:
    """``30m``, ``12h``, ``7d``, ``90`` (seconds) as seconds; None when it reads otherwise."""
    match = _AGE.fullmatch(text)
    if not match:
        return None
    return float(match.group(1)) * _AGE_UNITS[match.group(2) or "s"]


# -- where the store is ------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class StorePlace:
    """Where a backend keeps its jobs, as messages name it."""

    label: str  # ".nuvom/nuvom.db", "PostgreSQL schema nuvom"
    missing: str | None = None  # "file" or "folder" when that local store does not exist
    variable: str | None = None  # the setting that points elsewhere

    def note(self) -> str:
        """``in <label>``, and why it is empty when it does not exist."""
        if self.missing is None:
            return f"in {self.label}"
        return (
            f"in {self.label}: no such {self.missing} (run this where the jobs were "
            f"enqueued, or set {self.variable})"
        )


def store_place(settings: Settings, kind: str) -> StorePlace:
    """Where the ``kind`` ("queue" or "result") backend the settings name keeps its jobs."""
    from nuvom.backends.file.results import results_dir_beside

    name = settings.queue_backend if kind == "queue" else settings.result_backend
    if name == "sqlite":
        own_queue_file = kind == "queue" and settings.sqlite_queue_path is not None
        path = settings.effective_sqlite_queue_path if kind == "queue" else settings.sqlite_db_path
        variable = "NUVOM_SQLITE_QUEUE_PATH" if own_queue_file else "NUVOM_SQLITE_DB_PATH"
        return StorePlace(str(path), None if path.exists() else "file", variable)
    if name == "file":
        folder = settings.file_queue_dir
        path = folder if kind == "queue" else results_dir_beside(folder)
        return StorePlace(str(path), None if path.is_dir() else "folder", "NUVOM_FILE_QUEUE_DIR")
    if name == "postgres":
        return StorePlace(f"PostgreSQL schema {settings.postgres_schema}")
    if name == "redis":
        return StorePlace(f"Redis keys {settings.redis_prefix}:*")
    return StorePlace(f"the {name} {kind} backend")


# -- queues --------------------------------------------------------------------------------
def collect_stats(runtime: Runtime) -> dict[str, Any]:
    """The counts ``nuvom queue stats`` and the dashboard show, per queue and in total.

    Each row: pending, scheduled, parked (workflow members waiting for others), running,
    expired leases, failed (``None`` when the result backend cannot say), quarantined,
    held back by a limit (and ``held_by`` per hold tag), paused, and the lease owners.
    """
    queue, results = runtime.queue, runtime.results
    rows: dict[str, QueueStats] = {row.queue: row for row in queue.queue_stats()}
    parked: dict[str, int] = {}
    for job in queue.parked_jobs():
        parked[job.queue] = parked.get(job.queue, 0) + 1
    if ALL_QUEUES in rows:  # a plugin's one row for every queue
        parked = {ALL_QUEUES: sum(parked.values())} if parked else {}
    for name in parked:
        rows.setdefault(name, QueueStats(name))
    failed = results.failed_by_queue()
    if failed is not None and ALL_QUEUES not in rows:
        for name in failed:
            if name != ALL_QUEUES:
                rows.setdefault(name, QueueStats(name))
    listed: list[dict[str, Any]] = []
    limits: dict[str, dict[str, int]] = {}
    for name in sorted(rows):
        row = rows[name]
        if failed is None:
            failed_here: int | None = None
        elif name == ALL_QUEUES:
            failed_here = sum(failed.values())
        else:
            failed_here = failed.get(name, 0)
        listed.append(
            {
                "queue": row.queue,
                "pending": row.pending,
                "scheduled": row.scheduled,
                "parked": parked.get(name, 0),
                "running": row.running,
                "expired": row.expired,
                "failed": failed_here,
                "quarantined": row.quarantined,
                "held": sum(row.held.values()),
                "held_by": dict(sorted(row.held.items())),
                "paused": row.paused,
                "lease_owners": dict(sorted(row.lease_owners.items())),
            }
        )
        for tag, count in row.held.items():
            per_task = limits.setdefault(task_of_tag(tag), {})
            per_task[tag] = per_task.get(tag, 0) + count
    totals: dict[str, int | None] = {key: sum(r[key] for r in listed) for key in _COUNTS}
    totals["failed"] = None if failed is None else sum(failed.values())
    return {
        "queue_backend": queue.name,
        "result_backend": results.name,
        "queues": listed,
        "totals": totals,
        "paused": queue.paused_queues() if queue.keeps_limits else [],
        "held_by_task": {task: dict(sorted(tags.items())) for task, tags in sorted(limits.items())},
    }


ACTIVITY_WINDOW_SECS = 3600  # the overview's chart: the last hour...
ACTIVITY_BUCKET_SECS = 60  # ...one bar a minute


def last_hour(runtime: Runtime) -> Activity:
    """What ended in the last hour, a bucket a minute; whole minutes, so the bars stay put
    between refreshes, the current minute last."""
    bucket = ACTIVITY_BUCKET_SECS
    until = math.floor(runtime.clock.time() / bucket) * bucket + bucket
    found = runtime.results.activity(
        since=until - ACTIVITY_WINDOW_SECS, until=until, bucket_secs=bucket
    )
    found.buckets = found.buckets[: ACTIVITY_WINDOW_SECS // bucket]
    return found


# -- one job ----------------------------------------------------------------------------------
def waiting_on(runtime: Runtime, record: JobRecord) -> str | None:
    """Why a waiting job is not running yet, when flow control says: its queue is paused, or
    a limit held it back at the last claim ("rate limit 10/s")."""
    queue = runtime.queue
    if record.status.is_final or record.status is JobStatus.RUNNING or not queue.keeps_limits:
        return None
    if record.queue and record.queue in queue.paused_queues():
        return f"queue {record.queue} is paused (nuvom queue resume {record.queue})"
    tag = queue.hold_of(record.id)
    return None if tag is None else describe_hold(tag, record.origin)


def workflow_of(record: JobRecord) -> str | None:
    """The id of the workflow ``record`` is a member of (its last job's id), or None."""
    workflow = (record.origin or {}).get("workflow")
    return workflow if isinstance(workflow, str) else None


def schedule_of(record: JobRecord) -> str | None:
    """The id of the schedule that fired ``record``, or None."""
    schedule = (record.origin or {}).get("schedule")
    return schedule if isinstance(schedule, str) else None


@dataclass(slots=True)
class Cancelled:
    """What cancelling an id did: the job alone, or (the id of a workflow's last job)
    every member still waiting."""

    job_id: str
    workflow: bool
    ids: list[str]
    status: JobStatus | None = None  # the job's status afterwards (a single job)


def cancel(job_id: str) -> Cancelled:
    """Cancel a waiting job; a workflow's id cancels every member still waiting.

    Raises ``JobNotFound``, or ``JobStateError`` for a job that no longer waits.
    """
    from nuvom.sdk import cancel_job, get_job

    record = get_job(job_id)
    if workflow_of(record) == job_id:  # a workflow's last job: all of it
        from nuvom.workflow import cancel_workflow

        return Cancelled(job_id, True, cancel_workflow(job_id))
    after = cancel_job(job_id)
    return Cancelled(job_id, False, [job_id], after.status)


# -- dead letters -----------------------------------------------------------------------------
def reinject(runtime: Runtime, job_id: str) -> Job:
    """Put a quarantined job back to wait, decoded as today's settings read it (fixed signing
    key, codec or hand edit): submitted afresh under its id, then its dead letter deleted.

    Raises ``NotFound``, or ``CorruptJob`` naming why it still cannot be read (the letter
    stays). A crash between the two steps leaves the job waiting and its letter listed.
    """
    from dataclasses import replace

    job = runtime.queue.revive_dead(job_id)
    if job is None:
        raise NotFound(f"no dead letter with id {job_id!r}")
    fresh = replace(job, attempts=0, lease_owner=None, lease_until=None, due_at=None)
    runtime.queue.submit([fresh], runtime.results)
    runtime.queue.forget_dead(job_id)
    return fresh


def forget_dead(runtime: Runtime, job_id: str) -> None:
    """Delete a dead letter; ``NotFound`` when there is none."""
    if not runtime.queue.forget_dead(job_id):
        raise NotFound(f"no dead letter with id {job_id!r}")


# -- schedules --------------------------------------------------------------------------------
def find_schedule(runtime: Runtime, schedule_id: str) -> Schedule | None:
    for schedule in runtime.queue.list_schedules():
        if schedule.id == schedule_id:
            return schedule
    return None


def trigger_schedule(runtime: Runtime, schedule: Schedule) -> Job:
    """Enqueue one run of ``schedule`` now, outside its timetable; returns its job."""
    from nuvom.calls import tick_preparer
    from nuvom.scheduler import Scheduler

    scheduler = Scheduler(
        runtime.queue, runtime.results, runtime.clock, flow=tick_preparer(runtime)
    )
    return scheduler.trigger(schedule)


# -- the task list -----------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class TaskInfo:
    """A task as the manifest (or, failing that, this process's registry) knows it."""

    name: str
    tags: tuple[str, ...] = ()
    queue: str | None = None
    description: str | None = None
    options: dict[str, Any] = field(default_factory=dict)  # as @task gave them (literals)


def known_tasks(runtime: Runtime) -> list[TaskInfo]:
    """The project's tasks: the manifest's (``nuvom discover tasks``), then any registered
    in this process that it does not list; by name."""
    from nuvom.discovery import load_manifest

    found: dict[str, TaskInfo] = {}
    manifest = load_manifest(runtime.settings.manifest_path, files=False)
    for entry in manifest.tasks if manifest is not None else []:
        queue = entry.options.get("queue")
        found.setdefault(
            entry.name,
            TaskInfo(entry.name, tuple(entry.tags), queue if isinstance(queue, str) else None,
                     entry.description, dict(entry.options)),
        )  # fmt: skip
    for name in runtime.registry.names():
        task = runtime.registry.find(name)
        if name not in found and task is not None:
            options = {key: getattr(task, key, None) for key in ("rate_limit", "concurrency")}
            found[name] = TaskInfo(name, tuple(task.tags or ()), task.queue, None, options)
    return [found[name] for name in sorted(found)]


def hold_text(tag: str, tasks: Sequence[TaskInfo]) -> str:
    """``describe_hold`` of ``tag``, with the limit its task declares (``rate limit 10/s``)
    when the task list knows it."""
    from nuvom.errors import TaskDefinitionError
    from nuvom.limits import parse_rate

    task = next((t for t in tasks if t.name == task_of_tag(tag)), None)
    origin: dict[str, Any] = {}
    if task is not None:
        try:
            if task.options.get("rate_limit") is not None:
                origin["rate"] = list(parse_rate(task.options["rate_limit"]))
        except TaskDefinitionError:  # not a literal the source spells: say less
            pass
        limit = task.options.get("concurrency")
        if isinstance(limit, int) and not isinstance(limit, bool):
            origin["conc"] = [tag.partition(":")[2], limit]
    return describe_hold(tag, origin or None)


def tasks_tagged(tasks: Sequence[TaskInfo], tag: str) -> tuple[str, ...]:
    """The names of the tasks carrying ``tag`` (a tag filter becomes a task filter)."""
    return tuple(task.name for task in tasks if tag in task.tags)


# -- job listings -----------------------------------------------------------------------------
def cursor_of(record: JobRecord) -> str:
    """The keyset of ``record`` as a query string carries it: ``<updated_at>:<id>``."""
    return f"{record.updated_at or 0.0!r}:{record.id}"


def parse_cursor(text: str) -> tuple[float, str]:
    """``cursor_of`` read back; ``Refused`` for anything else."""
    updated, sep, job_id = text.partition(":")
    try:
        if not sep or not job_id:
            raise ValueError(text)
        return float(updated), job_id
    except ValueError:
        raise Refused(f"before={text!r} is not a page position (<updated_at>:<job id>)") from None


def iter_matching(
    find_jobs: Callable[[JobQuery], list[JobRecord]], query: JobQuery, cap: int
) -> Iterator[JobRecord]:
    """Every record ``query`` matches, newest first, page by page (keyset, never OFFSET),
    at most ``cap`` of them. ``find_jobs`` is a result backend's."""
    page = min(cap, 1000)
    given = 0
    before = query.before
    while given < cap:
        batch = find_jobs(_with(query, before=before, limit=min(page, cap - given)))
        yield from batch
        given += len(batch)
        if len(batch) < page or not batch:
            return
        last = batch[-1]
        before = (last.updated_at or 0.0, last.id)


def _with(query: JobQuery, **changes: Any) -> JobQuery:
    from dataclasses import replace

    return replace(query, **changes)


@dataclass(slots=True)
class BulkPlan:
    """A bulk action before it runs: the jobs it would touch (``ids``), how many matched,
    and whether more matched than one bulk action takes (``capped``)."""

    action: str
    matched: int = 0
    ids: list[str] = field(default_factory=list)
    capped: bool = False
    records: dict[str, JobRecord] = field(default_factory=dict)  # of ``ids``, as read


#: What each bulk action takes: retry the failed, cancel the waiting, delete the finished.
BULK_TAKES: dict[str, frozenset[JobStatus]] = {
    "retry": RETRYABLE_STATUSES,
    "cancel": WAITING_STATUSES,
    "delete": frozenset(FINAL_STATUSES),
}


def plan_bulk(
    action: str, records: Sequence[JobRecord] | Iterator[JobRecord], *, cap: int
) -> BulkPlan:
    """Which of ``records`` ``action`` would take (its dry run)."""
    if action not in BULK_TAKES:
        raise Refused(f"unknown bulk action {action!r} (one of {', '.join(BULK_TAKES)})")
    plan = BulkPlan(action)
    takes = BULK_TAKES[action]
    for record in records:
        if plan.matched >= cap:
            plan.capped = True
            break
        plan.matched += 1
        if record.status in takes:
            plan.ids.append(record.id)
            plan.records[record.id] = record
    return plan
