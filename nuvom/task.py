"""``@task``: turn a function into a task that can be run later by a worker.

The decorated function stays directly callable. ``.delay()`` and ``.map()``
enqueue jobs; argument types carry through (ParamSpec), so mypy checks them.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import functools
import inspect
import sys
import types
from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING, Any, Generic, ParamSpec, TypeVar, overload

from nuvom.errors import TaskDefinitionError
from nuvom.job import Job
from nuvom.limits import check_keep, check_task_limits
from nuvom.options import OPTIONS, check_task_options

if TYPE_CHECKING:
    from nuvom.handle import JobHandle
    from nuvom.records import Schedule
    from nuvom.registry import TaskRegistry
    from nuvom.workflow import Signature

P = ParamSpec("P")
R = TypeVar("R")

#: Everything ``@task(...)`` accepts besides the registration flags: ``name`` and the options.
TASK_OPTIONS = ("name", *OPTIONS)
#: The options ``nuvom list tasks`` shows (the hooks and description are listed apart).
LISTED_OPTIONS = ("retries", "retry_delay_secs", "retry_backoff", "timeout_secs",
                  "timeout_policy", "store_result", "queue", "priority", "tags")  # fmt: skip


class Task(Generic[P, R]):
    """A registered function plus the options its jobs run with.

    Each option (``nuvom.options``) reads as an attribute: ``task.retries``,
    ``task.timeout_secs``, ``task.before_job``…
    """

    def __init__(self, func: Callable[P, R], *, name: str | None = None, **options: Any) -> None:
        if not callable(func):
            raise TaskDefinitionError(f"@task needs a function, not {func!r}")
        qualname = getattr(func, "__qualname__", "")
        outer = qualname.rpartition(".")[0]
        if outer and not outer.endswith("<locals>"):
            raise TaskDefinitionError(
                f"@task on {qualname}: a task is a module-level function (workers find it by "
                "module and name, with no instance to call it on), not a method"
            )
        values = check_task_options(options)
        check_task_limits(func, name or func.__name__, values)
        values["tags"] = list(values["tags"])
        if values["description"] is None:
            values["description"] = inspect.getdoc(func)
        self.func = func
        self.name = name or func.__name__
        self._options = values
        functools.update_wrapper(self, func)
        self.__dict__.update(values)  # plain attributes: __getattr__ is only the typed fallback

    def __getattr__(self, name: str) -> Any:
        options = self.__dict__.get("_options")
        if options is None or name not in options:
            raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")
        return options[name]

    def __repr__(self) -> str:
        return f"<Task {self.name}>"

    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> R:
        return self.func(*args, **kwargs)

    @functools.cached_property
    def is_async(self) -> bool:
        """Whether the task is an ``async def`` (read once: every run asks)."""
        return asyncio.iscoroutinefunction(self.func)

    def options(self) -> dict[str, Any]:
        """The literal options, as the CLI lists them."""
        return {name: self._options[name] for name in LISTED_OPTIONS}

    # -- enqueueing --------------------------------------------------------
    def _job(
        self,
        args: Sequence[Any],
        kwargs: dict[str, Any],
        *,
        due_at: float | None = None,
        queue: str | None = None,
        priority: int | None = None,
    ) -> Job:
        return Job(
            self.name,
            args=tuple(args),
            kwargs=kwargs,
            queue=queue or self.queue,
            priority=self.priority if priority is None else priority,
            due_at=due_at,
        )

    def _submit(self, jobs: Sequence[Job], on_conflict: str = "return") -> list[JobHandle]:
        from nuvom.queue import submit

        return submit(jobs, task_retries=self.retries, task=self, on_conflict=on_conflict)

    def delay(self, *args: P.args, **kwargs: P.kwargs) -> JobHandle:
        """Enqueue one call; returns its handle at once (``.get()`` waits for the result)."""
        return self._submit([self._job(args, kwargs)])[0]

    def map(self, calls: Iterable[Any]) -> list[JobHandle]:
        """Enqueue many calls in one transaction.

        Each item is a tuple/list of positional args, a dict of keyword args, or
        a single argument: ``add.map([(1, 2), (3, 4)])``.
        """
        jobs = []
        for item in calls:
            if isinstance(item, tuple | list):
                jobs.append(self._job(item, {}))
            elif isinstance(item, dict):
                jobs.append(self._job((), dict(item)))
            else:
                jobs.append(self._job((item,), {}))
        return self._submit(jobs)

    def s(self, *args: Any, **kwargs: Any) -> Signature:
        """A signature: this call, not yet sent, for a workflow (``nuvom.workflow``); it
        receives the previous step's result before ``args``."""
        from nuvom.workflow import Signature

        return Signature(self.name, tuple(args), dict(kwargs))

    def si(self, *args: Any, **kwargs: Any) -> Signature:
        """An immutable signature: it does not receive the previous step's result."""
        from nuvom.workflow import Signature

        return Signature(self.name, tuple(args), dict(kwargs), immutable=True)

    def apply_async(
        self,
        args: Sequence[Any] = (),
        kwargs: dict[str, Any] | None = None,
        *,
        at: dt.datetime | float | None = None,
        in_: dt.timedelta | float | None = None,
        queue: str | None = None,
        priority: int | None = None,
        unique_key: str | None = None,
        unique_for: float | None = None,
        on_conflict: str = "return",
    ) -> JobHandle:
        """Enqueue with routing and scheduling: run ``at`` a time or ``in_`` seconds from now.

        ``unique_key``: while a job of this key waits or runs (and ``unique_for`` seconds
        after it finished; default: the task's ``unique_for``, else 0), this call stores
        nothing and returns that job's handle, or raises ``DuplicateJob`` when
        ``on_conflict="raise"``.
        """
        from nuvom.queue import due_time

        job = self._job(
            args,
            dict(kwargs or {}),
            due_at=due_time(at=at, in_=in_),
            queue=queue,
            priority=priority,
        )
        if unique_key is not None or unique_for is not None:
            job.origin = {**(job.origin or {}), "unique": self._unique_entry(job, unique_key,
                                                                         unique_for)}  # fmt: skip
        return self._submit([job], on_conflict)[0]

    def _unique_entry(self, job: Job, key: str | None, keep: float | None) -> list[Any]:
        from nuvom.limits import unique_key_of
        from nuvom.runtime import current

        if key is None:
            if not self.unique:
                raise TaskDefinitionError(
                    f"task {self.name}: unique_for= needs unique_key= (or @task(unique=True))"
                )
            key = unique_key_of(self.name, job.args, job.kwargs, current().codec.dumps)
        if not isinstance(key, str) or not key:
            raise TaskDefinitionError(f"unique_key must be a non-empty string, not {key!r}")
        check_keep("unique_for", keep)
        return [key, float(keep if keep is not None else self.unique_for or 0.0)]

    @overload
    def schedule(
        self,
        *args: Any,
        interval: float | dt.timedelta,
        cron: None = None,
        timezone_name: str | None = None,
        timezone: str | None = None,
        overlap: str | None = None,
        catchup: str | None = None,
        max_catchup: int | None = None,
        **kwargs: Any,
    ) -> Schedule: ...

    @overload
    def schedule(
        self,
        *args: Any,
        cron: str,
        interval: None = None,
        timezone_name: str | None = None,
        timezone: str | None = None,
        overlap: str | None = None,
        catchup: str | None = None,
        max_catchup: int | None = None,
        **kwargs: Any,
    ) -> Schedule: ...

    @overload
    def schedule(
        self,
        *args: Any,
        at: dt.datetime | float | None = None,
        in_: dt.timedelta | float | None = None,
        interval: None = None,
        cron: None = None,
        **kwargs: Any,
    ) -> JobHandle: ...

    @overload
    def schedule(
        self,
        *args: Any,
        at: dt.datetime | float | None = None,
        in_: dt.timedelta | float | None = None,
        interval: float | dt.timedelta | None = None,
        cron: str | None = None,
        timezone_name: str | None = None,
        timezone: str | None = None,
        overlap: str | None = None,
        catchup: str | None = None,
        max_catchup: int | None = None,
        **kwargs: Any,
    ) -> JobHandle | Schedule: ...

    def schedule(
        self,
        *args: Any,
        at: dt.datetime | float | None = None,
        in_: dt.timedelta | float | None = None,
        interval: float | dt.timedelta | None = None,
        cron: str | None = None,
        timezone_name: str | None = None,
        timezone: str | None = None,
        overlap: str | None = None,
        catchup: str | None = None,
        max_catchup: int | None = None,
        **kwargs: Any,
    ) -> JobHandle | Schedule:
        """Run a call later, once or on a timetable; the other arguments are the task's.

        Once: ``report.schedule(7, in_=60)`` or ``at=datetime`` returns the job's handle.
        Recurring: ``add.schedule(2, 3, interval=300)`` (seconds or a timedelta, anchored
        now) or ``cron="*/5 * * * *"`` read in ``timezone_name=`` (``timezone=`` too;
        default the task's ``timezone``, else UTC) stores a ``Schedule`` every worker fires
        once per tick, and returns it (``nuvom schedules remove <id>`` ends it). ``overlap``,
        ``catchup`` and ``max_catchup`` default to the task's options. Each call makes a new
        schedule; a task argument named like one of these keywords goes through
        ``apply_async(args, kwargs)``.
        """
        timing = {"at": at, "in_": in_, "interval": interval, "cron": cron}
        given = [f"{name}=" for name, value in timing.items() if value is not None]
        if len(given) > 1:
            raise TaskDefinitionError(
                f"{self.name}.schedule(): give one of at=, in_=, interval=, cron=; "
                f"not {' and '.join(given)} together"
            )
        policies = {"timezone_name": timezone_name, "timezone": timezone, "overlap": overlap,
                    "catchup": catchup, "max_catchup": max_catchup}  # fmt: skip
        if interval is None and cron is None:
            stray = [name for name, value in policies.items() if value is not None]
            if stray:
                raise TaskDefinitionError(
                    f"{self.name}.schedule(): {stray[0]}= applies to recurring schedules "
                    "(interval= or cron=); a task argument of that name goes through "
                    "apply_async(args, kwargs)"
                )
            return self.apply_async(args, kwargs, at=at, in_=in_)
        if timezone_name is not None and timezone is not None and timezone_name != timezone:
            raise TaskDefinitionError(
                f"{self.name}.schedule(): timezone_name={timezone_name!r} and "
                f"timezone={timezone!r} disagree; give one"
            )
        return self._recur(
            args,
            kwargs,
            cron=cron,
            interval=interval.total_seconds() if isinstance(interval, dt.timedelta) else interval,
            timezone=timezone_name or timezone or self.timezone,
            overlap=overlap or self.overlap,
            catchup=catchup or self.catchup,
            max_catchup=self.max_catchup if max_catchup is None else max_catchup,
        )

    def _recur(
        self,
        args: Sequence[Any],
        kwargs: dict[str, Any],
        *,
        cron: str | None,
        interval: float | None,
        timezone: str,
        overlap: str,
        catchup: str,
        max_catchup: int,
    ) -> Schedule:
        """Store a recurring schedule of this call, its first tick the first after now."""
        from nuvom.records import JobPayloadCodec
        from nuvom.runtime import current
        from nuvom.scheduler import new_schedule

        runtime = current()
        schedule = new_schedule(
            self.name, args=args, kwargs=kwargs, cron=cron, interval=interval,
            timezone=timezone, overlap=overlap, catchup=catchup, max_catchup=max_catchup,
            queue=self.queue, priority=self.priority, now=runtime.clock.time(),
        )  # fmt: skip
        # Refuse arguments no job could carry now, not at every tick in a worker.
        JobPayloadCodec(runtime.codec).encode(self._job(args, kwargs))
        runtime.queue.save_schedule(schedule)
        return schedule


@overload
def task(func: Callable[P, R], /) -> Task[P, R]: ...


@overload
def task(
    *,
    name: str | None = None,
    registry: TaskRegistry | None = None,
    force: bool = False,
    silent: bool = False,
    **options: Any,
) -> Callable[[Callable[P, R]], Task[P, R]]: ...


def task(
    func: Callable[P, R] | None = None,
    /,
    *,
    registry: TaskRegistry | None = None,
    force: bool = False,
    silent: bool = False,
    **options: Any,
) -> Task[P, R] | Callable[[Callable[P, R]], Task[P, R]]:
    """Declare a task, bare (``@task``) or with options (``@task(retries=2)``).

    Registers it by name (the function's name unless ``name=``); a different
    function under a taken name is an error unless ``force`` or ``silent``.
    """

    check_task_options({k: v for k, v in options.items() if k != "name"})

    def decorate(fn: Callable[P, R]) -> Task[P, R]:
        made: Task[P, R] = Task(fn, **options)
        from nuvom.registry import get_registry

        # "is not None": an empty TaskRegistry is falsy (it has __len__).
        target = registry if registry is not None else get_registry()
        target.register(made, force=force, silent=silent)
        return made

    if func is not None:
        if options:
            raise TaskDefinitionError("use @task or @task(option=...), not both")
        return decorate(func)
    return decorate


class _CallableModule(types.ModuleType):
    """``import nuvom.task`` binds this module as the package's ``task`` attribute.

    Making the module call the decorator keeps ``from nuvom import task`` and
    ``@nuvom.task`` working whichever was imported first.
    """

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return task(*args, **kwargs)


sys.modules[__name__].__class__ = _CallableModule
