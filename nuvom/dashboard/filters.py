"""The jobs view's filters as a query string carries them, and the ``JobQuery`` they make.

``/jobs?status=FAILED&queue=&task=&tag=&since=1h&until=&search=&before=`` and
``/api/jobs?...`` read the same names: a bookmark, a shared link and a script agree.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields, replace
from typing import TYPE_CHECKING

from nuvom.backends.contract import JobQuery
from nuvom.job import JobStatus
from nuvom.store_view import Refused, TaskInfo, age_secs, parse_cursor, tasks_tagged

if TYPE_CHECKING:
    from nuvom.records import JobRecord

PAGE_SIZE = 50  # jobs on one page of /jobs
MAX_PAGE_SIZE = 500
_EPOCH = re.compile(r"\d{9,}(\.\d+)?")  # epoch seconds (ages are short: 90, 15m, 7d)
#: Query-string names of the filters, in the order links write them.
FILTER_NAMES = ("status", "queue", "task", "tag", "since", "until", "search")


def parse_time(text: str, now: float, name: str) -> float:
    """``15m``/``2h``/``7d`` (that long ago), epoch seconds, or an ISO date or time (UTC
    unless it names a zone) as epoch seconds; ``Refused`` for anything else."""
    text = text.strip()
    if _EPOCH.fullmatch(text):
        return float(text)
    age = age_secs(text)
    if age is not None:
        return now - age
    try:
        when = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise Refused(
            f"{name}={text!r}: give an age (15m, 2h, 7d), a date (2026-05-01 09:30) "
            "or epoch seconds"
        ) from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.timezone.utc)
    return when.timestamp()


@dataclass(frozen=True, slots=True)
class JobFilter:
    """The filters of the jobs view, as typed (empty: not filtered)."""

    status: str = ""
    queue: str = ""
    task: str = ""
    tag: str = ""
    since: str = ""
    until: str = ""
    search: str = ""
    before: str = ""
    limit: int = PAGE_SIZE

    @classmethod
    def from_params(cls, params: Mapping[str, str]) -> JobFilter:
        """From a query string (``q`` is ``search`` too); ``Refused`` for a bad value."""
        values = {name: params.get(name, "").strip() for name in (*FILTER_NAMES, "before")}
        if not values["search"]:
            values["search"] = params.get("q", "").strip()
        values["status"] = values["status"].upper()
        if values["status"] and values["status"] not in JobStatus.__members__:
            names = ", ".join(s.value for s in JobStatus)
            raise Refused(f"status={values['status']!r}: one of {names}")
        limit = params.get("limit", "").strip()
        try:
            size = int(limit) if limit else PAGE_SIZE
        except ValueError:
            raise Refused(f"limit={limit!r} is not a number") from None
        if not 1 <= size <= MAX_PAGE_SIZE:
            raise Refused(f"limit={size}: between 1 and {MAX_PAGE_SIZE}")
        if values["before"]:
            parse_cursor(values["before"])
        return cls(**values, limit=size)

    @property
    def active(self) -> bool:
        """Whether any filter is set (the page position aside)."""
        return any(getattr(self, name) for name in FILTER_NAMES)

    def params(self, **changes: str | int) -> dict[str, str]:
        """The query string of this filter with ``changes``, empty values left out."""
        chosen = replace(self, **changes)  # type: ignore[arg-type]
        shown = {}
        for item in fields(chosen):
            value = getattr(chosen, item.name)
            if item.name == "limit":
                if value != PAGE_SIZE:
                    shown["limit"] = str(value)
            elif value:
                shown[item.name] = str(value)
        return shown

    def query(self, tasks: Sequence[TaskInfo], now: float, *, limit: int | None = None) -> JobQuery:
        """The ``JobQuery`` of these filters; a tag becomes the tasks that carry it."""
        names: tuple[str, ...] | None = None
        if self.tag:
            names = tasks_tagged(tasks, self.tag)
        if self.task:
            names = (self.task,) if names is None or self.task in names else ()
        return JobQuery(
            status=JobStatus(self.status) if self.status else None,
            queue=self.queue or None,
            tasks=names,
            since=parse_time(self.since, now, "since") if self.since else None,
            until=parse_time(self.until, now, "until") if self.until else None,
            search=self.search or None,
            before=parse_cursor(self.before) if self.before else None,
            limit=self.limit if limit is None else limit,
        )


@dataclass(slots=True)
class JobPage:
    """One page of the jobs view: its records, newest first, and the position of the next
    (older) page, if there is one."""

    records: list[JobRecord]
    older: str | None


def page_of(found: list[JobRecord], size: int) -> JobPage:
    """A page from ``size + 1`` records asked for: the extra one says an older page exists."""
    from nuvom.store_view import cursor_of

    shown = found[:size]
    return JobPage(shown, cursor_of(shown[-1]) if len(found) > size and shown else None)
