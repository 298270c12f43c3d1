"""Register plugin backends under a name, so ``NUVOM_QUEUE_BACKEND=<name>`` builds them.

Names go into ``nuvom.backends.names``, the table the built-in engines are in, so
workers and producers alike find them.
"""

from __future__ import annotations

import inspect
import logging
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from nuvom.backends.contract import BaseJobQueue, BaseResultBackend
from nuvom.backends.names import NAMES
from nuvom.errors import PluginError

if TYPE_CHECKING:
    from nuvom.runtime import Runtime

log = logging.getLogger("nuvom.plugins")

#: Keyword arguments a backend class is given, when its ``__init__`` accepts them.
INJECTED = ("settings", "clock", "codec", "runtime")

_capture = threading.local()


def _factory(kind: str, name: str, backend: Any) -> Callable[[Runtime], Any]:
    base = BaseJobQueue if kind == "queue" else BaseResultBackend
    if inspect.isclass(backend):
        if not issubclass(backend, base):
            raise PluginError(
                f"{kind} backend {name!r}: {backend.__name__} does not subclass "
                f"{base.__module__}.{base.__name__}"
            )
        return _ClassFactory(backend)
    if callable(backend):
        return _CheckedFactory(kind, name, backend, base)
    raise PluginError(f"{kind} backend {name!r}: expected a backend class or a factory")


class _ClassFactory:
    """Build a backend class with the keywords its ``__init__`` accepts among ``INJECTED``."""

    def __init__(self, cls: type) -> None:
        self.cls = cls
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
        return self.cls(**{k: values[k] for k in self.keywords})

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
        if not isinstance(backend, self.base):
            raise PluginError(
                f"{self.kind} backend {self.name!r}: the factory returned "
                f"{type(backend).__name__}, not a {self.base.__name__}"
            )
        return backend

    def __eq__(self, other: object) -> bool:
        return isinstance(other, _CheckedFactory) and other.func is self.func

    def __hash__(self) -> int:
        return hash(self.func)


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
    """Make ``NUVOM_RESULT_BACKEND=name`` build ``backend`` (see ``register_queue_backend``)."""
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
