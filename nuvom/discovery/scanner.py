"""Read one module's source with ``ast`` and list the functions it decorates as nuvom tasks.

Nothing is imported or executed: the decorator is recognised by following the
module's own ``import`` statements, so aliases (``import nuvom as n``) work.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from nuvom.discovery.manifest import TaskEntry
from nuvom.discovery.signatures import read_params
from nuvom.options import LITERAL_OPTIONS, SCHEDULE_OPTIONS, TEXT_OPTIONS, TIMETABLE_OPTIONS

# Dotted paths that name the decorator once a module's imports are resolved.
# ``nuvom.task`` is both the package attribute and the (callable) submodule.
TASK_DECORATORS = frozenset({"nuvom.task", "nuvom.task.task"})
# Statements whose bodies still run at import time (a decorator inside them registers a task).
_IMPORT_TIME_BLOCKS = (ast.If, ast.Try, ast.With)


def might_declare_tasks(data: bytes) -> bool:
    """False when the source cannot declare a task: every form names both words."""
    return b"nuvom" in data and b"task" in data


def _import_time_statements(body: list[ast.stmt]) -> Iterator[ast.stmt]:
    for node in body:
        yield node
        if isinstance(node, _IMPORT_TIME_BLOCKS):
            for block in ("body", "orelse", "finalbody"):
                yield from _import_time_statements(getattr(node, block, []))
            for handler in getattr(node, "handlers", []):
                yield from _import_time_statements(handler.body)


def _is_nuvom(module: str | None) -> bool:
    return module is not None and (module == "nuvom" or module.startswith("nuvom."))


def _aliases(statements: list[ast.stmt]) -> dict[str, str]:
    """Local name -> the nuvom dotted path it is bound to."""
    aliases: dict[str, str] = {}
    for node in statements:
        if isinstance(node, ast.Import):
            for alias in node.names:
                if _is_nuvom(alias.name):
                    if alias.asname:
                        aliases[alias.asname] = alias.name
                    else:  # ``import nuvom.task`` binds ``nuvom``
                        aliases["nuvom"] = "nuvom"
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and _is_nuvom(node.module):
            for alias in node.names:
                aliases[alias.asname or alias.name] = f"{node.module}.{alias.name}"
    return aliases


def _dotted(node: ast.expr) -> str | None:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        head = _dotted(node.value)
        return f"{head}.{node.attr}" if head else None
    return None


def _resolves_to_task(decorator: ast.expr, aliases: dict[str, str]) -> bool:
    target = decorator.func if isinstance(decorator, ast.Call) else decorator
    dotted = _dotted(target)
    if dotted is None:
        return False
    head, _, rest = dotted.partition(".")
    bound = aliases.get(head)
    if bound is None:
        return False
    return (f"{bound}.{rest}" if rest else bound) in TASK_DECORATORS


def _options(decorator: ast.expr) -> tuple[dict[str, Any], Any, list[str]]:
    """Literal options of ``@task(...)``, its ``name=`` (``...`` when not a literal), and
    the literal options that are not literals (recorded as ``None``)."""
    options: dict[str, Any] = {}
    name: Any = None
    computed: list[str] = []
    if not isinstance(decorator, ast.Call):
        return options, name, computed
    for keyword in decorator.keywords:
        key = keyword.arg
        if key == "name":
            try:
                name = ast.literal_eval(keyword.value)
            except ValueError:
                name = ...
        elif key in LITERAL_OPTIONS:
            try:
                value = ast.literal_eval(keyword.value)
            except ValueError:
                value = None  # computed at import time; unknown until then
                computed.append(key)
            options[key] = list(value) if isinstance(value, tuple | set | frozenset) else value
        elif key in TEXT_OPTIONS:  # hooks: listed by their source text
            options[key] = ast.unparse(keyword.value)
    return options, name, computed


def _schedule_warning(options: dict[str, Any], computed: list[str]) -> str | None:
    """Why a schedule the decorator seems to declare cannot be read from source, if it cannot.

    Workers declare schedules from the manifest without importing the task, so a timetable
    computed at import time (``interval=5 * 60``, ``cron=CRON``) declares none.
    """
    periodic = any(options.get(key) is not None for key in TIMETABLE_OPTIONS)
    unread = [
        key for key in computed if key in (SCHEDULE_OPTIONS if periodic else TIMETABLE_OPTIONS)
    ]
    if not unread:
        return None
    names = ", ".join(f"{key}=" for key in unread)
    what = "is not a literal" if len(unread) == 1 else "are not literals"
    return (
        f"{names} {what}, and schedules are read from source: this task declares none "
        "(write literals, or call .schedule() at run time)"
    )


def _methods_marked(node: ast.ClassDef, aliases: dict[str, str]) -> list[str]:
    """Warnings for methods decorated as tasks: refused at import, so listed as no task."""
    return [
        f"line {item.lineno}: @task on method {node.name}.{item.name} is not a task "
        "(a task is a module-level function)"
        for item in node.body
        if isinstance(item, ast.FunctionDef | ast.AsyncFunctionDef)
        and any(_resolves_to_task(d, aliases) for d in item.decorator_list)
    ]


@dataclass(slots=True)
class ScanResult:
    tasks: list[TaskEntry]
    warnings: list[str]


def scan_source(source: bytes | str, *, module: str, file: str) -> ScanResult:
    """Tasks declared at import time in one file. Raises ``SyntaxError`` for a broken file."""
    tree = ast.parse(source, filename=file)
    statements = list(_import_time_statements(tree.body))
    aliases = _aliases(statements)
    tasks: list[TaskEntry] = []
    warnings: list[str] = []
    if not aliases:
        return ScanResult(tasks, warnings)
    for node in statements:
        if isinstance(node, ast.ClassDef):
            warnings += _methods_marked(node, aliases)
        if not isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            continue
        for decorator in node.decorator_list:
            if not _resolves_to_task(decorator, aliases):
                continue
            options, name, computed = _options(decorator)
            unreadable = _schedule_warning(options, computed)
            if unreadable is not None:
                warnings.append(f"line {node.lineno}: {unreadable}")
            if name is ... or (name is not None and not isinstance(name, str)):
                warnings.append(
                    f"line {node.lineno}: task name is not a literal; listed as {node.name!r}"
                )
                name = None
            description = options.pop("description", None)
            if description is None:
                description = ast.get_docstring(node)
            tasks.append(
                TaskEntry(
                    name=name or node.name,
                    function=node.name,
                    module=module,
                    file=file,
                    line=node.lineno,
                    description=description,
                    options=options,
                    params=read_params(node),
                )
            )
            break
    return ScanResult(tasks, warnings)
