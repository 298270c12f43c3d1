"""Every error nuvom raises, under one root.

Each carries its context as attributes so the CLI can print one clear line and
callers can branch on type rather than on message text.
"""

from __future__ import annotations

from typing import Any


class NuvomError(Exception):
    """Root of every error nuvom raises on purpose."""


class ConfigError(NuvomError, ValueError):
    """A setting has a bad value or a name nuvom does not know."""

    def __init__(self, message: str, *, variable: str | None = None) -> None:
        super().__init__(message)
        self.variable = variable


class TaskDefinitionError(NuvomError, ValueError):
    """A ``@task`` was declared with an unknown option or a bad value."""


class InvalidJob(NuvomError, TypeError, ValueError):
    """A ``Job`` field holds a value no queue could store or run; ``field`` names it."""

    def __init__(self, message: str, *, field: str) -> None:
        super().__init__(message)
        self.field = field


class SerializationError(NuvomError, ValueError):
    """A value cannot be encoded, or bytes cannot be decoded, by the serializer."""

    def __init__(self, message: str, *, argument: str | None = None) -> None:
        super().__init__(message)
        self.argument = argument


class BackendError(NuvomError):
    """A queue or result backend failed to do what was asked."""

    def __init__(self, message: str, *, backend: str | None = None) -> None:
        super().__init__(message)
        self.backend = backend


class BackendUnavailable(BackendError):
    """The backend cannot be reached or stayed busy past its deadline."""


class CorruptJob(BackendError):
    """A stored job record cannot be decoded; it is quarantined, not run."""

    def __init__(self, message: str, *, job_id: str | None = None, backend: str | None = None):
        super().__init__(message, backend=backend)
        self.job_id = job_id


class TaskNotFound(NuvomError, LookupError):
    """No task of that name is registered or discoverable."""

    def __init__(self, name: str, *, hint: str = "") -> None:
        message = f"no task named {name!r} is registered"
        super().__init__(f"{message}; {hint}" if hint else message)
        self.name = name


class TaskImportError(NuvomError):
    """The module declaring a task failed to import: a syntax error, or an exception its
    top-level code raised. ``file`` and ``line`` say where (relative to the project's root
    when under it); the original exception is ``__cause__``."""

    def __init__(self, name: str, *, file: str, line: int | None, reason: str) -> None:
        where = f"{file} line {line}" if line is not None else file
        super().__init__(f"{where}: {reason}")
        self.name = name
        self.file = file
        self.line = line
        self.reason = reason


class DuplicateTaskError(NuvomError, ValueError):
    """Two different functions were registered under one task name."""

    def __init__(self, name: str, existing: str, new: str) -> None:
        super().__init__(
            f"task {name!r} is already registered by {existing}; {new} cannot take the name "
            "(pass force=True to replace it, or silent=True to keep the first)"
        )
        self.name = name


class JobNotFound(NuvomError, LookupError):
    """No job with that id is known to the result backend."""

    def __init__(self, job_id: str) -> None:
        super().__init__(f"no job with id {job_id!r}")
        self.job_id = job_id


class JobStateError(NuvomError):
    """The job is not in a state that allows the operation (e.g. retrying a running job)."""

    def __init__(self, message: str, *, job_id: str, status: str) -> None:
        super().__init__(message)
        self.job_id = job_id
        self.status = status


class SignatureMismatch(NuvomError, TypeError):
    """A call does not fit its task's parameters (checked before it is queued); ``task`` and
    ``parameter`` name where."""

    def __init__(self, task: str, problem: str, *, parameter: str | None = None) -> None:
        super().__init__(f"{task}() {problem}")
        self.task = task
        self.parameter = parameter


class DuplicateJob(NuvomError):
    """A unique job's key is held by another job (``on_conflict="raise"``); ``existing_id``
    is that job's id."""

    def __init__(self, key: str, existing_id: str) -> None:
        super().__init__(f"unique key {key!r} is held by job {existing_id}, which waits or runs")
        self.key = key
        self.existing_id = existing_id


class JobTimeout(NuvomError, TimeoutError):
    """A job ran past its ``timeout_secs``."""

    def __init__(self, job_id: str, timeout_secs: float) -> None:
        super().__init__(f"job {job_id} ran past its timeout of {timeout_secs:g}s")
        self.job_id = job_id
        self.timeout_secs = timeout_secs


class ResultTimeout(NuvomError, TimeoutError):
    """``job.get(timeout=...)`` gave up before the job finished."""

    def __init__(self, job_id: str, timeout: float, status: str | None) -> None:
        super().__init__(
            f"job {job_id} did not finish within {timeout:g}s (last status: {status or 'unknown'})"
        )
        self.job_id = job_id
        self.status = status


class JobFailed(NuvomError):
    """The job ended FAILED; raised by ``job.get()`` with the remote error's details."""

    def __init__(
        self,
        job_id: str,
        *,
        error_type: str | None,
        error_message: str | None,
        traceback: str | None = None,
    ) -> None:
        kind = error_type or "Error"
        super().__init__(f"job {job_id} failed: {kind}: {error_message or ''}".rstrip(": "))
        self.job_id = job_id
        self.error_type = error_type
        self.error_message = error_message
        self.traceback = traceback


class JobCancelled(NuvomError):
    """The job was cancelled before it could finish."""

    def __init__(self, job_id: str) -> None:
        super().__init__(f"job {job_id} was cancelled")
        self.job_id = job_id


class PluginError(NuvomError):
    """A plugin failed to load, start or keep its contract."""

    def __init__(self, message: str, *, spec: str | None = None, **context: Any) -> None:
        super().__init__(message)
        self.spec = spec
        self.context = context
