"""Resolve a job's task name to a task: the registry first, then the manifest, then a fresh scan.

A task known only through the manifest is imported the first time a job needs
it: by dotted module when that import finds the declaring file, else straight
from the file (a script outside any package, or a name something else shadows).
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import logging
import os
import re
import sys
import threading
import time
import traceback
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

from nuvom.discovery.index import discover, same_content
from nuvom.discovery.manifest import (
    Manifest,
    ManifestDiff,
    TaskEntry,
    diff_manifests,
    load_manifest,
    save_manifest,
)
from nuvom.errors import TaskImportError, TaskNotFound
from nuvom.registry import TaskRegistry

log = logging.getLogger("nuvom.discovery")

DEFAULT_MANIFEST_PATH = Path(".nuvom/manifest.json")
RESCAN_AFTER_SECS = 2.0  # a name missing from the manifest re-scans the project at most this often
FILE_MODULE_PREFIX = "_nuvom_file_"  # module names for files loaded by path
SKIPPED_FILES_SHOWN = 3  # files discovery skipped that a TaskNotFound message names


def import_base(file: Path, module: str) -> Path:
    """The ``sys.path`` entry from which ``module`` is ``file``."""
    levels = module.count(".") + (1 if file.name == "__init__.py" else 0)
    base = file.parent
    for _ in range(levels):
        base = base.parent
    return base


def file_module_name(file: Path) -> str:
    """A stable module name for a file loaded by path (same file, same name, across reloads)."""
    digest = hashlib.sha256(str(file).encode()).hexdigest()[:10]
    stem = "".join(c if c.isalnum() else "_" for c in file.stem)
    return f"{FILE_MODULE_PREFIX}{stem}_{digest}"


def _same_file(module: ModuleType, file: Path) -> bool:
    origin = getattr(module, "__file__", None)
    if not origin:
        return False
    try:
        return os.path.samefile(origin, file)
    except OSError:
        return False


def load_by_path(file: Path, name: str | None = None) -> ModuleType:
    """Execute ``file`` as module ``name`` (default: ``file_module_name(file)``)."""
    name = name or file_module_name(file)
    spec = importlib.util.spec_from_file_location(name, file)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot load {file}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        sys.modules.pop(name, None)
        raise
    return module


def import_module_file(module: str, file: Path) -> ModuleType:
    """Import ``module``, which should be ``file``: by dotted name, else straight from ``file``."""
    base = str(import_base(file, module))
    if base not in sys.path:
        sys.path.insert(0, base)
    try:
        loaded = importlib.import_module(module)
    except ModuleNotFoundError as exc:
        missing = exc.name or ""
        if not (module == missing or module.startswith(missing + ".")):
            raise  # the module was found; something *it* imports is missing
        log.debug("no module %s on sys.path; loading %s by path", module, file)
        return load_by_path(file)
    if _same_file(loaded, file):
        return loaded
    log.debug("module %s is %s, not %s; loading by path", module, loaded.__file__, file)
    return load_by_path(file)


def _stamp(path: Path) -> tuple[int, int] | None:
    try:
        stat = path.stat()
    except OSError:
        return None
    return stat.st_mtime_ns, stat.st_size


def _shown(path: Path, root: Path) -> str:
    """``path`` as messages name it: relative to ``root`` when under it."""
    try:
        return path.resolve().relative_to(root).as_posix()
    except (OSError, ValueError):
        return str(path)


def _is_project_code(filename: str, root: Path) -> bool:
    """A frame of the project's own code: under ``root``, not in an environment nor in nuvom."""
    path = Path(filename)
    if not path.is_absolute():
        return False  # <frozen importlib._bootstrap> and the like
    path = path.resolve()
    if not path.is_relative_to(root):
        return False
    installed = {Path(sys.prefix), Path(sys.exec_prefix), Path(__file__).parent.parent}
    return not any(path.is_relative_to(place) for place in installed)


def _declares(file: Path, name: str) -> bool:
    """Whether a file ``ast`` could not parse seems to declare task ``name`` (its text says so)."""
    try:
        text = file.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return False
    word = re.escape(name)
    return re.search(rf"\bdef\s+{word}\s*\(|\bname\s*=\s*[\"']{word}[\"']", text) is not None


@dataclass(frozen=True, slots=True)
class ImportFailure:
    """A task module that failed to import, remembered until a file it involves changes:
    the module itself, and the file the error points at (a helper it imports, say)."""

    file: str  # where the error is, as messages show it
    line: int | None
    reason: str
    cause: Exception
    stamps: tuple[tuple[Path, tuple[int, int] | None], ...]

    @classmethod
    def of(cls, exc: Exception, module_file: Path, root: Path) -> ImportFailure:
        where: Path | None = None
        line: int | None = None
        if isinstance(exc, SyntaxError) and exc.filename and Path(exc.filename).is_file():
            where, line, reason = Path(exc.filename), exc.lineno, exc.msg
        else:
            reason = f"{type(exc).__name__}: {exc}"
            frames = [f for f in traceback.extract_tb(exc.__traceback__) if _is_project_code(f.filename, root)]  # fmt: skip
            if frames:
                where, line = Path(frames[-1].filename), frames[-1].lineno
        files = {module_file, where or module_file}
        return cls(
            file=_shown(where or module_file, root),
            line=line,
            reason=reason,
            cause=exc,
            stamps=tuple((path, _stamp(path)) for path in sorted(files)),
        )

    def still_applies(self) -> bool:
        return all(_stamp(path) == stamp for path, stamp in self.stamps)

    def error(self, name: str) -> TaskImportError:
        return TaskImportError(name, file=self.file, line=self.line, reason=self.reason)


class TaskLoader:
    """Resolves task names to tasks: the registry first, then the project's manifest.

    ``root`` defaults to the manifest's root, else the working directory.
    ``lock`` serialises imports and dev reloads.
    """

    def __init__(
        self,
        registry: TaskRegistry,
        root: Path | str | None = None,
        *,
        manifest_path: Path | str | None = None,
    ) -> None:
        self.registry = registry
        self.manifest_path = Path(manifest_path or DEFAULT_MANIFEST_PATH).resolve()
        self._root = Path(root).resolve() if root is not None else None
        self._manifest: Manifest | None = None
        self._opened = False
        self._refreshed_at = float("-inf")
        self._save_warned = False
        # Modules that failed to import, by file: reported once, retried once a file changes.
        self._failures: dict[Path, ImportFailure] = {}
        self.lock = threading.RLock()

    # -- the manifest --------------------------------------------------------
    def _open(self) -> None:
        if self._opened:
            return
        self._opened = True
        manifest = load_manifest(self.manifest_path)
        if manifest is not None and self._root is None and Path(manifest.root).is_dir():
            self._root = Path(manifest.root)
        if self._root is None:
            self._root = Path.cwd().resolve()
        if manifest is not None and Path(manifest.root) == self._root:
            self._manifest = manifest

    @property
    def root(self) -> Path:
        with self.lock:
            self._open()
            assert self._root is not None
            return self._root

    @property
    def manifest(self) -> Manifest | None:
        with self.lock:
            self._open()
            return self._manifest

    def refresh(self) -> ManifestDiff:
        """Re-scan (only changed files are parsed), save the manifest, return what changed."""
        with self.lock:
            root = self.root
            previous = self._manifest
            new = discover(root, previous=previous)
            if not same_content(previous, new):
                try:
                    save_manifest(new, self.manifest_path)
                except OSError as exc:
                    if not self._save_warned:
                        log.warning("cannot write %s (%s); keeping it in memory", self.manifest_path, exc)  # fmt: skip
                        self._save_warned = True
            self._manifest = new
            self._refreshed_at = time.monotonic()
            known = {str(p) for p in previous.errors} if previous is not None else set()
            for problem in new.errors:
                if str(problem) not in known:
                    log.warning("task discovery skipped %s", problem)
            return diff_manifests(previous, new)

    def _is_current(self, manifest: Manifest, entry: TaskEntry) -> bool:
        record = manifest.files.get(entry.file)
        try:
            stat = manifest.path_of(entry).stat()
        except OSError:
            return False
        return record is not None and (record.mtime_ns, record.size) == (stat.st_mtime_ns, stat.st_size)  # fmt: skip

    def _entry(self, name: str) -> tuple[TaskEntry | None, bool]:
        """The declaration of ``name`` and whether it comes from a scan made just now."""
        self._open()
        entry = self._manifest.find(name) if self._manifest is not None else None
        if entry is not None and self._manifest is not None and self._is_current(self._manifest, entry):  # fmt: skip
            return entry, False
        if entry is not None or time.monotonic() - self._refreshed_at >= RESCAN_AFTER_SECS:
            self.refresh()
            assert self._manifest is not None
            return self._manifest.find(name), True
        return None, True

    # -- tasks ---------------------------------------------------------------
    def get(self, name: str) -> Any:
        """The task named ``name``, importing its module if needed.

        Raises ``TaskImportError`` when the module declaring it fails to import
        (a file discovery could not parse included), else ``TaskNotFound``.
        """
        task = self.registry.find(name)
        if task is not None:
            return task
        if name == "nuvom.collect":  # a group's last job (``nuvom.workflow``): built in
            from nuvom.workflow import collect_task

            return collect_task()
        with self.lock:
            task = self.registry.find(name)
            if task is not None:
                return task
            entry, fresh = self._entry(name)
            if entry is None:
                return self._from_unparsed_file(name)
            task = self._load(entry)
            if task is None and not fresh:  # the manifest was stale: the task moved
                self.refresh()
                assert self._manifest is not None
                entry = self._manifest.find(name) or entry
                task = self._load(entry)
            if task is None:
                raise TaskNotFound(
                    name,
                    hint=f"{entry.file}:{entry.line} declares it, but importing "
                    f"{entry.module} did not register it",
                )
            return task

    def _load(self, entry: TaskEntry) -> Any:
        assert self._manifest is not None
        file = self._manifest.path_of(entry)
        if not file.is_file():
            return None
        self._import(entry.module, file, entry.name)
        return self.registry.find(entry.name)

    def _from_unparsed_file(self, name: str) -> Any:
        """``name`` is in no manifest entry: a file discovery could not parse may declare it,
        and importing that file says why it cannot be loaded."""
        manifest = self._manifest
        skipped = manifest.errors if manifest is not None else []
        for problem in skipped:
            assert manifest is not None
            file = Path(manifest.root, *problem.file.split("/"))
            if _declares(file, name):
                self._import(manifest.files[problem.file].module, file, name)
                task = self.registry.find(name)
                if task is not None:  # the file was fixed since the scan
                    return task
        hint = f"nor is one declared with @task under {self._root}"
        if skipped:
            shown = "; ".join(str(p) for p in skipped[:SKIPPED_FILES_SHOWN])
            hint += f" (discovery skipped {shown})"
        raise TaskNotFound(name, hint=hint)

    def _import(self, module: str, file: Path, name: str) -> None:
        """Import ``file``; raises ``TaskImportError`` for task ``name`` when that fails, and
        logs the failure once, not once per job, until one of the files involved changes."""
        known = self._failures.get(file)
        if known is not None and known.still_applies():
            raise known.error(name) from known.cause
        before = set(self.registry.names())
        try:
            import_module_file(module, file)
        except Exception as exc:
            self._forget_half_imported(before)
            failure = ImportFailure.of(exc, file, self.root)
            self._failures[file] = failure
            error = failure.error(name)
            log.error(
                "cannot import %s: %s; jobs of its tasks fail until it is fixed",
                _shown(file, self.root), error,
            )  # fmt: skip
            raise error from exc
        self._failures.pop(file, None)

    def _forget_half_imported(self, before: set[str]) -> None:
        """Unregister the tasks a failed import registered before it failed: their module
        left ``sys.modules``, and they are not to run half-imported."""
        for name in set(self.registry.names()) - before:
            task = self.registry.find(name)
            if task is not None and getattr(task.func, "__module__", None) not in sys.modules:
                self.registry.unregister(name)
