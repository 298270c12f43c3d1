"""Portability guard: library code stays runnable on Windows, and tests spawn.

No ``fcntl``, ``os.fork``, ``signal.alarm``, hard-coded ``/tmp``; every
multiprocessing context nuvom makes is ``spawn``, and so is this test run's default.
"""

from __future__ import annotations

import ast
import multiprocessing
from pathlib import Path

import nuvom

LIBRARY = Path(nuvom.__file__).resolve().parent
FORBIDDEN_MODULES = {"fcntl": "file locks that Windows lacks; use atomic renames"}
FORBIDDEN_CALLS = {
    ("os", "fork"): "Windows has no fork; use the spawn context",
    ("os", "forkpty"): "Windows has no fork",
    ("signal", "alarm"): "Windows has no SIGALRM; use a timer thread or a deadline",
    ("signal", "setitimer"): "Windows has no interval timers",
}


def _attribute_path(node: ast.AST) -> tuple[str, ...]:
    parts: list[str] = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if isinstance(node, ast.Name):
        parts.append(node.id)
    return tuple(reversed(parts))


def _import_problems(node: ast.Import | ast.ImportFrom) -> list[str]:
    names = [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module or ""]
    found = [
        f"imports {name} ({FORBIDDEN_MODULES[name.split('.')[0]]})"
        for name in names
        if name.split(".")[0] in FORBIDDEN_MODULES
    ]
    if isinstance(node, ast.ImportFrom):
        found += [
            f"imports {node.module}.{alias.name}"
            for alias in node.names
            if (node.module, alias.name) in FORBIDDEN_CALLS
        ]
    return found


def _node_problems(node: ast.AST) -> list[str]:
    if isinstance(node, ast.Import | ast.ImportFrom):
        return _import_problems(node)
    if isinstance(node, ast.Attribute):
        path = _attribute_path(node)
        if path[-2:] in FORBIDDEN_CALLS:
            return [f"uses {'.'.join(path)} ({FORBIDDEN_CALLS[path[-2:]]})"]
        if path[-2:] in {("multiprocessing", "Process"), ("multiprocessing", "Pool")}:
            return [f"uses multiprocessing.{path[-1]} outside a spawn context"]
    if isinstance(node, ast.Call):
        path = _attribute_path(node.func)
        if path and path[-1] == "set_start_method":
            return ["sets the global start method"]
        if path and path[-1] == "get_context":
            methods = [getattr(arg, "value", None) for arg in node.args]
            if methods != ["spawn"]:
                return [f"multiprocessing.get_context({methods}) is not spawn"]
    if isinstance(node, ast.Constant) and isinstance(node.value, str) and "/tmp" in node.value:
        return [f"hard-coded /tmp in {node.value[:40]!r}"]
    return []


def problems_in(source: str, where: str) -> list[str]:
    """Every non-portable use in one module's source, as ``where:line: what``."""
    return [
        f"{where}:{getattr(node, 'lineno', '?')}: {problem}"
        for node in ast.walk(ast.parse(source))
        for problem in _node_problems(node)
    ]


def test_library_code_has_no_unportable_calls():
    found: list[str] = []
    for path in sorted(LIBRARY.rglob("*.py")):
        found += problems_in(path.read_text(encoding="utf-8"), str(path.relative_to(LIBRARY)))
    assert found == []


def test_the_guard_catches_each_unportable_use():
    bad = """
import fcntl
import os, signal, multiprocessing
from os import fork
os.fork()
signal.alarm(3)
multiprocessing.Process(target=print)
multiprocessing.get_context("fork")
path = "/tmp/nuvom.db"
"""
    found = problems_in(bad, "bad.py")

    for needle in ("fcntl", "os.fork", "signal.alarm", "multiprocessing.Process",
                   "get_context", "/tmp"):  # fmt: skip
        assert any(needle in problem for problem in found), (needle, found)
    assert problems_in('ctx = multiprocessing.get_context("spawn")', "ok.py") == []


def test_the_suite_runs_with_the_spawn_start_method():
    assert multiprocessing.get_start_method() == "spawn"
