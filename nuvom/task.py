"""``@task``: turn a function into a task that can be run later by a worker.

The decorated function stays directly callable. ``.delay()`` and ``.map()``
enqueue jobs; argument types carry through (ParamSpec), so mypy checks them.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import difflib
import functools
import inspect
import sys
import types
from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING, Any, Generic, ParamSpec, TypeVar, overload

from nuvom.errors import TaskDefinitionError
from nuvom.job import DEFAULT_QUEUE, Job

if TYPE_CHECKING:
    from nuvom.registry import TaskRegistry

P = ParamSpec("P")
R = TypeVar("R")

TIMEOUT_POLICIES = ("fail", "retry", "ignore")

BeforeHook = Callable[[Job], Any]
AfterHook = Callable[[Job, Any], Any]
ErrorHook = Callable[[Job, BaseException], Any]


def _check_number(option: str, value: float | None, *, minimum: float, strict: bool) -> None:
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TaskDefinitionError(f"task option {option} must be a number, not {value!r}")
    if value < minimum or (strict and value == minimum):
        bound = f"> {minimum:g}" if strict else f">= {minimum:g}"
        raise TaskDefinitionError(f"task option {option} must be {bound}, not {value!r}")


def _check_hook(option: str, hook: object) -> None:
    if hook is not None and not callable(hook):
        raise TaskDefinitionError(f"task option {option} must be callable, not {hook!r}")


class Task(Generic[P, R]):
    """A registered function plus the options its jobs run with."""

    def __init__(
        self,
        func: Callable[P, R],
        *,
        name: str | None = None,
        retries: int = 0,
        retry_delay_secs: float | None = None,
        retry_backoff: bool = False,
        timeout_secs: float | None = None,
        timeout_policy: str | None = None,
        store_result: bool = True,
        tags: Sequence[str] = (),
        description: str | None = None,
        queue: str = DEFAULT_QUEUE,
        priority: int = 0,
        before_job: BeforeHook | None = None,
        after_job: AfterHook | None = None,
        on_error: ErrorHook | None = None,
    ) -> None:
        if not callable(func):
            raise TaskDefinitionError(f"@task needs a function, not {func!r}")
        if isinstance(retries, bool) or not isinstance(retries, int) or retries < 0:
            raise TaskDefinitionError(f"task option retries must be an int >= 0, not {retries!r}")
        _check_number("retry_delay_secs", retry_delay_secs, minimum=0, strict=False)
        _check_number("timeout_secs", timeout_secs, minimum=0, strict=True)
        if timeout_policy is not None and timeout_policy not in TIMEOUT_POLICIES:
            raise TaskDefinitionError(
                f"task option timeout_policy must be one of {', '.join(TIMEOUT_POLICIES)}, "
                f"not {timeout_policy!r}"
            )
        if isinstance(priority, bool) or not isinstance(priority, int):
            raise TaskDefinitionError(f"task option priority must be an int, not {priority!r}")
        if not isinstance(queue, str) or not queue:
            raise TaskDefinitionError(
                f"task option queue must be a non-empty string, not {queue!r}"
            )
        if isinstance(tags, str):
            raise TaskDefinitionError("task option tags must be a list of strings, not one string")
        for option, hook in (
            ("before_job", before_job),
            ("after_job", after_job),
            ("on_error", on_error),
        ):
            _check_hook(option, hook)
        self.func = func
        self.name = name or func.__name__
        self.retries = retries
        self.retry_delay_secs = retry_delay_secs
        self.retry_backoff = retry_backoff
        self.timeout_secs = timeout_secs
        self.timeout_policy = timeout_policy
        self.store_result = store_result
        self.tags = list(tags)
        self.description = description if description is not None else inspect.getdoc(func)
        self.queue = queue
        self.priority = priority
        self.before_job = before_job
        self.after_job = after_job
        self.on_error = on_error
        functools.update_wrapper(self, func)

    def __repr__(self) -> str:
        return f"<Task {self.name}>"

    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> R:
        return self.func(*args, **kwargs)

    @property
    def is_async(self) -> bool:
        return asyncio.iscoroutinefunction(self.func)

    def options(self) -> dict[str, Any]:
        """The literal options, as the CLI lists them."""
        return {
            "retries": self.retries,
            "retry_delay_secs": self.retry_delay_secs,
            "retry_backoff": self.retry_backoff,
            "timeout_secs": self.timeout_secs,
            "timeout_policy": self.timeout_policy,
            "store_result": self.store_result,
            "queue": self.queue,
            "priority": self.priority,
            "tags": self.tags,
        }

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
        job = Job(
            self.name,
            args=tuple(args),
            kwargs=kwargs,
            queue=queue or self.queue,
            priority=self.priority if priority is None else priority,
            due_at=due_at,
        )
        job._task_retries = self.retries
        return job

    def delay(self, *args: P.args, **kwargs: P.kwargs) -> Job:
        """Enqueue one call; returns its ``Job`` at once (``job.get()`` waits for the result)."""
        from nuvom.queue import submit

        return submit([self._job(args, kwargs)])[0]

    def map(self, calls: Iterable[Any]) -> list[Job]:
        """Enqueue many calls in one transaction.

        Each item is a tuple/list of positional args, a dict of keyword args, or
        a single argument: ``add.map([(1, 2), (3, 4)])``.
        """
        from nuvom.queue import submit

        jobs = []
        for item in calls:
            if isinstance(item, tuple | list):
                jobs.append(self._job(item, {}))
            elif isinstance(item, dict):
                jobs.append(self._job((), dict(item)))
            else:
                jobs.append(self._job((item,), {}))
        return submit(jobs)

    def apply_async(
        self,
        args: Sequence[Any] = (),
        kwargs: dict[str, Any] | None = None,
        *,
        at: dt.datetime | float | None = None,
        in_: dt.timedelta | float | None = None,
        queue: str | None = None,
        priority: int | None = None,
    ) -> Job:
        """Enqueue with routing and scheduling: run ``at`` a time or ``in_`` seconds from now."""
        from nuvom.queue import due_time, submit

        job = self._job(
            args,
            dict(kwargs or {}),
            due_at=due_time(at=at, in_=in_),
            queue=queue,
            priority=priority,
        )
        return submit([job])[0]

    def schedule(
        self,
        *args: Any,
        at: dt.datetime | float | None = None,
        in_: dt.timedelta | float | None = None,
        **kwargs: Any,
    ) -> Job:
        """Enqueue one call to run later: ``report.schedule(7, in_=60)``."""
        return self.apply_async(args, kwargs, at=at, in_=in_)


TASK_OPTIONS = tuple(
    p for p in inspect.signature(Task.__init__).parameters if p not in ("self", "func")
)


@overload
def task(func: Callable[P, R], /) -> Task[P, R]: ...


@overload
def task(
    *,
    name: str | None = None,
    retries: int = 0,
    retry_delay_secs: float | None = None,
    retry_backoff: bool = False,
    timeout_secs: float | None = None,
    timeout_policy: str | None = None,
    store_result: bool = True,
    tags: Sequence[str] = (),
    description: str | None = None,
    queue: str = DEFAULT_QUEUE,
    priority: int = 0,
    before_job: BeforeHook | None = None,
    after_job: AfterHook | None = None,
    on_error: ErrorHook | None = None,
    registry: TaskRegistry | None = None,
    force: bool = False,
    silent: bool = False,
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

    unknown = sorted(set(options) - set(TASK_OPTIONS))
    if unknown:
        close = difflib.get_close_matches(unknown[0], TASK_OPTIONS, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise TaskDefinitionError(f"unknown task option {unknown[0]!r}{hint}")

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
