"""Register plugin backends under a name, so ``NUVOM_QUEUE_BACKEND=<name>`` builds them.

Names go into ``nuvom.backends.names``, the table the built-in engines are in, so
workers and producers alike find them. A result backend class with only the four
methods the 0.9 README documents, and no base class, is wrapped in ``PlainResults``.
"""

from __future__ import annotations

import inspect
import logging
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from nuvom.backends.contract import BaseJobQueue, BaseResultBackend
from nuvom.backends.names import NAMES
from nuvom.errors import PluginError
from nuvom.records import ErrorInfo

if TYPE_CHECKING:
    from nuvom.runtime import Runtime

log = logging.getLogger("nuvom.plugins")

#: Keyword arguments a backend class is given, when its ``__init__`` accepts them.
INJECTED = ("settings", "clock", "codec", "runtime")

#: What a result backend needs when it does not subclass ``BaseResultBackend``.
RESULT_METHODS = ("set_result", "get_result", "set_error", "get_error")

_capture = threading.local()


@runtime_checkable
class PlainResultBackend(Protocol):
    """A result backend by shape: the four methods of the 0.9 README, no base class."""

    def set_result(self, job_id: str, result: Any, /) -> None: ...

    def get_result(self, job_id: str, /) -> Any: ...

    def set_error(self, job_id: str, error: Any, /) -> None: ...

    def get_error(self, job_id: str, /) -> Any: ...


class JobError(Exception):
    """The failure a plain backend's ``set_error`` is given: an exception, as 0.9 documented,
    whose ``str()`` is the ``"Type: message"`` its ``get_error`` should give back."""

    def __init__(self, type_name: str, message: str, traceback: str | None = None) -> None:
        super().__init__(f"{type_name}: {message}")
        self.type, self.message, self.traceback = type_name, message, traceback

    def __reduce__(self) -> tuple[type[JobError], tuple[str, str, str | None]]:
        return JobError, (self.type, self.message, self.traceback)


class PlainResults(BaseResultBackend):
    """A ``PlainResultBackend`` as a ``BaseResultBackend``: the four methods pass through,
    everything else is ``BaseResultBackend``'s defaults built on them."""

    def __init__(self, store: PlainResultBackend, name: str) -> None:
        self.store = store
        self.name = name

    def set_result(self, job_id: str, result: Any) -> None:
        self.store.set_result(job_id, result)

    def get_result(self, job_id: str) -> Any:
        return self.store.get_result(job_id)

    def set_error(self, job_id: str, error: ErrorInfo | BaseException | str) -> None:
        info = self.describe_error(error)
        self.store.set_error(job_id, JobError(info.type, info.message, info.traceback))

    def get_error(self, job_id: str) -> str | None:
        error = self.store.get_error(job_id)
        return None if error is None else str(error)

    def close(self) -> None:
        close = getattr(self.store, "close", None)
        if callable(close):
            close()


def _missing_result_methods(cls: type) -> list[str]:
    return [method for method in RESULT_METHODS if not callable(getattr(cls, method, None))]


def _factory(kind: str, name: str, backend: Any) -> Callable[[Runtime], Any]:
    base = BaseJobQueue if kind == "queue" else BaseResultBackend
    if inspect.isclass(backend):
        if issubclass(backend, base):
            return _ClassFactory(backend, name)
        missing = _missing_result_methods(backend) if kind == "result" else []
        if kind == "result" and not missing:
            return _PlainFactory(name, _ClassFactory(backend, name))
        what = f" and has no {', '.join(f'{m}()' for m in missing)}" if missing else ""
        also = f", or have {', '.join(RESULT_METHODS)}" if kind == "result" else ""
        raise PluginError(
            f"{kind} backend {name!r}: {backend.__name__} does not subclass "
            f"{base.__module__}.{base.__name__}{what} (a {kind} backend must subclass it{also})"
        )
    if callable(backend):
        return _CheckedFactory(kind, name, backend, base)
    raise PluginError(f"{kind} backend {name!r}: expected a backend class or a factory")


def _named(backend: Any, name: str) -> Any:
    """Give a result backend left at the default name the one it was registered under,
    so logs and errors say which backend it is."""
    if isinstance(backend, BaseResultBackend) and backend.name == BaseResultBackend.name:
        backend.name = name
    return backend


class _ClassFactory:
    """Build a backend class with the keywords its ``__init__`` accepts among ``INJECTED``."""

    def __init__(self, cls: type, name: str) -> None:
        self.cls = cls
        self.name = name
        params = inspect.signature(cls).parameters
        takes_any = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())
        self.keywords = [k for k in INJECTED if (takes_any and k != "runtime") or k in params]

    def __call__(self, runtime: Runtime) -> Any:
        values = {
            "settings": runtime.settings,
            "clock": runtime.clock,
            "codec": runtime.codec,
            "runtime": runtime,
        }
        return _named(self.cls(**{k: values[k] for k in self.keywords}), self.name)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, _ClassFactory) and other.cls is self.cls

    def __hash__(self) -> int:
        return hash(self.cls)


class _CheckedFactory:
    """A plugin's own factory ``f(runtime)``, checked to return the right kind of backend."""

    def __init__(self, kind: str, name: str, func: Callable[[Any], Any], base: type) -> None:
        self.kind, self.name, self.func, self.base = kind, name, func, base

    def __call__(self, runtime: Runtime) -> Any:
        backend = self.func(runtime)
        if isinstance(backend, self.base):
            return _named(backend, self.name)
        if self.kind == "result" and isinstance(backend, PlainResultBackend):
            return PlainResults(backend, self.name)
        raise PluginError(
            f"{self.kind} backend {self.name!r}: the factory returned "
            f"{type(backend).__name__}, not a {self.base.__name__}"
        )

    def __eq__(self, other: object) -> bool:
        return isinstance(other, _CheckedFactory) and other.func is self.func

    def __hash__(self) -> int:
        return hash(self.func)


class _PlainFactory:
    """Build a plain result backend and wrap it in ``PlainResults``."""

    def __init__(self, name: str, build: _ClassFactory) -> None:
        self.name, self.build = name, build

    def __call__(self, runtime: Runtime) -> PlainResults:
        return PlainResults(self.build(runtime), self.name)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, _PlainFactory) and other.build == self.build

    def __hash__(self) -> int:
        return hash(self.build)


def _register(kind: str, name: str, backend: Any, replace: bool) -> None:
    if not isinstance(name, str) or not name.strip():
        raise PluginError(f"a {kind} backend needs a non-empty name, got {name!r}")
    name = name.strip().lower()
    try:
        NAMES.register(kind, name, _factory(kind, name, backend), replace=replace)
    except ValueError as exc:
        raise PluginError(str(exc)) from None
    captured = getattr(_capture, "names", None)
    if captured is not None:
        captured.append((kind, name))
    log.debug("registered %s backend %r", kind, name)


def register_queue_backend(name: str, backend: Any, *, replace: bool = False) -> None:
    """Make ``NUVOM_QUEUE_BACKEND=name`` build ``backend``.

    ``backend`` is a ``BaseJobQueue`` subclass, built with whichever of
    ``settings``, ``clock``, ``codec``, ``runtime`` its ``__init__`` accepts, or
    a factory ``f(runtime) -> BaseJobQueue``. Registering the same backend again
    is harmless; a built-in name is refused unless ``replace``.
    """
    _register("queue", name, backend, replace)


def register_result_backend(name: str, backend: Any, *, replace: bool = False) -> None:
    """Make ``NUVOM_RESULT_BACKEND=name`` build ``backend`` (see ``register_queue_backend``).

    ``backend`` may also be a class with just ``set_result(job_id, result)``,
    ``get_result(job_id)``, ``set_error(job_id, error)`` and ``get_error(job_id)``
    and no base class: it is wrapped in ``PlainResults``.
    """
    _register("result", name, backend, replace)


def unregister_backend(kind: str, name: str) -> None:
    """Forget a plugin backend (tests, ``nuvom plugin test``). Built-in names stay."""
    NAMES.unregister(kind, name)


@contextmanager
def capture_registrations() -> Iterator[list[tuple[str, str]]]:
    """Collect ``(kind, name)`` of every backend this thread registers inside the block."""
    previous = getattr(_capture, "names", None)
    names: list[tuple[str, str]] = []
    _capture.names = names
    try:
        yield names
    finally:
        _capture.names = previous
