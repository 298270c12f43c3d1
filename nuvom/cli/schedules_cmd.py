"""``nuvom schedules list|pause|resume|remove|trigger`` and ``nuvom runscheduler``.

``list`` only looks (the store is opened read-only); the others change one schedule, found
by its id. ``runscheduler`` fires ticks and runs no job: workers run what it enqueues.
(``nuvom list tasks`` borrows ``every``, so this module imports little at the top.)
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from rich.markup import escape

from nuvom.cli.output import (
    Col,
    OutputFormat,
    console,
    err_console,
    fail,
    fit_table,
    print_json,
)

# The words for times and timetables are shared with the dashboard.
from nuvom.wording import NOW_SECS as NOW_SECS
from nuvom.wording import every as every
from nuvom.wording import relative as relative
from nuvom.wording import span as span
from nuvom.wording import timetable as timetable

if TYPE_CHECKING:
    import typer

    from nuvom.discovery import Manifest
    from nuvom.records import Schedule
    from nuvom.runtime import Runtime
    from nuvom.scheduler import Scheduler

log = logging.getLogger("nuvom.scheduler")

ARGS_CHARS = 200  # of a schedule's call a row measures; the table cuts it to fit
# Ids and times stay whole, names and timetables are read whole (wrapped); at 80 columns
# the last job goes first, then the args, then the last run.
SCHEDULE_COLUMNS = (
    Col("id"),
    Col("task", fit="wrap"),
    Col("args", fit="cut", drop=3),
    Col("timetable", fit="wrap"),
    Col("next run"),
    Col("last run", drop=2),
    Col("last job", drop=4),
)


def _timetable_cell(schedule: Schedule) -> str:
    """The timetable, and the zone a cron expression is read in unless it is UTC."""
    text = escape(timetable(schedule))
    if schedule.cron is not None and schedule.timezone != "UTC":
        text += f"\n[dim]{escape(schedule.timezone)}[/]"
    return text


def _call_args(schedule: Schedule) -> str:
    parts = [repr(a) for a in schedule.args] + [f"{k}={v!r}" for k, v in schedule.kwargs.items()]
    return ", ".join(parts)[:ARGS_CHARS]


def _record(schedule: Schedule) -> dict[str, Any]:
    return {**schedule.to_dict(), "timetable": timetable(schedule)}


# -- schedules list ------------------------------------------------------------------
def list_schedules(fmt: OutputFormat) -> None:
    from nuvom.cli.jobs_cmd import reading, store_place

    with reading() as runtime:
        schedules = runtime.queue.list_schedules()
        place = store_place(runtime.settings, "queue")
        backend = runtime.queue.name
        now = runtime.clock.time()
    if fmt is OutputFormat.json:
        print_json([_record(s) for s in schedules])
        return
    if not schedules:
        console.print(escape(f"no schedules {place.note()}"), highlight=False)
        return
    rows = [
        (
            escape(s.id),
            escape(s.func_name),
            escape(_call_args(s)),
            _timetable_cell(s),
            "[yellow]paused[/]" if s.paused else relative(s.next_run_at, now),
            relative(s.last_run_at, now),
            escape(s.last_job_id or "-"),
        )
        for s in schedules
    ]
    title = f"schedules on {backend} in {place.label}"
    console.print(fit_table(escape(title), SCHEDULE_COLUMNS, rows, title_justify="left"))


# -- one schedule ----------------------------------------------------------------------
def _find(runtime: Runtime, schedule_id: str) -> Schedule:
    from nuvom.store_view import find_schedule

    schedule = find_schedule(runtime, schedule_id)
    if schedule is None:
        raise _unknown(runtime, schedule_id)
    return schedule


def _unknown(runtime: Runtime, schedule_id: str) -> typer.Exit:
    from nuvom.cli.jobs_cmd import store_place

    place = store_place(runtime.settings, "queue").note()
    return fail(f"no schedule with id {schedule_id!r} {place} (nuvom schedules list shows them)")


def _declared_note(schedule: Schedule) -> str:
    return (
        f"; it is declared with @task in the source, so workers create it again when they "
        f"start: take {'cron' if schedule.cron is not None else 'interval'}= off "
        f"{schedule.func_name} to end it"
    )


def pause_schedule(schedule_id: str, paused: bool) -> None:
    from nuvom.runtime import current

    runtime = current()
    if not runtime.queue.pause_schedule(schedule_id, paused):
        raise _unknown(runtime, schedule_id)
    what = "paused: no ticks fire until it is resumed" if paused else "resumed"
    console.print(escape(f"schedule {schedule_id} {what}"), highlight=False)


def remove_schedule(schedule_id: str) -> None:
    from nuvom.runtime import current

    runtime = current()
    schedule = _find(runtime, schedule_id)
    if not runtime.queue.remove_schedule(schedule_id):
        raise _unknown(runtime, schedule_id)  # removed by someone else in between
    note = _declared_note(schedule) if schedule.declared else ""
    console.print(
        escape(f"schedule {schedule_id} removed (jobs it fired are kept){note}"), highlight=False
    )


def trigger_schedule(schedule_id: str) -> None:
    from nuvom.runtime import current
    from nuvom.store_view import trigger_schedule as trigger

    runtime = current()
    schedule = _find(runtime, schedule_id)
    job = trigger(runtime, schedule)
    console.print(
        escape(f"job {job.id} enqueued: one run of schedule {schedule_id} ({schedule.func_name})"),
        highlight=False,
    )


# -- runscheduler ----------------------------------------------------------------------
def _declarations(runtime: Runtime) -> Manifest | None:
    """The project's tasks as the source declares them now (the manifest is brought up to date)."""
    from nuvom.discovery.loader import TaskLoader

    loader = TaskLoader(runtime.registry, manifest_path=runtime.settings.manifest_path)
    try:
        loader.refresh()
    except OSError as exc:  # an unreadable tree: what the manifest says is the best there is
        log.warning("cannot scan %s for tasks (%s); using the manifest as it is", loader.root, exc)
    return loader.manifest


def sync_declared(runtime: Runtime, scheduler: Scheduler) -> None:
    """Upsert the schedules the source declares; retire those it no longer declares.

    A folder with no tasks at all is more likely the wrong folder than a project whose
    every declaration went: then nothing is retired.
    """
    from nuvom.discovery.schedules import declared_schedules

    manifest = _declarations(runtime)
    if manifest is None or not manifest.tasks:
        root = manifest.root if manifest is not None else "."
        log.warning(
            "no tasks found under %s: the schedules declared in source are left as they are "
            "(run nuvom runscheduler in the project folder)",
            root,
        )
        return
    declared = declared_schedules(manifest, runtime.clock.time())
    scheduler.sync_declared(declared)
    log.info("%d schedule(s) declared in the source of %s", len(declared), manifest.root)


def _on_signals(stop: threading.Event) -> Callable[[], None]:
    """SIGINT, SIGTERM (and CTRL+BREAK on Windows) set ``stop``; returns the undo."""
    from nuvom.stopsignals import on_stop_signals

    def handle(signum: int) -> None:
        stop.set()  # before logging: a pass in progress ends the loop as soon as it returns
        log.warning("stopping: the scheduler exits after this pass")

    return on_stop_signals(handle)


def run_scheduler() -> int:
    """Fire due ticks until SIGINT/SIGTERM; the jobs wait for workers. Exit code 0."""
    import os
    import socket

    from nuvom.calls import tick_preparer
    from nuvom.cli.worker_cmd import _backend_name
    from nuvom.runtime import current
    from nuvom.scheduler import Scheduler

    runtime = current()
    queue_name = _backend_name(runtime.queue, runtime.settings.queue_backend)
    scheduler = Scheduler(
        runtime.queue, runtime.results, runtime.clock, flow=tick_preparer(runtime)
    )
    stop = threading.Event()
    restore = _on_signals(stop)
    try:
        name = f"{socket.gethostname()}:{os.getpid()}"
        err_console.print(
            f"[bold]nuvom scheduler[/] {escape(name)}  queue={escape(queue_name)}  "
            "(runs no jobs; CTRL+C to stop)",
            highlight=False,
        )
        if queue_name == "memory":
            log.warning(
                "queue=memory: the jobs this scheduler fires stay in its own process, where "
                "no worker runs them (NUVOM_QUEUE_BACKEND=sqlite, the default, shares them)"
            )
        sync_declared(runtime, scheduler)
        schedules = runtime.queue.list_schedules()
        paused = sum(1 for s in schedules if s.paused)
        log.info(
            "scheduler %s started: %d schedule(s), %d paused, queue %s",
            name, len(schedules), paused, queue_name,
        )  # fmt: skip
        scheduler.run(stop)
    finally:
        restore()
        runtime.close()
    log.info("scheduler stopped")
    return 0
