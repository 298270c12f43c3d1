"""The process-wide defaults: settings, backends, registry, clock — built lazily, in one place.

``nuvom.configure(...)`` replaces them (tests use it from fixtures); nothing
else in nuvom keeps module-level state.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

from nuvom.backends import names
from nuvom.backends.contract import BaseJobQueue, BaseResultBackend
from nuvom.clock import SYSTEM_CLOCK, Clock
from nuvom.events import EventBus
from nuvom.registry import TaskRegistry
from nuvom.serialization import Codec

if TYPE_CHECKING:
    # pydantic-settings is imported when settings are first read, not with the
    # registry: a process-pool child registers tasks without reading settings.
    from nuvom.config import Settings

log = logging.getLogger("nuvom")

T = TypeVar("T")


class Runtime:
    """Settings plus the objects built from them, each made on first use.

    Backends are built by the factory their name stands for (``nuvom.backends.names``);
    what several of them share (an SQLite file, a PostgreSQL pool, the plugin manager)
    is made once through ``shared`` and closed with the runtime.
    """

    def __init__(
        self,
        settings: Settings,
        *,
        registry: TaskRegistry | None = None,
        clock: Clock = SYSTEM_CLOCK,
        queue: BaseJobQueue | None = None,
        results: BaseResultBackend | None = None,
        read_only: bool = False,
    ) -> None:
        self.settings = settings
        #: Built-in backends open their store without creating it (``read_only_runtime``).
        self.read_only = read_only
        self.registry = registry if registry is not None else TaskRegistry()
        self.clock = clock
        self.codec = Codec(
            settings.serialization_backend,
            max_bytes=settings.max_payload_bytes,
            signer=settings.signer(),
        )
        self.events = EventBus()
        self._queue = queue
        self._results = results
        self._shared: dict[Any, Any] = {}
        self._lock = threading.RLock()

    @property
    def queue(self) -> BaseJobQueue:
        if self._queue is None:
            with self._lock:
                if self._queue is None:
                    self._queue = self._build("queue", self.settings.queue_backend)
        return self._queue

    @property
    def results(self) -> BaseResultBackend:
        if self._results is None:
            with self._lock:
                if self._results is None:
                    self._results = self._build("result", self.settings.result_backend)
        return self._results

    def _build(self, kind: str, name: str) -> Any:
        factory = names.NAMES.factory(kind, name)
        if factory is None:
            # A name no engine has: the plugins may register it when they start.
            from nuvom.plugins.loader import find_backend

            factory = find_backend(self, kind, name)
        return factory(self)

    def shared(self, key: Any, build: Callable[[], T]) -> T:
        """The object kept under ``key`` for this runtime, built by ``build`` the first time.

        Closed (``close()``) with the runtime, last made first.
        """
        with self._lock:
            if key not in self._shared:
                self._shared[key] = build()
            made: T = self._shared[key]
            return made

    def close(self) -> None:
        with self._lock:
            for backend in (self._queue, self._results):
                if backend is not None:
                    backend.close()
            for kept in reversed(list(self._shared.values())):
                kept.close()
            self._queue = self._results = None
            self._shared.clear()


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


def read_only_runtime() -> Runtime:
    """A runtime for commands that only look (status, inspect, history, queue stats).

    The current settings, registry and clock, with built-in backends that create nothing:
    an SQLite file that does not exist reads as an empty store, one that exists is opened
    query-only, and the file backends make no folders. Servers (PostgreSQL, Redis) and
    plugin backends open as usual. The caller closes it.
    """
    base = current()
    return Runtime(base.settings, registry=base.registry, clock=base.clock, read_only=True)


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
