"""Flow control: the limits a job carries to the store, and the words that explain a hold.

A task's ``rate_limit``, ``concurrency`` (+ ``concurrency_key``) and ``unique``
(+ ``unique_for``) options become, when a job is submitted, three small entries in
``Job.origin`` that every engine reads through ``Job.rate_limit``,
``Job.concurrency_limit`` and ``Job.unique``:

- ``origin["rate"] = [per_sec, burst]``: a token bucket keyed on the task name;
- ``origin["conc"] = [key, limit]``: at most ``limit`` jobs of ``key`` held at once;
- ``origin["unique"] = [key, keep_secs]``: one job per key while it waits or runs, and
  ``keep_secs`` after it finished.

The store enforces them in its claim and submit steps (``nuvom/backends/contract.py``,
"flow control"); a job a limit holds back carries a *hold tag* — ``rate:<task>`` or
``concurrency:<key>`` — that ``describe_hold`` turns into words.
"""

from __future__ import annotations

import hashlib
import inspect
import math
import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any, NamedTuple

from nuvom.errors import TaskDefinitionError

#: "10/s", "100/m", "5000/h", "2/3s": a count per a unit of time.
_RATE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*/\s*(\d+(?:\.\d+)?)?\s*(s|sec|m|min|h|hour|d|day)\s*$")
_UNIT_SECS = {"s": 1, "sec": 1, "m": 60, "min": 60, "h": 3600, "hour": 3600, "d": 86400,
              "day": 86400}  # fmt: skip
RATE_TAG, CONCURRENCY_TAG, VERSION_TAG = "rate:", "concurrency:", "version:"
ON_CONFLICT = ("return", "raise")


class RateLimit(NamedTuple):
    """At most ``burst`` starts at once, refilled at ``per_sec`` tokens a second."""

    key: str
    per_sec: float
    burst: int


class ConcurrencyLimit(NamedTuple):
    """At most ``limit`` jobs of ``key`` held by workers at once."""

    key: str
    limit: int


class UniqueKey(NamedTuple):
    """One job of ``key`` while it waits or runs, and for ``keep_secs`` after it finished."""

    key: str
    keep_secs: float


def parse_rate(text: Any, label: str = "task option rate_limit") -> tuple[float, int]:
    """``"10/s"`` -> (10.0 tokens a second, burst 10); ``TaskDefinitionError`` if unreadable.

    The burst is the count: ``"100/m"`` lets 100 start at once after a quiet minute,
    then one every 0.6 s.
    """
    match = _RATE.match(text) if isinstance(text, str) else None
    if match is None:
        raise TaskDefinitionError(
            f"{label} must read like '10/s', '100/m' or '5000/h' (a count per second, minute, "
            f"hour or day), not {text!r}"
        )
    count, every, unit = float(match[1]), float(match[2] or 1), match[3]
    if count < 1 or every <= 0:
        raise TaskDefinitionError(f"{label} must allow at least 1 per period, not {text!r}")
    return count / (every * _UNIT_SECS[unit]), max(1, math.floor(count))


def check_rate(label: str, value: Any) -> None:
    if value is not None:
        parse_rate(value, label)


def check_concurrency(label: str, value: Any) -> None:
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise TaskDefinitionError(f"{label} must be an int >= 1, not {value!r}")


def check_keep(label: str, value: Any) -> None:
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, int | float) or not value >= 0:
        raise TaskDefinitionError(f"{label} must be a number of seconds >= 0, not {value!r}")
    if not math.isfinite(value):
        raise TaskDefinitionError(f"{label} must be a finite number of seconds, not {value!r}")


def check_task_limits(func: Callable[..., Any], name: str, options: Mapping[str, Any]) -> None:
    """What only the function can tell: ``concurrency_key`` names one of its parameters, and
    ``unique_for`` comes with ``unique``."""
    key = options.get("concurrency_key")
    if key is not None:
        if options.get("concurrency") is None:
            raise TaskDefinitionError(
                f"task {name}: concurrency_key={key!r} needs concurrency= (how many at once)"
            )
        params = inspect.signature(func).parameters
        if key not in params:
            raise TaskDefinitionError(
                f"task {name}: concurrency_key {key!r} is not a parameter of {name}() "
                f"(its parameters: {', '.join(params) or 'none'})"
            )
    if options.get("unique_for") is not None and not options.get("unique"):
        raise TaskDefinitionError(
            f"task {name}: unique_for needs unique=True (or a unique_key= per call)"
        )


def argument(func: Callable[..., Any] | None, param: str, args: Sequence[Any],
             kwargs: Mapping[str, Any]) -> Any:  # fmt: skip
    """The value the call gives parameter ``param``: by keyword, else by position (which
    needs the function), else its default."""
    if param in kwargs:
        return kwargs[param]
    if func is None:
        raise TaskDefinitionError(
            f"concurrency_key {param!r}: pass it by keyword when the task is not imported here"
        )
    try:
        bound = inspect.signature(func).bind_partial(*args, **kwargs)
    except TypeError as exc:
        raise TaskDefinitionError(f"concurrency_key {param!r}: {exc}") from None
    bound.apply_defaults()
    if param not in bound.arguments:
        raise TaskDefinitionError(f"concurrency_key {param!r}: the call gives it no value")
    return bound.arguments[param]


def unique_key_of(func_name: str, args: Sequence[Any], kwargs: Mapping[str, Any],
                  dumps: Callable[[Any], bytes]) -> str:  # fmt: skip
    """``unique=True``'s key: the task name and a digest of its encoded arguments."""
    encoded = dumps([list(args), sorted(kwargs.items())])
    return f"{func_name}:{hashlib.sha256(encoded).hexdigest()[:32]}"


def flow_origin(
    origin: dict[str, Any] | None,
    *,
    func_name: str,
    options: Mapping[str, Any],
    func: Callable[..., Any] | None,
    args: Sequence[Any],
    kwargs: Mapping[str, Any],
    dumps: Callable[[Any], bytes],
) -> dict[str, Any] | None:
    """``origin`` with the task's limits added (those it already carries are kept)."""
    entries: dict[str, Any] = {}
    have = origin or {}
    rate = options.get("rate_limit")
    if rate is not None and "rate" not in have:
        per_sec, burst = parse_rate(rate)
        entries["rate"] = [per_sec, burst]
    limit = options.get("concurrency")
    if limit is not None and "conc" not in have:
        key = func_name
        param = options.get("concurrency_key")
        if param is not None:
            key = f"{func_name}[{param}={argument(func, param, args, kwargs)!r}]"
        entries["conc"] = [key, int(limit)]
    if options.get("unique") and "unique" not in have:
        keep = float(options.get("unique_for") or 0.0)
        entries["unique"] = [unique_key_of(func_name, args, kwargs, dumps), keep]
    if not entries:
        return origin
    return {**have, **entries}


# -- reading what a job carries (``Job.rate_limit`` and friends call these) --------------
def rate_of(func_name: str, origin: Mapping[str, Any] | None) -> RateLimit | None:
    entry = origin.get("rate") if origin else None
    return None if entry is None else RateLimit(func_name, float(entry[0]), int(entry[1]))


def concurrency_of(origin: Mapping[str, Any] | None) -> ConcurrencyLimit | None:
    entry = origin.get("conc") if origin else None
    return None if entry is None else ConcurrencyLimit(str(entry[0]), int(entry[1]))


def unique_of(origin: Mapping[str, Any] | None) -> UniqueKey | None:
    entry = origin.get("unique") if origin else None
    return None if entry is None else UniqueKey(str(entry[0]), float(entry[1]))


def bad_flow_entry(origin: Mapping[str, Any]) -> bool:
    """Whether ``origin``'s flow-control entries are malformed (``Job.validate`` asks)."""
    rate, conc, unique = origin.get("rate"), origin.get("conc"), origin.get("unique")
    if rate is not None and not (
        _pair(rate) and _number(rate[0]) and rate[0] > 0 and _count(rate[1])
    ):
        return True
    if conc is not None and not (_pair(conc) and _key(conc[0]) and _count(conc[1])):
        return True
    return unique is not None and not (
        _pair(unique) and _key(unique[0]) and _number(unique[1]) and unique[1] >= 0
    )


def _pair(value: Any) -> bool:
    return isinstance(value, list | tuple) and len(value) == 2


def _number(value: Any) -> bool:
    return type(value) in (int, float) and math.isfinite(value)


def _count(value: Any) -> bool:
    return type(value) is int and value >= 1


def _key(value: Any) -> bool:
    return isinstance(value, str) and bool(value)


# -- holds: the tag a store keeps on a job a limit held back ------------------------------
def rate_tag(func_name: str) -> str:
    return RATE_TAG + func_name


def concurrency_tag(key: str) -> str:
    return CONCURRENCY_TAG + key


def version_tag(func_name: str, version: int) -> str:
    """A job of ``func_name`` v``version`` that a worker without that version gave back."""
    return f"{VERSION_TAG}{func_name}:{version}"


def describe_hold(tag: str, origin: Mapping[str, Any] | None = None) -> str:
    """``"rate limit 10/s"``, ``"concurrency limit 2 (export[tenant='acme'])"`` or
    ``"waiting for a worker with charge v2"``."""
    if tag.startswith(VERSION_TAG):
        task, _, version = tag[len(VERSION_TAG) :].rpartition(":")
        return f"waiting for a worker with {task} v{version}"
    if tag.startswith(RATE_TAG):
        rate = (origin or {}).get("rate")
        if rate is None:
            return f"rate limit of {tag[len(RATE_TAG) :]}"
        return f"rate limit {_per_period(float(rate[0]))}"
    if tag.startswith(CONCURRENCY_TAG):
        conc = (origin or {}).get("conc")
        key = tag[len(CONCURRENCY_TAG) :]
        return f"concurrency limit {conc[1]} ({key})" if conc else f"concurrency limit ({key})"
    return tag


def _per_period(per_sec: float) -> str:
    for unit, secs in (("s", 1), ("m", 60), ("h", 3600), ("d", 86400)):
        count = per_sec * secs
        if count >= 1 and abs(count - round(count)) < 1e-6:
            return f"{round(count)}/{unit}"
    return f"{per_sec:g}/s"


def task_of_tag(tag: str) -> str:
    """The task a hold tag belongs to (for per-task counts)."""
    key = tag.partition(":")[2]
    if tag.startswith(VERSION_TAG):
        return key.rpartition(":")[0]
    return key.partition("[")[0]
