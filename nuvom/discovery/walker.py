"""List a project's ``.py`` files with their stat and dotted module name, honouring ignores.

Skipped by default: hidden folders (``.git``, ``.venv``, ``.tox``…), virtualenvs
(any folder holding ``pyvenv.cfg``), ``__pycache__``, ``node_modules``,
``site-packages``; then whatever ``.nuvomignore`` (gitignore syntax) and
``--exclude`` say. ``--include`` keeps only the files it matches.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

IGNORE_FILE = ".nuvomignore"
SKIPPED_DIRS = frozenset({"__pycache__", "node_modules", "site-packages"})
VIRTUALENV_MARKER = "pyvenv.cfg"
PACKAGE_MARKER = "__init__.py"


@dataclass(slots=True)
class SourceFile:
    rel: str  # relative to the root, "/"-separated
    path: str  # absolute
    module: str
    mtime_ns: int
    size: int


def _spec(patterns: Sequence[str]) -> Any:
    if not patterns:
        return None
    import pathspec  # imported only when there is something to match

    return pathspec.GitIgnoreSpec.from_lines(list(patterns))


def read_ignore_file(root: Path) -> list[str]:
    try:
        text = (root / IGNORE_FILE).read_text(encoding="utf-8")
    except FileNotFoundError:
        return []
    return [line for line in text.splitlines() if line.strip() and not line.startswith("#")]


def package_prefix(folder: Path) -> list[str]:
    """The dotted prefix of modules in ``folder``: its package chain, walking up."""
    parts: list[str] = []
    while (folder / PACKAGE_MARKER).is_file() and folder.parent != folder:
        parts.insert(0, folder.name)
        folder = folder.parent
    return parts


def _module(prefix: list[str], name: str) -> str:
    stem = name[:-3]
    if stem == "__init__":
        return ".".join(prefix) or stem
    return ".".join([*prefix, stem])


def _skipped_folder(root: Path, rel: str, ignored: Any) -> bool:
    """True when a walk of ``root`` would not enter the folder ``rel`` ("a/b"), or one above it."""
    parts = rel.split("/")
    for depth, name in enumerate(parts, 1):
        here = "/".join(parts[:depth])
        if name.startswith(".") or name in SKIPPED_DIRS:
            return True
        if ignored is not None and ignored.match_file(here + "/"):
            return True
        if (root.joinpath(*parts[:depth]) / VIRTUALENV_MARKER).exists():
            return True
    return False


def _first_folder(root: Path, start: str, ignored: Any) -> list[tuple[str, str, list[str]]]:
    """Where a walk of ``root`` from the folder ``start`` begins; nowhere if it is skipped."""
    if not start:
        return [(str(root), "", package_prefix(root))]
    if _skipped_folder(root, start, ignored):
        return []
    first = root.joinpath(*start.split("/"))
    return [(str(first), f"{start}/", package_prefix(first))]


def walk_sources(
    root: Path, *, include: Sequence[str] = (), exclude: Sequence[str] = (), start: str = ""
) -> list[SourceFile]:
    """Every ``.py`` under ``root`` that discovery should read, sorted by path.

    ``start`` ("a/b", relative to ``root``) walks only that folder, with the same names,
    modules and ignore rules as a walk of the whole root would give its files.
    """
    root = root.resolve()
    ignored = _spec([*read_ignore_file(root), *exclude])
    included = _spec(include)
    files: list[SourceFile] = []
    # (absolute folder, relative folder with trailing "/" or "", its prefix if it is a package)
    pending: list[tuple[str, str, list[str]]] = _first_folder(root, start.strip("/"), ignored)
    while pending:
        folder, rel_folder, package_path = pending.pop()
        try:
            with os.scandir(folder) as listing:
                entries = list(listing)
        except OSError:
            continue
        names = {e.name for e in entries}
        if rel_folder and VIRTUALENV_MARKER in names:
            continue
        prefix = package_path if PACKAGE_MARKER in names else []
        for entry in entries:
            name = entry.name
            rel = rel_folder + name
            if entry.is_dir(follow_symlinks=False):
                if name.startswith(".") or name in SKIPPED_DIRS:
                    continue
                if ignored is not None and ignored.match_file(rel + "/"):
                    continue
                pending.append((entry.path, rel + "/", [*prefix, name]))
            elif name.endswith(".py"):
                if ignored is not None and ignored.match_file(rel):
                    continue
                if included is not None and not included.match_file(rel):
                    continue
                try:
                    stat = entry.stat()
                except OSError:
                    continue
                files.append(
                    SourceFile(
                        rel, entry.path, _module(prefix, name), stat.st_mtime_ns, stat.st_size
                    )
                )
    files.sort(key=lambda f: f.rel)
    return files
