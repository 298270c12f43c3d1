"""Workflows: ``.then``, chains, groups and chords, kept as a graph in the store.

A workflow is compiled into jobs submitted in one transaction. A job that comes after
others names them in ``origin["after"]``: the store parks it and releases it in the
step that acks the last of them (``resolve`` in ``nuvom/backends/contract.py``), so a
member delivered twice counts once and no crash fires a callback twice or never. When
a member fails for good its dependents are cancelled with the reason, and an
``on_failure`` errback runs once with the failed member's id and error.

Results flow as data: a worker claiming a job that comes after others reads their
results and passes them first (``origin["feed"]``: ``one`` result, a ``list`` in member
order, ``none`` for an immutable signature, ``failure``: the failed id and error). The
workflow's id is the id of its last job (a group ends in a ``nuvom.collect`` job that
returns its members' results), so any process can follow it: ``get_workflow(id)``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, Union

from nuvom.errors import JobCancelled, JobFailed, NuvomError, TaskDefinitionError
from nuvom.handle import JobHandle
from nuvom.job import Job, JobStatus, new_job_id

if TYPE_CHECKING:
    from nuvom.backends.contract import BaseResultBackend
    from nuvom.records import JobRecord, Outcome
    from nuvom.task import Task

__all__ = [
    "Chain",
    "Chord",
    "Group",
    "Signature",
    "WorkflowHandle",
    "chain",
    "chord",
    "get_workflow",
    "group",
    "signature",
]

log = logging.getLogger("nuvom.workflow")

COLLECT = "nuvom.collect"  # the last job of a group: returns its members' results, in order
FEEDS = ("one", "list", "none", "failure")


class WorkflowError(TaskDefinitionError):
    """A workflow that cannot be built: a bad member, a body that is not a signature."""


# -- what a workflow is made of --------------------------------------------------------
@dataclass(frozen=True)
class Signature:
    """A task call not yet sent: ``add.s(1, 2)``; ``add.si(1, 2)`` is immutable (it does
    not receive the previous step's result)."""

    task: str
    args: tuple[Any, ...] = ()
    kwargs: dict[str, Any] = field(default_factory=dict)
    immutable: bool = False
    queue: str | None = None
    priority: int | None = None

    def delay(self) -> WorkflowHandle:
        return chain(self).delay()

    def __or__(self, other: Node) -> Chain:
        return chain(self, other)


@dataclass(frozen=True)
class Chain:
    """Steps one after another, each fed the previous one's result."""

    steps: tuple[Node, ...]
    on_failure: Signature | None = None

    def delay(self) -> WorkflowHandle:
        return _submit(self, self.on_failure)

    def __or__(self, other: Node) -> Chain:
        return chain(self, other, on_failure=self.on_failure)


@dataclass(frozen=True)
class Group:
    """Members that run side by side; what follows gets their results as a list, in order."""

    members: tuple[Node, ...]

    def delay(self) -> WorkflowHandle:
        return _submit(self, None)

    def __or__(self, other: Node) -> Chain:
        return chain(self, other)


@dataclass(frozen=True)
class Chord:
    """A group and a body that runs once, after all of them, with their results."""

    header: Group
    body: Node
    on_failure: Signature | None = None

    def delay(self) -> WorkflowHandle:
        return _submit(chain(self.header, self.body), self.on_failure)


Node = Union[Signature, Chain, Group, Chord]  # noqa: UP007 - a runtime alias, read by isinstance


def signature(task: str | Task[Any, Any], *args: Any, **kwargs: Any) -> Signature:
    """A signature by task name (from a service that cannot import the task) or task."""
    if isinstance(task, str):
        return Signature(task, tuple(args), dict(kwargs))
    return task.s(*args, **kwargs)


def chain(*steps: Node, on_failure: Signature | None = None) -> Chain:
    """``chain(add.s(1, 2), add.s(10))``: each step gets the previous step's result first."""
    _check_members(steps, "chain")
    _check_errback(on_failure)
    return Chain(tuple(steps), on_failure)


def group(*members: Node | Iterable[Node]) -> Group:
    """``group(add.s(i, i) for i in range(10))`` or ``group(a.s(), b.s())``."""
    flat: list[object] = []
    for member in members:
        given: object = member
        if isinstance(given, Signature | Chain | Group | Chord | str | bytes):
            flat.append(given)
        elif isinstance(given, Iterable):
            flat.extend(given)
        else:
            flat.append(given)
    _check_members(flat, "group")
    return Group(tuple(flat))  # type: ignore[arg-type]  # checked just above


def chord(
    header: Group | Iterable[Node], body: Node, *, on_failure: Signature | None = None
) -> Chord:
    """``chord([add.s(i, i) for i in range(100)], total.s())``: ``body`` runs once, after all."""
    members = header if isinstance(header, Group) else group(header)
    if not isinstance(body, Signature | Chain | Group | Chord):
        raise WorkflowError(f"a chord's body must be a signature (task.s(...)), not {body!r}")
    _check_errback(on_failure)
    return Chord(members, body, on_failure)


def _check_members(members: Sequence[object], kind: str) -> None:
    for i, member in enumerate(members):
        if not isinstance(member, Signature | Chain | Group | Chord):
            raise WorkflowError(
                f"{kind} member {i} must be a signature (task.s(...)) or a workflow, not {member!r}"
            )


def _check_errback(on_failure: object) -> None:
    if on_failure is not None and not isinstance(on_failure, Signature):
        raise WorkflowError(f"on_failure must be a signature (task.s(...)), not {on_failure!r}")


# -- compiling to jobs -----------------------------------------------------------------
@dataclass
class _Build:
    workflow: str
    jobs: list[Job] = field(default_factory=list)
    feeders: set[str] = field(default_factory=set)  # jobs whose result another job reads

    def add(self, sig: Signature, after: list[str], feed: str | None) -> str:
        job = _job_of(sig)
        origin: dict[str, Any] = {"workflow": self.workflow}
        if feed is not None:
            origin["after"] = list(after)
            origin["feed"] = "none" if sig.immutable else feed
            if origin["feed"] != "none":
                self.feeders.update(after)
        job.origin = origin
        self.jobs.append(job)
        return job.id


def _compile(
    node: Node, after: list[str], feed: str | None, build: _Build
) -> tuple[list[str], str]:
    """Add the jobs of ``node``, which runs after ``after`` fed as ``feed`` (None: first);
    return its last jobs and how what follows is fed from them (``one`` or ``list``)."""
    if isinstance(node, Signature):
        return [build.add(node, after, feed)], "one"
    if isinstance(node, Chord):
        node = chain(node.header, node.body)
    if isinstance(node, Chain):
        if not node.steps:
            return after, feed or "one"
        for step in node.steps:
            after, kind = _compile(step, after, feed, build)
            feed = kind
        return after, kind
    tails: list[str] = []
    for member in node.members:  # a group: side by side, each after the same jobs
        member_tails, _ = _compile(member, after, feed, build)
        tails += member_tails
    return tails, "list"


def compile_workflow(node: Node, on_failure: Signature | None = None) -> tuple[str, list[Job]]:
    """The workflow's id and its jobs, dependencies first."""
    build = _Build(workflow="")
    tails, kind = _compile(node, [], None, build)
    if kind == "list" or len(tails) != 1 or not build.jobs:
        tails = [build.add(Signature(COLLECT), tails, "list")]
    workflow_id = tails[0]
    last = build.jobs[-1]
    assert last.id == workflow_id
    members = [job.id for job in build.jobs]
    if on_failure is not None:
        errback = build.add(on_failure, members, "failure")
        assert last.origin is not None
        last.origin["errback"] = errback
    for job in build.jobs:
        assert job.origin is not None
        job.origin["workflow"] = workflow_id
        if job.id in build.feeders:
            job.store_result = True  # what a later job is fed must be kept
    return workflow_id, build.jobs


def _job_of(sig: Signature) -> Job:
    from nuvom.runtime import current

    if sig.task == COLLECT:
        return Job(COLLECT, id=new_job_id())
    task = current().registry.find(sig.task)
    if task is None:
        _check_known(sig.task)
        return Job(sig.task, args=sig.args, kwargs=dict(sig.kwargs), id=new_job_id(),
                   queue=sig.queue or "default", priority=sig.priority or 0)  # fmt: skip
    job = task._job(sig.args, dict(sig.kwargs), queue=sig.queue, priority=sig.priority)
    job.id = new_job_id()
    return job


def _check_known(name: str) -> None:
    """A task not imported here must at least be declared in the project's source."""
    from nuvom.discovery.manifest import load_manifest
    from nuvom.runtime import current

    try:
        manifest = load_manifest(current().settings.manifest_path, files=False)
    except Exception:  # no manifest to check against: the worker reports a missing task
        return
    if manifest is not None and manifest.find(name) is None:
        raise WorkflowError(f"signature of an unregistered task {name!r}: no @task declares it")


def _submit(node: Node, on_failure: Signature | None) -> WorkflowHandle:
    from nuvom.queue import submit

    workflow_id, jobs = compile_workflow(node, on_failure)
    handles = {handle.id: handle for handle in submit(jobs)}
    last = handles[workflow_id]
    return WorkflowHandle(last.job, last._results)


def then(
    first: JobHandle, task: Task[Any, Any] | Signature, args: Sequence[Any],
    kwargs: dict[str, Any], on_failure: Signature | None = None,
) -> WorkflowHandle:  # fmt: skip
    """``first.then(add, 10)``: ``add(<first's result>, 10)`` once ``first`` succeeded."""
    from nuvom.queue import submit

    sig = task if isinstance(task, Signature) else task.s(*args, **kwargs)
    build = _Build(workflow="")
    build.add(sig, [first.id], "one")
    job = build.jobs[0]
    assert job.origin is not None
    job.origin["workflow"] = job.id
    if on_failure is not None:
        errback_id = build.add(on_failure, [first.id, job.id], "failure")
        job.origin["errback"] = errback_id
        build.jobs[1].origin["workflow"] = job.id  # type: ignore[index]
    handles = submit(build.jobs)
    return WorkflowHandle(handles[0].job, handles[0]._results)


# -- running: what a worker passes a job that comes after others -----------------------
def feed(job: Job, results: BaseResultBackend) -> Job:
    """``job`` with the results it is fed put before its own arguments (a copy)."""
    origin = job.origin or {}
    how = origin.get("feed")
    if how is None or how == "none":
        return job
    after = list(origin.get("after", ()))
    if how == "one":
        given: tuple[Any, ...] = (_result(results, after[0]),) if after else (None,)
    elif how == "list":
        given = ([_result(results, dep) for dep in after],)
    elif how == "failure":
        given = _failure(results, after)
    else:
        raise NuvomError(f"job {job.id}: unknown workflow feed {how!r}")
    return replace(job, args=(*given, *job.args))


def _result(results: BaseResultBackend, job_id: str) -> Any:
    record = results.get_full(job_id)
    if record is None or record.status is not JobStatus.SUCCESS:
        state = "unknown" if record is None else record.status.value
        raise NuvomError(f"the result of job {job_id} it comes after is not there ({state})")
    return record.result


def _failure(results: BaseResultBackend, after: Sequence[str]) -> tuple[str, str]:
    """The first member that failed (not one cancelled because of it), and its error."""
    first: tuple[str, str] | None = None
    for dep in after:
        record = results.get_full(dep)
        if record is None or record.status not in (JobStatus.FAILED, JobStatus.CANCELLED):
            continue
        error = f"{record.error_type or 'Error'}: {record.error_message or ''}".rstrip(": ")
        if record.status is JobStatus.FAILED:
            return dep, error
        first = first or (dep, error)
    return first or ("", "unknown failure")


def collect(results: list[Any]) -> list[Any]:
    """The last job of a group: its members' results, in member order."""
    return results


def collect_task() -> Task[Any, Any]:
    from nuvom.task import Task

    global _collect
    if _collect is None:
        _collect = Task(collect, name=COLLECT, store_result=True)
    return _collect


_collect: Task[Any, Any] | None = None


# -- following one -----------------------------------------------------------------------
class WorkflowHandle(JobHandle):
    """A workflow, through its last job: ``get()`` waits for it; a member that failed for
    good raises its ``JobFailed`` (not the ``JobCancelled`` of what came after it)."""

    __slots__ = ()

    def __repr__(self) -> str:
        return f"<WorkflowHandle {self.job.id} {self.job.func_name}>"

    def get(self, timeout: float | None = None, *, poll_secs: float = 0.05) -> Any:
        try:
            return super().get(timeout, poll_secs=poll_secs)
        except JobCancelled:
            failed = self.failed_member()
            if failed is None:
                raise
            raise JobFailed(
                failed.id, error_type=failed.error_type, error_message=failed.error_message,
                traceback=failed.traceback,
            ) from None  # fmt: skip

    def records(self) -> list[JobRecord]:
        """Every member's record, the last job first, then back along the graph."""
        return walk(self.job.id, self._results)

    def failed_member(self) -> JobRecord | None:
        """The member that failed for good, if one did."""
        failed = [r for r in self.records() if r.status is JobStatus.FAILED]
        return min(failed, key=lambda r: r.finished_at or 0.0) if failed else None


def walk(workflow_id: str, results: BaseResultBackend) -> list[JobRecord]:
    """The records of a workflow: its last job, then what it waits for, breadth first,
    and its errback last (each once)."""
    seen: dict[str, JobRecord] = {}
    queue = [workflow_id]
    errback: str | None = None
    while queue:
        job_id = queue.pop(0)
        if job_id in seen:
            continue
        record = results.get_full(job_id)
        if record is None:
            continue
        seen[job_id] = record
        origin = record.origin or {}
        if job_id == workflow_id:
            errback = origin.get("errback")
        queue += [dep for dep in origin.get("after", ()) if dep not in seen]
    if errback and errback not in seen:
        record = results.get_full(errback)
        if record is not None:
            seen[errback] = record
    return list(seen.values())


def get_workflow(workflow_id: str) -> WorkflowHandle:
    """The workflow whose last job is ``workflow_id``, from any process that reaches the
    store; raises ``JobNotFound``."""
    from nuvom.errors import JobNotFound
    from nuvom.runtime import current

    results = current().results
    record = results.get_full(workflow_id)
    if record is None:
        raise JobNotFound(workflow_id)
    job = Job(record.func_name or "?", args=tuple(record.args), kwargs=record.kwargs,
              id=workflow_id, origin=record.origin)  # fmt: skip
    return WorkflowHandle(job, results)


def cancel_workflow(workflow_id: str) -> list[str]:
    """Cancel every member still waiting (parked ones included); returns their ids."""
    from nuvom.runtime import current

    runtime = current()
    cancelled = []
    for record in walk(workflow_id, runtime.results):
        if record.status.is_final or record.status is JobStatus.RUNNING:
            continue
        if runtime.queue.cancel_job(record.id, runtime.results):
            cancelled.append(record.id)
    return cancelled


def ready_jobs(
    jobs: Sequence[Job], results: BaseResultBackend, *, worker_id: str, now: float | None = None
) -> tuple[list[Job], list[Outcome]]:
    """Claimed jobs fed their inputs, and the outcomes of those that could not be (their
    inputs are gone): those fail alone, with the reason."""
    from nuvom.execution import policies
    from nuvom.records import ErrorInfo

    ready: list[Job] = []
    failed: list[Outcome] = []
    for job in jobs:
        if not job.origin or "feed" not in job.origin:
            ready.append(job)
            continue
        try:
            ready.append(feed(job, results))
        except Exception as exc:
            log.error("job %s cannot be given its inputs: %s", job.id, exc)
            error = ErrorInfo("WorkflowInputMissing", str(exc))
            at = time.time() if now is None else now
            failed.append(policies.failed(job, error, started=at, now=at, worker_id=worker_id))
    return ready, failed
