"""The process-wide defaults: settings, backends, registry, clock — built lazily, in one place.

``nuvom.configure(...)`` replaces them (tests use it from fixtures); nothing
else in nuvom keeps module-level state.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from nuvom.clock import SYSTEM_CLOCK, Clock
from nuvom.errors import ConfigError
from nuvom.events import EventBus
from nuvom.queue_backends.base import BaseJobQueue
from nuvom.registry import TaskRegistry
from nuvom.result_backends.base import BaseResultBackend
from nuvom.serialization import Codec

if TYPE_CHECKING:
    # pydantic-settings is imported when settings are first read, not with the
    # registry: a process-pool child registers tasks without reading settings.
    from nuvom.config import Settings

log = logging.getLogger("nuvom")

QueueFactory = Callable[["Runtime"], BaseJobQueue]
ResultFactory = Callable[["Runtime"], BaseResultBackend]


def _sqlite_store(runtime: Runtime, path: Path) -> Any:
    from nuvom.queue_backends.sqlite_store import SQLiteStore

    key = path.resolve()
    store = runtime.stores.get(key)
    if store is None:
        settings = runtime.settings
        store = runtime.stores[key] = SQLiteStore(
            path,
            synchronous=settings.sqlite_synchronous,
            busy_timeout_secs=settings.sqlite_busy_timeout_secs,
        )
    return store


def _memory_queue(runtime: Runtime) -> BaseJobQueue:
    from nuvom.queue_backends.memory_queue import MemoryJobQueue

    return MemoryJobQueue(clock=runtime.clock, codec=runtime.codec)


def _sqlite_queue(runtime: Runtime) -> BaseJobQueue:
    from nuvom.queue_backends.sqlite_queue import SQLiteJobQueue

    store = _sqlite_store(runtime, runtime.settings.effective_sqlite_queue_path)
    return SQLiteJobQueue(store=store, codec=runtime.codec, clock=runtime.clock)


def _memory_results(runtime: Runtime) -> BaseResultBackend:
    from nuvom.result_backends.memory_backend import MemoryResultBackend

    return MemoryResultBackend(clock=runtime.clock)


def _sqlite_results(runtime: Runtime) -> BaseResultBackend:
    from nuvom.result_backends.sqlite_backend import SQLiteResultBackend

    store = _sqlite_store(runtime, runtime.settings.sqlite_db_path)
    return SQLiteResultBackend(store=store, codec=runtime.codec, clock=runtime.clock)


def _file_queue(runtime: Runtime) -> BaseJobQueue:
    from nuvom.queue_backends.file_queue import FileJobQueue

    directory = runtime.settings.file_queue_dir
    return FileJobQueue(
        directory,
        codec=runtime.codec,
        clock=runtime.clock,
        synchronous=runtime.settings.file_synchronous,
    )


def _file_results(runtime: Runtime) -> BaseResultBackend:
    from nuvom.result_backends.file_backend import FileResultBackend, results_dir_beside

    directory = results_dir_beside(runtime.settings.file_queue_dir)
    return FileResultBackend(
        directory,
        codec=runtime.codec,
        clock=runtime.clock,
        synchronous=runtime.settings.file_synchronous,
    )


def _postgres_store(runtime: Runtime) -> Any:
    """One pool per DSN and schema, shared by the queue and results so steps share a commit."""
    from nuvom.queue_backends.postgres_store import PostgresStore

    settings = runtime.settings
    if not settings.postgres_dsn:
        raise ConfigError(
            "NUVOM_POSTGRES_DSN: the postgres backend needs it "
            "(e.g. postgresql://user@host:5432/dbname)",
            variable="NUVOM_POSTGRES_DSN",
        )
    key = ("postgres", settings.postgres_dsn, settings.postgres_schema)
    store = runtime.stores.get(key)
    if store is None:
        store = runtime.stores[key] = PostgresStore(
            settings.postgres_dsn, schema=settings.postgres_schema
        )
    return store


def _postgres_queue(runtime: Runtime) -> BaseJobQueue:
    from nuvom.queue_backends.postgres_queue import PostgresJobQueue

    store = _postgres_store(runtime)
    return PostgresJobQueue(store=store, codec=runtime.codec, clock=runtime.clock)


def _postgres_results(runtime: Runtime) -> BaseResultBackend:
    from nuvom.result_backends.postgres_backend import PostgresResultBackend

    store = _postgres_store(runtime)
    return PostgresResultBackend(store=store, codec=runtime.codec, clock=runtime.clock)


def _redis_url(runtime: Runtime) -> str:
    url = runtime.settings.redis_url
    if not url:
        raise ConfigError(
            "NUVOM_REDIS_URL: the redis backend needs it (e.g. redis://127.0.0.1:6379/0)",
            variable="NUVOM_REDIS_URL",
        )
    return url


def _redis_queue(runtime: Runtime) -> BaseJobQueue:
    from nuvom.queue_backends.redis_queue import RedisJobQueue

    prefix = runtime.settings.redis_prefix
    return RedisJobQueue(
        _redis_url(runtime), prefix=prefix, codec=runtime.codec, clock=runtime.clock
    )


def _redis_results(runtime: Runtime) -> BaseResultBackend:
    from nuvom.result_backends.redis_backend import RedisResultBackend

    settings = runtime.settings
    return RedisResultBackend(
        _redis_url(runtime),
        prefix=settings.redis_prefix,
        codec=runtime.codec,
        clock=runtime.clock,
        ttl_secs=settings.result_ttl_secs,
    )


QUEUE_BACKENDS: dict[str, QueueFactory] = {
    "memory": _memory_queue,
    "sqlite": _sqlite_queue,
    "file": _file_queue,
    "postgres": _postgres_queue,
    "redis": _redis_queue,
}
RESULT_BACKENDS: dict[str, ResultFactory] = {
    "memory": _memory_results,
    "sqlite": _sqlite_results,
    "file": _file_results,
    "postgres": _postgres_results,
    "redis": _redis_results,
}


def _unknown_backend(kind: str, name: str, known: dict[str, Any]) -> ConfigError:
    variable = f"NUVOM_{kind.upper()}_BACKEND"
    choices = ", ".join(sorted(known))
    return ConfigError(
        f"{variable}: unknown {kind} backend {name!r} (built in: {choices}; "
        "a plugin can register more)",
        variable=variable,
    )


class Runtime:
    """Settings plus the objects built from them, each made on first use."""

    def __init__(
        self,
        settings: Settings,
        *,
        registry: TaskRegistry | None = None,
        clock: Clock = SYSTEM_CLOCK,
        queue: BaseJobQueue | None = None,
        results: BaseResultBackend | None = None,
    ) -> None:
        self.settings = settings
        self.registry = registry if registry is not None else TaskRegistry()
        self.clock = clock
        self.codec = Codec(settings.serialization_backend, max_bytes=settings.max_payload_bytes)
        self.stores: dict[Any, Any] = {}  # SQLite files by path, PostgreSQL pools by DSN
        self.events = EventBus()
        self._queue = queue
        self._results = results
        self._lock = threading.RLock()
        self.plugins: Any = None  # nuvom.plugins.loader.PluginManager, made when first needed

    @property
    def queue(self) -> BaseJobQueue:
        if self._queue is None:
            with self._lock:
                if self._queue is None:
                    name = self.settings.queue_backend
                    factory = QUEUE_BACKENDS.get(name)
                    if factory is None:
                        factory = self._plugin_backend("queue", name)
                    self._queue = factory(self)
        return self._queue

    @property
    def results(self) -> BaseResultBackend:
        if self._results is None:
            with self._lock:
                if self._results is None:
                    name = self.settings.result_backend
                    factory = RESULT_BACKENDS.get(name)
                    if factory is None:
                        factory = self._plugin_backend("result", name)
                    self._results = factory(self)
        return self._results

    def _plugin_backend(self, kind: str, name: str) -> Any:
        """A name no built-in knows: load the plugins (they may register it), or raise ConfigError."""
        from nuvom.plugins.loader import backend_factory

        return backend_factory(self, kind, name)

    def close(self) -> None:
        with self._lock:
            for backend in (self._queue, self._results):
                if backend is not None:
                    backend.close()
            for store in self.stores.values():
                store.close()
            self._queue = self._results = None
            self.stores.clear()
            if self.plugins is not None:
                self.plugins.stop()


_current: Runtime | None = None
_current_lock = threading.Lock()
# Tasks register at import time, once; the registry outlives a reset() of the backends.
_carried_registry: TaskRegistry | None = None


def current() -> Runtime:
    """The process-wide runtime, built from settings on first use."""
    global _current, _carried_registry
    runtime = _current
    if runtime is None:
        with _current_lock:
            if _current is None:
                from nuvom.config import load_settings

                _current = Runtime(load_settings(), registry=_carried_registry)
                _carried_registry = _current.registry
            runtime = _current
    return runtime


def current_registry() -> TaskRegistry:
    """The task registry, without building backends or reading settings (for decorators)."""
    global _carried_registry
    runtime = _current
    if runtime is not None:
        return runtime.registry
    with _current_lock:
        if _current is not None:
            return _current.registry
        if _carried_registry is None:
            _carried_registry = TaskRegistry()
        return _carried_registry


def configure(
    *,
    queue_backend: BaseJobQueue | str | None = None,
    result_backend: BaseResultBackend | str | None = None,
    registry: TaskRegistry | None = None,
    clock: Clock | None = None,
    **settings: Any,
) -> Runtime:
    """Replace the process-wide runtime.

    Keyword settings (``lease_secs=5``, ``queue_backend="memory"``...) override
    the environment. Backend *objects* may be passed instead of names. The task
    registry carries over unless a new one is given. Returns the new runtime.
    """
    global _current
    for name, value in (("queue_backend", queue_backend), ("result_backend", result_backend)):
        if isinstance(value, str):
            settings[name] = value
    queue = queue_backend if isinstance(queue_backend, BaseJobQueue) else None
    results = result_backend if isinstance(result_backend, BaseResultBackend) else None
    from nuvom.config import load_settings

    loaded = load_settings(**settings)
    with _current_lock:
        previous = _current
        keep_registry = previous.registry if previous is not None else _carried_registry
        _current = Runtime(
            loaded,
            registry=registry if registry is not None else keep_registry,
            clock=clock or SYSTEM_CLOCK,
            queue=queue,
            results=results,
        )
        runtime = _current
    if previous is not None:
        previous.close()
    return runtime


def reset() -> None:
    """Close the backends and forget the runtime; the next use rebuilds it from settings.

    Registered tasks are kept: they were registered when their modules were imported.
    """
    global _current, _carried_registry
    with _current_lock:
        previous, _current = _current, None
        if previous is not None:
            _carried_registry = previous.registry
    if previous is not None:
        previous.close()
