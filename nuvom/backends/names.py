"""Backend names: which engine ``NUVOM_QUEUE_BACKEND=<name>`` builds, and what plugins add.

A built-in engine is one line in ``ENGINES``: its name and its queue and result
backend classes (in its folder under ``nuvom/backends``).
Plugins add names through ``nuvom.plugins.registry``. ``nuvom.runtime`` looks
names up here, and ``nuvom.plugins`` registers them here; neither reaches into
the other's state.
"""

from __future__ import annotations

import functools
import importlib
import logging
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from nuvom.errors import ConfigError

if TYPE_CHECKING:
    from nuvom.runtime import Runtime

log = logging.getLogger("nuvom.backends")

#: What a name stands for: a function that builds the backend for a runtime.
Factory = Callable[["Runtime"], Any]

KINDS = ("queue", "result")

#: The built-in engines: name -> (queue class, result backend class), each built as
#: ``cls(runtime=runtime)`` (from that runtime's settings, codec and clock).
ENGINES: dict[str, tuple[str, str]] = {
    "memory": ("memory.queue:MemoryJobQueue", "memory.results:MemoryResultBackend"),
    "file": ("file.queue:FileJobQueue", "file.results:FileResultBackend"),
    "sqlite": ("sqlite.queue:SQLiteJobQueue", "sqlite.results:SQLiteResultBackend"),
    "postgres": ("postgres.queue:PostgresJobQueue", "postgres.results:PostgresResultBackend"),
    "redis": ("redis.queue:RedisJobQueue", "redis.results:RedisResultBackend"),
}


def _built_in(spec: str, runtime: Runtime) -> Any:
    module, _, name = spec.partition(":")
    return getattr(importlib.import_module(f"nuvom.backends.{module}"), name)(runtime=runtime)


def _variable(kind: str) -> str:
    return f"NUVOM_{kind.upper()}_BACKEND"


class BackendNames:
    """Every backend name a process knows: the built-in engines, then plugins' registrations.

    Thread-safe. A plugin may not take a built-in name unless it says ``replace``.
    """

    def __init__(self) -> None:
        self._registered: dict[str, dict[str, Factory]] = {kind: {} for kind in KINDS}
        self._lock = threading.Lock()

    def factory(self, kind: str, name: str) -> Factory | None:
        """The factory for ``name`` (a plugin's registration wins over a built-in it replaced)."""
        registered = self._registered[kind].get(name)
        if registered is not None:
            return registered
        engine = ENGINES.get(name)
        if engine is None:
            return None
        return functools.partial(_built_in, engine[KINDS.index(kind)])

    def register(self, kind: str, name: str, factory: Factory, *, replace: bool = False) -> None:
        """Make ``name`` build with ``factory``. Refuses a built-in name unless ``replace``."""
        with self._lock:
            if name in ENGINES and not replace:
                raise ValueError(
                    f"{kind} backend {name!r} is built in; choose another name "
                    "(or pass replace=True)"
                )
            existing = self._registered[kind].get(name)
            if existing is not None and existing != factory:
                log.warning("%s backend %r registered again; the newer one is used", kind, name)
            self._registered[kind][name] = factory

    def unregister(self, kind: str, name: str) -> None:
        """Forget a plugin's name (tests, ``nuvom plugin test``); built-in engines stay."""
        with self._lock:
            self._registered[kind].pop(name, None)

    def names(self, kind: str) -> list[str]:
        return sorted(set(ENGINES) | set(self._registered[kind]))

    def unknown(self, kind: str, name: str) -> ConfigError:
        """The error for a name nobody registered, naming the variable and the choices."""
        variable = _variable(kind)
        choices = ", ".join(sorted(ENGINES))
        return ConfigError(
            f"{variable}: unknown {kind} backend {name!r} (built in: {choices}; "
            "a plugin can register more)",
            variable=variable,
        )

    @contextmanager
    def kept(self) -> Iterator[None]:
        """Undo, on the way out, every registration made inside the block (for tests)."""
        with self._lock:
            saved = {kind: dict(table) for kind, table in self._registered.items()}
        try:
            yield
        finally:
            with self._lock:
                self._registered = saved


#: This process's names. Registrations outlive ``nuvom.configure()``, like registered tasks.
NAMES = BackendNames()
