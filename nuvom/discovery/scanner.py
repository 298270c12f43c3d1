"""Walk a project, parse each ``.py`` with ``ast``, and list the functions decorated as tasks."""

from __future__ import annotations

import ast
import logging
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

log = logging.getLogger("nuvom.discovery")

SKIPPED_DIRS = frozenset(
    {".git", ".hg", ".svn", "__pycache__", "node_modules", "site-packages", ".nuvom", ".tox",
     ".nox", ".mypy_cache", ".ruff_cache", ".pytest_cache", "build", "dist", ".eggs"}
)  # fmt: skip
_LITERAL_OPTIONS = frozenset(
    {"name", "tags", "description", "retries", "retry_delay_secs", "timeout_secs",
     "timeout_policy", "queue", "priority", "store_result", "retry_backoff"}
)  # fmt: skip


@dataclass(slots=True)
class TaskEntry:
    name: str
    function: str
    module: str
    file: str
    line: int
    options: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(slots=True)
class Manifest:
    root: str
    tasks: list[TaskEntry] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    def find(self, name: str) -> TaskEntry | None:
        for entry in self.tasks:
            if entry.name == name:
                return entry
        return None


def _is_virtualenv(path: Path) -> bool:
    return (path / "pyvenv.cfg").is_file()


def iter_python_files(root: Path) -> list[Path]:
    files: list[Path] = []
    for current, dirs, names in os.walk(root):
        here = Path(current)
        dirs[:] = sorted(d for d in dirs if d not in SKIPPED_DIRS and not _is_virtualenv(here / d))
        files.extend(here / n for n in sorted(names) if n.endswith(".py"))
    return files


def module_name(root: Path, file: Path) -> str:
    """Dotted module path: package folders (with ``__init__.py``) up from the file."""
    parts = [file.stem] if file.stem != "__init__" else []
    folder = file.parent
    while folder != root and (folder / "__init__.py").is_file():
        parts.insert(0, folder.name)
        folder = folder.parent
    return ".".join(parts) or file.stem


class _TaskNames(ast.NodeVisitor):
    """Tracks the names by which nuvom's ``task`` decorator is reachable in one module."""

    def __init__(self) -> None:
        self.direct: set[str] = set()  # @task, @job (alias)
        self.modules: set[str] = {"nuvom", "nuvom.task"}  # @nuvom.task, @n.task

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        if node.module in ("nuvom", "nuvom.task"):
            for alias in node.names:
                if alias.name == "task":
                    self.direct.add(alias.asname or "task")
        elif node.module == "nuvom" and any(a.name == "task" for a in node.names):
            pass

    def visit_Import(self, node: ast.Import) -> None:
        for alias in node.names:
            if alias.name in ("nuvom", "nuvom.task"):
                self.modules.add(alias.asname or alias.name)

    def is_task(self, decorator: ast.expr) -> bool:
        target = decorator.func if isinstance(decorator, ast.Call) else decorator
        if isinstance(target, ast.Name):
            return target.id in self.direct
        if isinstance(target, ast.Attribute) and target.attr == "task":
            return _dotted(target.value) in self.modules
        return False


def _dotted(node: ast.expr) -> str:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        return f"{_dotted(node.value)}.{node.attr}"
    return ""


def _literal_options(decorator: ast.expr) -> dict[str, Any]:
    options: dict[str, Any] = {}
    if isinstance(decorator, ast.Call):
        for keyword in decorator.keywords:
            if keyword.arg in _LITERAL_OPTIONS:
                try:
                    options[keyword.arg] = ast.literal_eval(keyword.value)
                except ValueError:
                    options[keyword.arg] = None  # not a literal; known only at import
    return options


def scan_source(source: str, *, root: Path, file: Path) -> list[TaskEntry]:
    """Tasks declared in one file's source. Raises ``SyntaxError`` for a broken file."""
    tree = ast.parse(source, filename=str(file))
    names = _TaskNames()
    names.visit(tree)
    if not names.direct and not names.modules - {"nuvom", "nuvom.task"} and "nuvom" not in source:
        return []
    module = module_name(root, file)
    entries = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            continue
        for decorator in node.decorator_list:
            if names.is_task(decorator):
                options = _literal_options(decorator)
                name = options.pop("name", None) or node.name
                entries.append(TaskEntry(name, node.name, module, str(file), node.lineno, options))
    return entries


def discover(root: Path | str = ".") -> Manifest:
    """Every task under ``root``, found without importing anything."""
    root = Path(root).resolve()
    manifest = Manifest(root=str(root))
    for file in iter_python_files(root):
        try:
            source = file.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            manifest.errors.append(f"{file}: {exc}")
            continue
        if "task" not in source:
            continue
        try:
            manifest.tasks.extend(scan_source(source, root=root, file=file))
        except SyntaxError as exc:
            manifest.errors.append(f"{file}:{exc.lineno}: {exc.msg}")
            log.warning("skipped %s:%s: %s", file, exc.lineno, exc.msg)
    return manifest
