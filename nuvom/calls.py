"""What a producer knows of a job's task before the job is queued, and what it does with it.

``submit`` (``nuvom/queue.py``) asks ``Known`` about each job's task — the imported
``Task`` when this process registered it, else the manifest's declaration (read from
source by ``ast``: no import) — and then, in ``prepare``:

- checks the call against the task's parameters (``SignatureMismatch`` at once, not a
  ``TypeError`` in a worker hours later);
- gives the job its flow control (``nuvom.limits``: rate, concurrency, unique key);
- stamps the task's version on it (``origin["version"]``, absent for version 1).

A task neither imported nor declared goes through unchecked, as before.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from nuvom.errors import SignatureMismatch
from nuvom.limits import flow_origin

if TYPE_CHECKING:
    from nuvom.job import Job
    from nuvom.runtime import Runtime
    from nuvom.task import Task

#: The options ``prepare`` reads to give a job its limits (``nuvom.limits``).
FLOW_OPTIONS = ("rate_limit", "concurrency", "concurrency_key", "unique", "unique_for")
#: Arguments a workflow's worker puts before a member's own (``nuvom.workflow.feed``).
FED = {"one": 1, "list": 1, "failure": 2}
_UNIQUE = ("unique", "unique_for")


@dataclass(frozen=True, slots=True)
class TaskFacts:
    """One task as a producer knows it: flow options set, version, and its call shape —
    the function (imported) or the manifest's parameters (declared); neither if unknown."""

    options: Mapping[str, Any] = field(default_factory=dict)
    version: int = 1
    func: Callable[..., Any] | None = None
    params: list[dict[str, Any]] | None = None
    signature: inspect.Signature | None = None
    #: A quick "this call surely fits" for plain signatures (``quick_fit``); None: bind.
    fits: Callable[[tuple[Any, ...], Mapping[str, Any]], bool] | None = None


UNKNOWN = TaskFacts()


def facts_of_task(task: Task[Any, Any]) -> TaskFacts:
    """What an imported task says, its ``inspect.Signature`` read once (kept on the task)."""
    cached: TaskFacts | None = task.__dict__.get("_facts")
    if cached is not None:
        return cached
    options = {k: getattr(task, k) for k in FLOW_OPTIONS}
    try:
        signature: inspect.Signature | None = inspect.signature(task.func)
    except (TypeError, ValueError):  # a builtin or C function: nothing to bind against
        signature = None
    facts = TaskFacts({k: v for k, v in options.items() if v}, int(task.version), task.func,
                      signature=signature, fits=quick_fit(signature))  # fmt: skip
    task.__dict__["_facts"] = facts
    return facts


class Known:
    """Each task's facts, looked up once per name for one submit (or one tick's job)."""

    def __init__(self, runtime: Runtime, task: Task[Any, Any] | None = None) -> None:
        self.runtime = runtime
        self.task = task
        self.found: dict[str, TaskFacts] = {}

    def of(self, name: str) -> TaskFacts:
        found = self.found.get(name)
        if found is None:
            found = self.found[name] = self._read(name)
        return found

    def _read(self, name: str) -> TaskFacts:
        task = self.task if self.task is not None and self.task.name == name else None
        if task is None:
            task = self.runtime.registry.find(name)
        if task is not None:
            return facts_of_task(task)
        return declared(self.runtime, name)


def prepare(job: Job, facts: TaskFacts, dumps: Callable[[Any], bytes], *,
            unique: bool = True) -> None:  # fmt: skip
    """Check ``job``'s call against its task and give it its limits and version (in place).

    ``unique=False``: no unique key (a tick is unique already). A workflow member is
    checked with the arguments it will be fed, and is never deduplicated (its id is its
    graph's).
    """
    origin = job.origin
    member = origin is not None and "workflow" in origin
    fed = FED.get(origin.get("feed", ""), 0) if member and origin is not None else 0
    if facts.signature is not None or facts.params is not None:
        check_call(job.func_name, facts, (*([None] * fed), *job.args), job.kwargs)
    options = facts.options
    if options:
        if not unique or member:
            options = {k: v for k, v in options.items() if k not in _UNIQUE}
        job.origin = flow_origin(
            job.origin, func_name=job.func_name, options=options, func=facts.func,
            args=job.args, kwargs=job.kwargs, dumps=dumps,
        )  # fmt: skip
    if facts.version != 1 and not (job.origin and "version" in job.origin):
        job.origin = {**(job.origin or {}), "version": facts.version}


def quick_fit(
    signature: inspect.Signature | None,
) -> Callable[[tuple[Any, ...], Mapping[str, Any]], bool] | None:
    """For a signature of positional-or-keyword and keyword-only parameters (``*args`` and
    ``**kwargs`` too), a check that answers True only for a call that binds; False sends
    the call to ``Signature.bind``, which says why it does not (or that it does). Most calls
    take the quick way: ``bind`` costs microseconds a job."""
    if signature is None:
        return None
    P = inspect.Parameter
    params = list(signature.parameters.values())
    if any(p.kind is P.POSITIONAL_ONLY for p in params):
        return None
    positional = [p.name for p in params if p.kind is P.POSITIONAL_OR_KEYWORD]
    required = sum(1 for p in params if p.kind is P.POSITIONAL_OR_KEYWORD and p.default is P.empty)
    index = {name: i for i, name in enumerate(positional)}
    keyword_only = {p.name for p in params if p.kind is P.KEYWORD_ONLY}
    needed = {p.name for p in params if p.kind is P.KEYWORD_ONLY and p.default is P.empty}
    varargs = any(p.kind is P.VAR_POSITIONAL for p in params)
    varkw = any(p.kind is P.VAR_KEYWORD for p in params)
    most = len(positional)

    def fits(args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> bool:
        given = len(args)
        if given > most and not varargs:
            return False
        if not kwargs:
            return given >= required and not needed
        for key in kwargs:
            at = index.get(key)
            if at is not None:
                if at < given:
                    return False  # given twice
            elif key not in keyword_only and not varkw:
                return False
        return all(i < given or name in kwargs for name, i in index.items() if i < required) and (
            needed.issubset(kwargs)
        )

    return fits


def check_call(name: str, facts: TaskFacts, args: tuple[Any, ...],
               kwargs: Mapping[str, Any]) -> None:  # fmt: skip
    """Raise ``SignatureMismatch`` when ``name(*args, **kwargs)`` does not fit the task."""
    if facts.fits is not None and facts.fits(args, kwargs):
        return
    if facts.signature is not None:
        try:
            facts.signature.bind(*args, **kwargs)
        except TypeError as exc:
            from nuvom.discovery.signatures import named_parameter

            raise SignatureMismatch(name, str(exc), parameter=named_parameter(str(exc))) from None
    elif facts.params is not None:
        from nuvom.discovery.signatures import bind

        bind(name, facts.params, args, kwargs)


def declared(runtime: Runtime, name: str) -> TaskFacts:
    """The facts the manifest read from task ``name``'s source (``UNKNOWN`` when it has none):
    a producer that cannot import a task still checks its calls and gives them limits."""
    from nuvom.discovery.manifest import load_manifest

    path = runtime.settings.manifest_path
    try:
        stamp = path.stat().st_mtime_ns
    except (OSError, AttributeError):
        return UNKNOWN
    cached = runtime.shared(("declared-tasks", str(path)), _Declared)
    if cached.stamp != stamp:
        try:
            manifest = load_manifest(path, files=False)
        except Exception:  # an unreadable manifest: the worker reports what it cannot find
            manifest = None
        cached.stamp = stamp
        cached.tasks = {} if manifest is None else {
            entry.name: TaskFacts(
                {k: entry.options[k] for k in FLOW_OPTIONS if entry.options.get(k)},
                entry.version, params=entry.params,
            )
            for entry in manifest.tasks
        }  # fmt: skip
    return cached.tasks.get(name, UNKNOWN)


class _Declared:
    """Each declared task's facts, as of the manifest's ``stamp``."""

    def __init__(self) -> None:
        self.stamp: int | None = None
        self.tasks: dict[str, TaskFacts] = {}

    def close(self) -> None:
        """Nothing to release (``Runtime.shared`` closes what it keeps)."""


def tick_preparer(runtime: Runtime) -> Callable[[Job], None]:
    """What gives a scheduler's tick jobs their task's limits and version, read afresh for
    each job (a declared task's options change with its source); no unique key."""

    def apply(job: Job) -> None:
        prepare(job, Known(runtime).of(job.func_name), runtime.codec.dumps, unique=False)

    return apply
