"""Every action the dashboard offers, once: its pages' forms and its JSON API both call these.

Each acts on the process-wide runtime (``nuvom.runtime.current()``, the one ``nuvom.sdk``
acts on), returns what it did as a ``Done`` (a sentence for people, data for scripts), and
logs who asked at INFO. A refusal raises: ``JobNotFound``/``NotFound``, ``JobStateError``
or ``Refused`` (nothing was changed), ``BackendError`` (the engine cannot do it).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from nuvom.backends.contract import JobQuery
from nuvom.errors import JobStateError
from nuvom.job import JobStatus
from nuvom.store_view import (
    BULK_TAKES,
    BulkPlan,
    NotFound,
    Refused,
    age_secs,
    cancel,
    find_schedule,
    forget_dead,
    iter_matching,
    plan_bulk,
    reinject,
    trigger_schedule,
)

if TYPE_CHECKING:
    from nuvom.runtime import Runtime

log = logging.getLogger("nuvom.dashboard")

BULK_LIMIT = 10_000  # most jobs one bulk action takes; the dry run says when more match


@dataclass(slots=True)
class Done:
    """What an action did: ``message`` for a person, ``data`` for a script."""

    message: str
    data: dict[str, Any] = field(default_factory=dict)


def _runtime() -> Runtime:
    from nuvom.runtime import current

    return current()


def _did(who: str, done: Done) -> Done:
    if who:  # a bulk action logs once for all its jobs
        log.info("dashboard: %s (by %s)", done.message, who)
    return done


# -- jobs -----------------------------------------------------------------------------------
def retry_job(job_id: str, *, who: str) -> Done:
    """Enqueue a FAILED or CANCELLED job again (same id, history kept)."""
    from nuvom.sdk import retry_job as retry

    handle = retry(job_id)
    status = handle.job.status.value
    return _did(who, Done(f"job {job_id} re-enqueued ({status})", {"id": job_id, "status": status}))


def cancel_job(job_id: str, *, who: str) -> Done:
    """Cancel a waiting job; a workflow's id cancels every member still waiting."""
    done = cancel(job_id)
    if done.workflow:
        message = f"workflow {job_id}: {len(done.ids)} waiting job(s) cancelled"
    else:
        message = f"job {job_id} {done.status.value if done.status else 'CANCELLED'}"
    return _did(who, Done(message, {"id": job_id, "workflow": done.workflow,
                                    "cancelled": done.ids}))  # fmt: skip


def delete_job(job_id: str, *, who: str) -> Done:
    """Forget a finished job's record: result, error, attempts."""
    results = _runtime().results
    if not results.delete_job(job_id):
        status = results.get_status(job_id)
        if status is None:
            raise NotFound(f"no job with id {job_id!r}")
        why = (
            "a job of its workflow still waits to be fed its result (delete it once that ran)"
            if status.is_final
            else "only a finished job can be deleted (cancel it first)"
        )
        raise JobStateError(f"job {job_id} is {status.value}: {why}", job_id=job_id,
                            status=status.value)  # fmt: skip
    return _did(who, Done(f"job {job_id} deleted", {"id": job_id, "deleted": True}))


def bulk_plan(
    action: str, *, query: JobQuery | None = None, ids: list[str] | None = None
) -> BulkPlan:
    """The dry run of a bulk action: which jobs it would take, of those the filter (or the
    ids) names."""
    results = _runtime().results
    if ids:
        records = [r for r in (results.get_full(job_id) for job_id in dict.fromkeys(ids)) if r]
        return plan_bulk(action, records, cap=BULK_LIMIT)
    found = iter_matching(results.find_jobs, query or JobQuery(), BULK_LIMIT + 1)
    return plan_bulk(action, found, cap=BULK_LIMIT)


_BULK_STEP = {"cancel": cancel_job, "delete": delete_job}


def bulk(plan: BulkPlan, *, who: str) -> Done:
    """Run a planned bulk action on each job it takes; one that changed meanwhile is skipped
    with the reason, the others go on."""
    from nuvom.errors import NuvomError

    done: list[str] = []
    skipped: dict[str, str] = {}
    if plan.action == "retry":  # a thousand to a submit, not one step per job
        from nuvom.sdk import retry_jobs

        done, skipped = retry_jobs(plan.ids, plan.records)
    for job_id in plan.ids if plan.action in _BULK_STEP else ():
        try:
            _BULK_STEP[plan.action](job_id, who="")
        except NuvomError as exc:
            skipped[job_id] = str(exc)
        else:
            done.append(job_id)
    verb = {"retry": "retried", "cancel": "cancelled", "delete": "deleted"}[plan.action]
    message = f"{len(done)} job(s) {verb}" + (f", {len(skipped)} skipped" if skipped else "")
    return _did(who, Done(message, {"action": plan.action, "done": done, "skipped": skipped}))


def plan_data(plan: BulkPlan) -> dict[str, Any]:
    takes = sorted(s.value for s in BULK_TAKES[plan.action])
    return {"action": plan.action, "matched": plan.matched, "would_take": len(plan.ids),
            "ids": plan.ids, "capped": plan.capped, "takes_statuses": takes}  # fmt: skip


def prune(older_than: str, status: str | None, *, who: str) -> Done:
    """Delete finished jobs last updated longer ago than ``older_than`` (``7d``, ``12h``)."""
    age = age_secs(older_than)
    if age is None:
        raise Refused(f"older than {older_than!r}: use a number with s, m, h, d or w (e.g. 7d)")
    chosen = parse_status(status)
    if chosen is not None and not chosen.is_final:
        raise Refused(f"only finished jobs can be pruned, not {chosen.value}")
    runtime = _runtime()
    removed = runtime.results.prune(
        older_than=runtime.clock.time() - age, statuses=[chosen] if chosen else None
    )
    what = f"{chosen.value} " if chosen else ""
    return _did(who, Done(f"pruned {removed} {what}job(s) older than {older_than}",
                          {"pruned": removed}))  # fmt: skip


def parse_status(text: str | None) -> JobStatus | None:
    if not text:
        return None
    try:
        return JobStatus(text.strip().upper())
    except ValueError:
        names = ", ".join(s.value for s in JobStatus)
        raise Refused(f"unknown status {text!r} (one of {names})") from None


def upgrade_jobs(task: str, from_version: int, *, who: str) -> Done:
    """Move a task's waiting jobs of an old version to its current one."""
    from nuvom.sdk import upgrade_jobs as upgrade

    done = upgrade(task, from_version)
    data = {"version": done.version, "moved": done.moved, "refused": dict(done.refused)}
    if done.version == from_version:
        return Done(f"{task} is at version {from_version} already: nothing to move", data)
    message = (
        f"{len(done.moved)} job(s) of {task} moved from version {from_version} to {done.version}"
    )
    if done.refused:
        message += f"; {len(done.refused)} left (their arguments no longer fit)"
    return _did(who, Done(message, data))


# -- queues ---------------------------------------------------------------------------------
def pause_queue(name: str, paused: bool, *, who: str) -> Done:
    """Pause claims from a queue (or resume them), for every worker."""
    queue = _runtime().queue
    changed = queue.pause_queue(name, paused)
    if paused:
        what = "paused: workers claim nothing from it" if changed else "was already paused"
    else:
        what = "resumed: workers claim from it again" if changed else "was not paused"
    return _did(who, Done(f"queue {name} {what}", {"queue": name, "paused": paused,
                                                    "changed": changed}))  # fmt: skip


def purge_queue(name: str, confirm: str, *, who: str) -> Done:
    """Cancel every job waiting in ``name``, once ``confirm`` repeats the queue's name."""
    if confirm.strip() != name:
        raise Refused(f"type the queue's name, {name!r}, to purge it: nothing was purged")
    runtime = _runtime()
    count = runtime.queue.purge(name, runtime.results)
    return _did(who, Done(f"queue {name} purged: {count} waiting job(s) cancelled",
                          {"queue": name, "cancelled": count}))  # fmt: skip


# -- dead letters ---------------------------------------------------------------------------
def reinject_dead(job_id: str, *, who: str) -> Done:
    """Put a quarantined job back to wait, read with today's settings (the key, codec or
    record fixed); ``CorruptJob`` with the reason when it still cannot be read (it stays)."""
    job = reinject(_runtime(), job_id)
    message = f"dead letter {job_id} re-injected: the job waits again in queue {job.queue}"
    return _did(who, Done(message, {"id": job_id, "queue": job.queue, "reinjected": True}))


def delete_dead(job_id: str, *, who: str) -> Done:
    """Delete a dead letter for good (the job's history, if any, stays)."""
    forget_dead(_runtime(), job_id)
    return _did(who, Done(f"dead letter {job_id} deleted", {"id": job_id, "deleted": True}))


# -- schedules ------------------------------------------------------------------------------
def _schedule(schedule_id: str) -> Any:
    schedule = find_schedule(_runtime(), schedule_id)
    if schedule is None:
        raise NotFound(f"no schedule with id {schedule_id!r}")
    return schedule


def pause_schedule(schedule_id: str, paused: bool, *, who: str) -> Done:
    if not _runtime().queue.pause_schedule(schedule_id, paused):
        raise NotFound(f"no schedule with id {schedule_id!r}")
    what = "paused: no ticks fire until it is resumed" if paused else "resumed"
    return _did(who, Done(f"schedule {schedule_id} {what}", {"id": schedule_id,
                                                              "paused": paused}))  # fmt: skip


def trigger(schedule_id: str, *, who: str) -> Done:
    """Enqueue one run of a schedule now, outside its timetable."""
    schedule = _schedule(schedule_id)
    job = trigger_schedule(_runtime(), schedule)
    message = f"job {job.id} enqueued: one run of schedule {schedule_id} ({schedule.func_name})"
    return _did(who, Done(message, {"id": schedule_id, "job_id": job.id}))


def remove_schedule(schedule_id: str, *, who: str) -> Done:
    """Delete a schedule; the jobs it fired stay."""
    schedule = _schedule(schedule_id)
    if not _runtime().queue.remove_schedule(schedule_id):
        raise NotFound(f"no schedule with id {schedule_id!r}")
    note = (
        " (it is declared with @task in the source: workers create it again when they start)"
        if schedule.declared
        else ""
    )
    return _did(who, Done(f"schedule {schedule_id} removed{note}", {"id": schedule_id,
                                                                     "removed": True}))  # fmt: skip
