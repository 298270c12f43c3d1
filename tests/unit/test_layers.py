"""Which way the parts talk, read from the imports themselves (``docs/architecture.md``).

Every ``import`` in ``nuvom/`` is parsed, including the lazy ones inside
functions; an import under ``if TYPE_CHECKING:`` counts unless a rule says so.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path

import pytest

import nuvom

PACKAGE = Path(nuvom.__file__).parent


@dataclass(frozen=True)
class Import:
    module: str  # the importing module, dotted
    target: str  # what it imports, dotted (``from a import b`` gives ``a.b`` and ``a``)
    line: int
    typing_only: bool


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _imports(path: Path) -> list[Import]:
    module = _module_name(path)
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found: list[Import] = []

    def visit(node: ast.AST, typing_only: bool) -> None:
        if isinstance(node, ast.If) and _is_type_checking(node):
            for child in node.body:
                visit(child, True)
            for child in node.orelse:
                visit(child, typing_only)
            return
        if isinstance(node, ast.Import):
            for alias in node.names:
                found.append(Import(module, alias.name, node.lineno, typing_only))
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                base = ".".join([*anchor, base] if base else anchor)
            found.append(Import(module, base, node.lineno, typing_only))
            for alias in node.names:
                found.append(Import(module, f"{base}.{alias.name}", node.lineno, typing_only))
        for child in ast.iter_child_nodes(node):
            visit(child, typing_only)

    visit(ast.parse(path.read_text(encoding="utf-8")), False)
    return found


ALL_IMPORTS = [i for path in sorted(PACKAGE.rglob("*.py")) for i in _imports(path)]


def _within(name: str, prefix: str) -> bool:
    return name == prefix or name.startswith(prefix + ".")


def _offending(
    importers: str, forbidden: tuple[str, ...], *, count_typing: bool = True
) -> list[str]:
    return [
        f"{i.module}:{i.line} imports {i.target}"
        for i in ALL_IMPORTS
        if _within(i.module, importers)
        and (count_typing or not i.typing_only)
        and any(_within(i.target, f) for f in forbidden)
    ]


def test_the_parser_sees_lazy_and_typing_imports():
    """The rules below could not fail if the walk missed the imports they are about."""
    worker = [i for i in ALL_IMPORTS if i.module == "nuvom.worker"]
    assert any(i.target == "nuvom.plugins.loader" for i in worker), "a lazy import in run()"
    assert any(i.typing_only and i.target.startswith("nuvom.runtime") for i in worker)


@pytest.mark.parametrize(
    "forbidden",
    ["nuvom.worker", "nuvom.execution", "nuvom.task", "nuvom.cli", "nuvom.dashboard",
     "nuvom.plugins", "nuvom.scheduler", "nuvom.workflow"],
)  # fmt: skip
def test_backends_import_nothing_above_them(forbidden):
    assert _offending("nuvom.backends", (forbidden,)) == []


def test_execution_does_not_import_the_worker():
    assert _offending("nuvom.execution", ("nuvom.worker",)) == []


def test_job_imports_nothing_above_it():
    below = ("nuvom.errors", "nuvom.options", "nuvom.limits")
    above = [
        f"{i.module}:{i.line} imports {i.target}"
        for i in ALL_IMPORTS
        if i.module in ("nuvom.job", "nuvom.options", "nuvom.limits")
        and _within(i.target, "nuvom")
        and not any(_within(i.target, ok) for ok in below)
    ]
    assert above == []


def test_library_code_never_imports_the_cli():
    library = [i for i in ALL_IMPORTS if not _within(i.module, "nuvom.cli")]
    offending = [
        f"{i.module}:{i.line}"
        for i in library
        if _within(i.target, "nuvom.cli") and i.module != "nuvom.__main__"
    ]
    assert offending == []


def test_plugins_reach_the_runtime_only_through_what_they_are_handed():
    """The loader and registry get the runtime as an argument; they name its type, no more."""
    for module in ("nuvom.plugins.loader", "nuvom.plugins.registry", "nuvom.plugins.contracts"):
        assert _offending(module, ("nuvom.runtime",), count_typing=False) == []


def test_the_runtime_builds_backends_by_name_not_by_engine():
    """Adding an engine is a folder and a line in backends/names.py; runtime.py stays as it is."""
    engines = tuple(
        f"nuvom.backends.{e}" for e in ("memory", "file", "sqlite", "postgres", "redis")
    )
    assert _offending("nuvom.runtime", engines) == []
