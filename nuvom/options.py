"""Every task option, defined once: name, default, validation, and where else it shows.

``@task`` validates against this table; ``Job`` takes its per-job overrides from
it; the execution policies resolve an attempt's options from it (the job's
override, else the task's value, else the setting named here, else the default);
a process-pool child gets the settings it names; discovery reads the options it
marks as written in source; and the settings take their defaults from it.
"""

from __future__ import annotations

import datetime as dt
import difflib
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from nuvom.errors import InvalidJob, TaskDefinitionError
from nuvom.limits import check_concurrency, check_keep, check_rate

DEFAULT_QUEUE = "default"
TIMEOUT_POLICIES = ("fail", "retry", "ignore")
#: A schedule's policies (``nuvom.scheduler`` applies them).
OVERLAPS = ("allow", "skip")
CATCHUPS = ("latest", "all", "none")
DEFAULT_MAX_CATCHUP = 100  # missed ticks catchup="all" fires at most, after downtime
_CRON_FIELDS = ("minute", "hour", "day of month", "month", "day of week")
#: The options that make a task periodic; ``@task`` takes one of them at most.
TIMETABLE_OPTIONS = ("cron", "interval")
#: What a schedule declared in source is made of: read from the manifest, so each a literal.
SCHEDULE_OPTIONS = (*TIMETABLE_OPTIONS, "timezone", "overlap", "catchup", "max_catchup",
                    "queue", "priority")  # fmt: skip

#: ``check(label, value)`` raises ``TaskDefinitionError`` saying what is wrong with ``value``.
Check = Callable[[str, Any], None]


def _integer(minimum: int | None = None) -> Check:
    def check(label: str, value: Any) -> None:
        if isinstance(value, bool) or not isinstance(value, int):
            raise TaskDefinitionError(f"{label} must be an int, not {value!r}")
        if minimum is not None and value < minimum:
            raise TaskDefinitionError(f"{label} must be an int >= {minimum}, not {value!r}")

    return check


def _seconds(*, positive: bool) -> Check:
    def check(label: str, value: Any) -> None:
        if value is None:
            return
        if isinstance(value, bool) or not isinstance(value, int | float) or value != value:
            raise TaskDefinitionError(f"{label} must be a number, not {value!r}")
        if value < 0 or (positive and value == 0):
            bound = "> 0" if positive else ">= 0"
            raise TaskDefinitionError(f"{label} must be {bound}, not {value!r}")

    return check


def _flag(label: str, value: Any) -> None:
    if not isinstance(value, bool):
        raise TaskDefinitionError(f"{label} must be True or False, not {value!r}")


def _policy(label: str, value: Any) -> None:
    if value is not None and value not in TIMEOUT_POLICIES:
        raise TaskDefinitionError(
            f"{label} must be one of {', '.join(TIMEOUT_POLICIES)}, not {value!r}"
        )


def _name(label: str, value: Any) -> None:
    if not isinstance(value, str) or not value:
        raise TaskDefinitionError(f"{label} must be a non-empty string, not {value!r}")


def _text(label: str, value: Any) -> None:
    if value is not None and not isinstance(value, str):
        raise TaskDefinitionError(f"{label} must be a string, not {value!r}")


def _tags(label: str, value: Any) -> None:
    if isinstance(value, str) or not isinstance(value, list | tuple | set | frozenset):
        raise TaskDefinitionError(f"{label} must be a list of strings, not {value!r}")
    for tag in value:
        if not isinstance(tag, str):
            raise TaskDefinitionError(f"{label} must be a list of strings, not {value!r}")


def _versions(label: str, value: Any) -> None:
    if value is None:
        return
    if (
        isinstance(value, str)
        or not isinstance(value, list | tuple | set | frozenset)
        or not all(type(v) is int and v >= 1 for v in value)
    ):
        raise TaskDefinitionError(f"{label} must be a list of versions (ints >= 1), not {value!r}")


def _one_of(choices: tuple[str, ...]) -> Check:
    def check(label: str, value: Any) -> None:
        if value not in choices:
            raise TaskDefinitionError(f"{label} must be one of {', '.join(choices)}, not {value!r}")

    return check


# -- timetables (``nuvom.scheduler`` reads them; cronsim and zoneinfo load on first use) --
def check_timetable(
    *, cron: Any = None, interval: Any = None, timezone: Any = "UTC", label: str = "schedule"
) -> None:
    """Raise ``TaskDefinitionError`` naming what is wrong with a timetable."""
    if (cron is None) == (interval is None):
        raise TaskDefinitionError(f"{label}: give cron= or interval=, exactly one")
    if interval is not None:
        if isinstance(interval, bool) or not isinstance(interval, int | float):
            raise TaskDefinitionError(f"{label}: interval must be a number of seconds")
        if not (math.isfinite(interval) and interval > 0):
            raise TaskDefinitionError(f"{label}: interval must be > 0, not {interval!r}")
    if cron is not None:
        _check_cron(cron, label)
    zone(timezone, label)


def _check_cron(cron: Any, label: str) -> None:
    from cronsim import CronSim, CronSimError

    if not isinstance(cron, str) or not cron.strip():
        raise TaskDefinitionError(f"{label}: cron must be a cron expression such as '*/5 * * * *'")
    parts = cron.split()
    if len(parts) != len(_CRON_FIELDS):
        raise TaskDefinitionError(
            f"{label}: cron {cron!r} has {len(parts)} fields; it needs 5 "
            "(minute, hour, day of month, month, day of week)"
        )
    try:
        CronSim(cron, dt.datetime(2000, 1, 1, tzinfo=dt.timezone.utc))
    except CronSimError as exc:
        raise TaskDefinitionError(f"{label}: cron {cron!r}: {str(exc).lower()}") from None


def zone(name: Any, label: str = "schedule") -> dt.tzinfo:
    """The ``zoneinfo`` zone called ``name``; ``TaskDefinitionError`` if there is none."""
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

    if not isinstance(name, str) or not name:
        raise TaskDefinitionError(f"{label}: timezone must be a zone name such as 'Europe/Berlin'")
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise TaskDefinitionError(f"{label}: unknown timezone {name!r}") from None


def _cron(label: str, value: Any) -> None:
    if value is not None:
        check_timetable(cron=value, label=label)


def _interval(label: str, value: Any) -> None:
    if value is not None:
        check_timetable(interval=value, label=label)


def _timezone(label: str, value: Any) -> None:
    zone(value, label)


def _hook(label: str, value: Any) -> None:
    if value is not None and not callable(value):
        raise TaskDefinitionError(f"{label} must be callable, not {value!r}")


@dataclass(frozen=True, slots=True)
class Option:
    """One ``@task`` option."""

    name: str
    default: Any
    check: Check
    #: The ``Job`` field that overrides it for one job (``None``: no per-job override).
    job_field: str | None = None
    #: The setting whose value is used when neither the job nor the task sets it.
    setting: str | None = None
    #: That setting's own default.
    setting_default: Any = None
    #: How discovery reads it from source: its literal value, its source text, or not at all.
    in_source: Literal["literal", "text", "no"] = "literal"
    #: Resolved for every attempt (``execution.policies.RunOptions``).
    runs: bool = False

    def validate(self, value: Any, *, label: str | None = None) -> Any:
        self.check(label or f"task option {self.name}", value)
        return value


TASK_OPTIONS: tuple[Option, ...] = (
    Option("retries", 0, _integer(minimum=0), job_field="max_retries", runs=True),
    Option(
        "retry_delay_secs",
        None,
        _seconds(positive=False),
        job_field="retry_delay_secs",
        setting="retry_delay_secs",
        setting_default=5.0,  # seconds a failed job waits in the queue before its next attempt
        runs=True,
    ),
    Option("retry_backoff", False, _flag, runs=True),
    Option(
        "timeout_secs",
        None,
        _seconds(positive=True),
        job_field="timeout_secs",
        setting="job_timeout_secs",
        setting_default=30.0,  # seconds one attempt may run before its timeout policy applies
        runs=True,
    ),
    Option(
        "timeout_policy",
        None,
        _policy,
        job_field="timeout_policy",
        setting="timeout_policy",
        setting_default="fail",
        runs=True,
    ),
    Option("store_result", True, _flag, job_field="store_result", runs=True),
    Option("tags", (), _tags),
    Option("description", None, _text),
    Option("queue", DEFAULT_QUEUE, _name),
    Option("priority", 0, _integer()),
    Option("before_job", None, _hook, in_source="text"),
    Option("after_job", None, _hook, in_source="text"),
    Option("on_error", None, _hook, in_source="text"),
    # Periodic jobs (``nuvom.scheduler``): read from source, so workers declare the schedule
    # from the manifest without importing the task.
    Option("cron", None, _cron),
    Option("interval", None, _interval),  # seconds between ticks, anchored (no drift)
    Option("timezone", "UTC", _timezone),  # the zone a cron expression is read in
    Option("overlap", OVERLAPS[0], _one_of(OVERLAPS)),
    Option("catchup", CATCHUPS[0], _one_of(CATCHUPS)),
    Option("max_catchup", DEFAULT_MAX_CATCHUP, _integer(minimum=1)),
    # Flow control (``nuvom.limits``): enforced by the store, across every worker.
    Option("rate_limit", None, check_rate),  # "10/s", "100/m", "5000/h"
    Option("concurrency", None, check_concurrency),  # at most this many at once
    Option("concurrency_key", None, _text),  # ... per value of this parameter
    Option("unique", False, _flag),  # one job per task + arguments while it waits or runs
    Option("unique_for", None, check_keep),  # ... and this many seconds after it finished
    # Versions (a job carries its task's; a worker runs the versions its task has).
    Option("version", 1, _integer(minimum=1)),
    Option("runs_versions", None, _versions),  # older versions this code still runs
)
OPTIONS: dict[str, Option] = {option.name: option for option in TASK_OPTIONS}
RUN_OPTIONS: tuple[Option, ...] = tuple(o for o in TASK_OPTIONS if o.runs)
#: Per-job override field -> the option it overrides.
JOB_OVERRIDES: dict[str, Option] = {o.job_field: o for o in TASK_OPTIONS if o.job_field}
#: The options discovery reads as literals, and those it lists by their source text.
LITERAL_OPTIONS = frozenset(o.name for o in TASK_OPTIONS if o.in_source == "literal")
TEXT_OPTIONS = frozenset(o.name for o in TASK_OPTIONS if o.in_source == "text")


def setting_default(name: str) -> Any:
    """The default of the setting behind option ``name`` (for ``nuvom.config``)."""
    return OPTIONS[name].setting_default


def check_task_options(given: Mapping[str, Any]) -> dict[str, Any]:
    """Every option's value: ``given`` validated, the rest at their defaults.

    An unknown name is a ``TaskDefinitionError`` that suggests the closest known one.
    """
    unknown = sorted(set(given) - set(OPTIONS))
    if unknown:
        close = difflib.get_close_matches(unknown[0], list(OPTIONS), n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise TaskDefinitionError(f"unknown task option {unknown[0]!r}{hint}")
    timetables = [name for name in TIMETABLE_OPTIONS if given.get(name) is not None]
    if len(timetables) > 1:
        raise TaskDefinitionError(
            f"task options {' and '.join(timetables)} are both given; a task runs on one timetable"
        )
    return {
        name: option.validate(given[name]) if name in given else option.default
        for name, option in OPTIONS.items()
    }


def check_job_overrides(values: Mapping[str, Any]) -> None:
    """Validate a job's per-job overrides (``None`` means "the task's"); ``InvalidJob`` if bad."""
    for field, value in values.items():
        if value is not None:
            try:
                JOB_OVERRIDES[field].validate(value, label=f"Job field {field}")
            except TaskDefinitionError as exc:
                raise InvalidJob(str(exc), field=field) from None


def run_defaults(settings: Any) -> dict[str, Any]:
    """What the settings supply for options a job and its task leave unset."""
    return {o.name: getattr(settings, o.setting) for o in RUN_OPTIONS if o.setting}


def retries_left(allowed: int, attempts: int) -> int:
    """Retries still allowed once attempt number ``attempts`` has failed (0 before any)."""
    return max(0, allowed - max(0, attempts - 1))
