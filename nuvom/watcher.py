"""``nuvom runworker --dev``: watch the project and refresh the manifest and the registry on change.

The worker keeps running: jobs in flight finish with the code they started
with, and the next job of a reloaded task runs the new code. Needs the
``watchfiles`` package (``pip install 'nuvom[dev-reload]'``).
"""

from __future__ import annotations

import importlib
import logging
import sys
import threading
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any

from nuvom.discovery.loader import FILE_MODULE_PREFIX
from nuvom.errors import ConfigError

if TYPE_CHECKING:
    from nuvom.discovery.loader import TaskLoader
    from nuvom.discovery.manifest import ManifestDiff

log = logging.getLogger("nuvom.watcher")

WATCH_STEP_MS = 50  # changes are handed over once the tree has been quiet this long
WATCH_DEBOUNCE_MS = 1_600  # ...or after this long at most, while edits keep coming
STOP_JOIN_SECS = 5.0  # how long stop() waits for the watching thread
WATCHED_NAMES = (".nuvomignore",)  # besides *.py


def _missing_watchfiles() -> ConfigError:
    return ConfigError(
        "nuvom runworker --dev needs the watchfiles package: pip install 'nuvom[dev-reload]'"
    )


@dataclass
class ReloadReport:
    diff: ManifestDiff
    reloaded: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)  # "module: error"

    def summary(self) -> str:
        parts = []
        if self.diff.added:
            parts.append("added " + ", ".join(e.name for e in self.diff.added))
        if self.diff.removed:
            parts.append("removed " + ", ".join(e.name for e in self.diff.removed))
        if self.diff.changed:
            parts.append("changed " + ", ".join(new.name for _, new in self.diff.changed))
        if self.reloaded:
            parts.append("reloaded " + ", ".join(self.reloaded))
        if self.failed:
            parts.append("failed " + "; ".join(self.failed))
        return "; ".join(parts) or "no task changes"


def _module_files(root: Path) -> dict[Path, ModuleType]:
    """Loaded modules whose file lies under ``root``, by resolved path."""
    found: dict[Path, ModuleType] = {}
    for module in list(sys.modules.values()):
        origin = getattr(module, "__file__", None)
        if not origin:
            continue
        path = Path(origin).resolve()
        if path.is_relative_to(root):
            found[path] = module
    return found


class DevReloader:
    """Watches ``loader.root``; on change re-scans, re-imports changed loaded modules."""

    def __init__(self, loader: TaskLoader) -> None:
        self.loader = loader
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        """Start watching in a background thread; ``ConfigError`` if watchfiles is missing."""
        try:
            import watchfiles  # noqa: F401  (checked here, used in the thread)
        except ImportError:
            raise _missing_watchfiles() from None
        self.loader.refresh()
        self._thread = threading.Thread(target=self._watch, name="nuvom-dev-reload", daemon=True)
        self._thread.start()
        log.info("dev reload: watching %s", self.loader.root)

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(STOP_JOIN_SECS)

    def _watch(self) -> None:
        import watchfiles

        class SourceFilter(watchfiles.DefaultFilter):
            def __call__(self, change: watchfiles.Change, path: str) -> bool:
                name = Path(path).name
                return (name.endswith(".py") or name in WATCHED_NAMES) and super().__call__(
                    change, path
                )

        try:
            for changes in watchfiles.watch(
                self.loader.root,
                watch_filter=SourceFilter(),
                step=WATCH_STEP_MS,
                debounce=WATCH_DEBOUNCE_MS,
                stop_event=self._stop,
                raise_interrupt=False,
            ):
                try:
                    self.apply(Path(path) for _, path in changes)
                except Exception:
                    log.exception("dev reload failed; the worker keeps the tasks it had")
        except Exception:
            log.exception("dev reload stopped watching %s", self.loader.root)

    def apply(self, changed: Iterable[Path]) -> ReloadReport:
        """Re-scan the project and re-import the loaded modules among ``changed`` files."""
        changed_files = {path.resolve() for path in changed}
        with self.loader.lock:
            diff = self.loader.refresh()
            report = ReloadReport(diff)
            manifest = self.loader.manifest
            assert manifest is not None
            root = self.loader.root
            task_files = {manifest.path_of(e).resolve() for e in manifest.tasks}
            loaded = _module_files(root)
            stale = [loaded[p] for p in sorted(changed_files) if p in loaded]
            if any(Path(m.__file__ or "").resolve() not in task_files for m in stale):
                # A helper changed: task modules may hold names imported from it.
                stale += [
                    m for p, m in sorted(loaded.items()) if p in task_files and m not in stale
                ]
            for module in stale:
                declared = {e.name for e in manifest.tasks if manifest.path_of(e).resolve() == Path(module.__file__ or "").resolve()}  # fmt: skip
                self._reload(module, declared, report)
            project_modules = {m.__name__ for m in loaded.values()}
            registry = self.loader.registry
            for entry in diff.removed:
                record = manifest.files.get(entry.file)
                if record is not None and record.error is not None:
                    continue  # its file is broken for now: keep the last good task
                task = registry.find(entry.name)
                if task is not None and getattr(task.func, "__module__", None) in project_modules:
                    registry.unregister(entry.name)
        log.info("dev reload: %s", report.summary())
        return report

    def _reload(self, module: ModuleType, declared: set[str], report: ReloadReport) -> None:
        registry = self.loader.registry
        # Put aside what this module registered and what it now declares, so a
        # task that moved here from another module re-registers without a
        # duplicate error; restored if the new code fails to import.
        mine: dict[str, Any] = {}
        for name in registry.names():
            task = registry.find(name)
            if task is None:
                continue
            if name in declared or getattr(task.func, "__module__", None) == module.__name__:
                mine[name] = task
                registry.unregister(name)
        try:
            if module.__name__.startswith(FILE_MODULE_PREFIX) and module.__spec__ is not None:
                assert module.__spec__.loader is not None
                module.__spec__.loader.exec_module(module)  # loaded by path: not findable by name
            else:
                importlib.reload(module)
        except Exception as exc:
            for name, task in mine.items():
                if name not in registry:
                    registry.register(task, force=True)
            where = getattr(exc, "lineno", None)
            report.failed.append(
                f"{module.__name__}{f' line {where}' if where else ''}: {type(exc).__name__}: {exc}"
            )
            log.error("dev reload: %s failed to reload, keeping its old tasks: %s", module.__name__, exc)  # fmt: skip
            return
        report.reloaded.append(module.__name__)
