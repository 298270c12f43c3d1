"""The task registry: task name -> ``Task``, with duplicate control.

Decorators register into the current runtime's registry; tests swap in a fresh
one with ``nuvom.configure(registry=TaskRegistry())`` instead of reloading modules.
"""

from __future__ import annotations

import logging
import threading
from typing import TYPE_CHECKING, Any

from nuvom.errors import DuplicateTaskError, TaskNotFound

if TYPE_CHECKING:
    from nuvom.task import Task

log = logging.getLogger("nuvom.registry")


def _origin(task: Task[Any, Any]) -> str:
    func = task.func
    return f"{getattr(func, '__module__', '?')}:{getattr(func, '__qualname__', '?')}"


class TaskRegistry:
    """Thread-safe map of task names to tasks."""

    def __init__(self) -> None:
        self._tasks: dict[str, Task[Any, Any]] = {}
        self._lock = threading.Lock()

    def register(self, task: Task[Any, Any], *, force: bool = False, silent: bool = False) -> None:
        """Add ``task`` under ``task.name``.

        The same function registered again (a module imported twice) replaces
        itself quietly. A *different* function under a taken name raises
        ``DuplicateTaskError`` unless ``force`` (replace) or ``silent`` (keep the first).
        """
        with self._lock:
            existing = self._tasks.get(task.name)
            if existing is not None and existing is not task:
                same_function = _origin(existing) == _origin(task)
                if not same_function and not force:
                    if silent:
                        log.debug("kept existing task %r; ignored %s", task.name, _origin(task))
                        return
                    raise DuplicateTaskError(task.name, _origin(existing), _origin(task))
            self._tasks[task.name] = task

    def get(self, name: str) -> Task[Any, Any]:
        """The task named ``name``; raises ``TaskNotFound``."""
        task = self._tasks.get(name)
        if task is None:
            raise TaskNotFound(name)
        return task

    def find(self, name: str) -> Task[Any, Any] | None:
        return self._tasks.get(name)

    def unregister(self, name: str) -> None:
        with self._lock:
            self._tasks.pop(name, None)

    def names(self) -> list[str]:
        return sorted(self._tasks)

    def __contains__(self, name: object) -> bool:
        return name in self._tasks

    def __len__(self) -> int:
        return len(self._tasks)


def get_registry() -> TaskRegistry:
    """The current runtime's registry."""
    from nuvom.runtime import current_registry

    return current_registry()
