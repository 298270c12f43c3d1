"""Import a task's module the first time a job for it arrives, found through discovery."""

from __future__ import annotations

import importlib
import importlib.util
import logging
import sys
import threading
import time
from pathlib import Path
from typing import Any

from nuvom.discovery.scanner import Manifest, TaskEntry, discover
from nuvom.errors import TaskNotFound
from nuvom.registry import TaskRegistry

log = logging.getLogger("nuvom.discovery")

RESCAN_AFTER_SECS = 2.0  # a miss re-scans the project at most this often


class TaskLoader:
    """Resolves task names to tasks: the registry first, then the project's source."""

    def __init__(self, registry: TaskRegistry, root: Path | str = ".") -> None:
        self.registry = registry
        self.root = Path(root).resolve()
        self._manifest: Manifest | None = None
        self._scanned_at = float("-inf")
        self._lock = threading.Lock()

    def get(self, name: str) -> Any:
        """The task named ``name``, importing its module if needed; raises ``TaskNotFound``."""
        task = self.registry.find(name)
        if task is not None:
            return task
        with self._lock:
            task = self.registry.find(name)
            if task is not None:
                return task
            entry = self._entry(name)
            if entry is None:
                raise TaskNotFound(
                    name, hint=f"none is registered or declared with @task under {self.root}"
                )
            self._import(entry)
        task = self.registry.find(name)
        if task is None:
            raise TaskNotFound(
                name, hint=f"{entry.file}:{entry.line} declares it but did not register it"
            )
        return task

    def _entry(self, name: str) -> TaskEntry | None:
        entry = self._manifest.find(name) if self._manifest else None
        if entry is None and time.monotonic() - self._scanned_at >= RESCAN_AFTER_SECS:
            self._manifest = discover(self.root)
            self._scanned_at = time.monotonic()
            entry = self._manifest.find(name)
        return entry

    def _import(self, entry: TaskEntry) -> None:
        root = str(self.root)
        if root not in sys.path:
            sys.path.insert(0, root)
        try:
            importlib.import_module(entry.module)
            return
        except ImportError as exc:
            log.debug("import %s failed (%s); loading %s by path", entry.module, exc, entry.file)
        spec = importlib.util.spec_from_file_location(entry.module, entry.file)
        if spec is None or spec.loader is None:
            raise TaskNotFound(entry.name, hint=f"cannot load {entry.file}")
        module = importlib.util.module_from_spec(spec)
        sys.modules[entry.module] = module
        spec.loader.exec_module(module)
