"""Times and timetables in words, the same in the CLI's tables and the dashboard's pages:
``every 5m``, ``4m12s``, ``in 4m12s``, ``5m ago``. Imports nothing (``nuvom list tasks``
uses ``every``)."""

from __future__ import annotations

import itertools
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from nuvom.records import Schedule

_UNITS = ((86400, "d"), (3600, "h"), (60, "m"))
NOW_SECS = 0.5  # a time this close to now reads "now"


def every(interval: float) -> str:
    """An interval as people write it: ``every 30s``, ``every 5m``, ``every 2h``."""
    for size, unit in _UNITS:
        if interval >= size and interval % size == 0:
            return f"every {interval / size:g}{unit}"
    return f"every {interval:g}s"


def timetable(schedule: Schedule) -> str:
    """``*/5 * * * *``, or ``every 5m``."""
    return schedule.cron if schedule.cron is not None else every(schedule.interval or 0.0)


def span(seconds: float) -> str:
    """A duration in its two largest units, as ``kubectl`` ages read: ``42s``, ``4m12s``,
    ``3h5m``, ``6d23h``."""
    whole = round(seconds)
    for (size, unit), (smaller, smaller_unit) in itertools.pairwise((*_UNITS, (1, "s"))):
        if whole >= size:
            count, rest = divmod(whole, size)
            rest //= smaller
            return f"{count}{unit}{rest}{smaller_unit}" if rest else f"{count}{unit}"
    return f"{whole}s"


def relative(epoch: float | None, now: float) -> str:
    """``in 4m12s``, ``5m ago``, ``now``; ``-`` for never. Short enough for 80 columns,
    and it says at a glance whether a schedule is overdue (no scheduler running)."""
    if epoch is None:
        return "-"
    delta = epoch - now
    if abs(delta) < NOW_SECS:
        return "now"
    return f"in {span(delta)}" if delta > 0 else f"{span(-delta)} ago"
