"""The schedules the source declares (``@task(cron=...)`` / ``@task(interval=...)``), from the manifest.

Every worker upserts them at start (``Scheduler.sync_declared``): each gets its id from
the task's name and timetable, so two workers write one record for one declaration.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from nuvom.discovery.manifest import Manifest, TaskEntry
from nuvom.errors import TaskDefinitionError
from nuvom.options import OPTIONS, SCHEDULE_OPTIONS, TIMETABLE_OPTIONS

if TYPE_CHECKING:
    from nuvom.records import Schedule

log = logging.getLogger("nuvom.discovery")


def declares_schedule(entry: TaskEntry) -> bool:
    """Whether the declaration gives a timetable (as a literal discovery could read)."""
    return any(entry.options.get(name) is not None for name in TIMETABLE_OPTIONS)


def declared_schedules(source: Manifest | Iterable[TaskEntry], now: float) -> list[Schedule]:
    """A ``Schedule`` for each task declared with ``cron=`` or ``interval=``, first tick after ``now``.

    ``source`` is a manifest or its task entries. A name declared twice counts once, as
    workers load the first declaration. A declaration whose options do not make a
    schedule (an option computed at import time, which discovery cannot read, or a bad
    cron expression, whose module fails to import anyway) is logged with its file and
    line and left out.
    """
    entries = source.tasks if isinstance(source, Manifest) else source
    schedules: list[Schedule] = []
    seen: set[str] = set()
    for entry in entries:
        if entry.name in seen:
            continue
        seen.add(entry.name)
        if not any(key in entry.options for key in TIMETABLE_OPTIONS):
            continue
        try:
            schedules.append(_declared(entry, now))
        except TaskDefinitionError as exc:
            log.error("%s:%d: task %s declares no schedule: %s", entry.file, entry.line, entry.name, exc)  # fmt: skip
    return schedules


def _declared(entry: TaskEntry, now: float) -> Schedule:
    from nuvom.scheduler import declared_id, new_schedule

    # Discovery records an option it cannot read (computed at import time) as None; so is a
    # timetable written as None, which only matters when there is no other.
    periodic = declares_schedule(entry)
    unread = [key for key in SCHEDULE_OPTIONS if key in entry.options and entry.options[key] is None
              and not (periodic and key in TIMETABLE_OPTIONS)]  # fmt: skip
    if unread:
        names = ", ".join(f"{key}=" for key in unread)
        raise TaskDefinitionError(f"{names} not a literal (see nuvom discover tasks)")
    options = _options(entry)
    interval = options["interval"]
    if isinstance(interval, int | float) and not isinstance(interval, bool):
        interval = float(interval)  # interval=60 and interval=60.0 are one declaration
    cron, timezone = options["cron"], options["timezone"]
    return new_schedule(
        entry.name, cron=cron, interval=interval, timezone=timezone, overlap=options["overlap"],
        catchup=options["catchup"], max_catchup=options["max_catchup"], queue=options["queue"],
        priority=options["priority"], now=now, declared=True,
        schedule_id=declared_id(entry.name, cron=cron, interval=interval, timezone=timezone),
    )  # fmt: skip


def _options(entry: TaskEntry) -> dict[str, Any]:
    """The options a schedule takes, as declared, else their defaults."""
    return {
        name: entry.options[name] if entry.options.get(name) is not None else OPTIONS[name].default
        for name in SCHEDULE_OPTIONS
    }
