"""``discover(root)``: walk, reuse what the previous manifest knows, parse only what changed.

A file whose mtime and size match the previous run is trusted without being
read; one whose stat changed is hashed, and parsed only if its content did.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from nuvom.discovery.manifest import (
    FileRecord,
    Manifest,
    ManifestDiff,
    ScanStats,
    TaskEntry,
    diff_manifests,
    load_manifest,
    save_manifest,
)
from nuvom.discovery.scanner import might_declare_tasks, scan_source
from nuvom.discovery.walker import SourceFile, walk_sources

log = logging.getLogger("nuvom.discovery")

# A file modified this close before we read it may change again without its
# mtime moving (coarse file-system clocks: FAT keeps 2 s); such a file is
# re-hashed on the next run instead of being trusted on its stat.
RACY_WINDOW_NS = 2_000_000_000

Progress = Callable[[int, int], None]  # (files done, files total)


def _tasks_by_file(manifest: Manifest | None) -> dict[str, list[TaskEntry]]:
    grouped: dict[str, list[TaskEntry]] = {}
    if manifest is not None:
        for entry in manifest.tasks:
            grouped.setdefault(entry.file, []).append(entry)
    return grouped


def _reuse(
    tasks: list[TaskEntry], record: FileRecord, source: SourceFile
) -> tuple[FileRecord, list[TaskEntry]]:
    if record.module != source.module:  # a folder gained or lost its __init__.py
        tasks = [dataclasses.replace(t, module=source.module) for t in tasks]
        record = dataclasses.replace(record, module=source.module)
    return record, tasks


def _scan(source: SourceFile, data: bytes, digest: str, racy: bool, stats: ScanStats) -> tuple[FileRecord, list[TaskEntry]]:  # fmt: skip
    record = FileRecord(digest, source.mtime_ns, source.size, source.module, racy=racy)
    if not might_declare_tasks(data):
        return record, []
    stats.parsed += 1
    try:
        result = scan_source(data, module=source.module, file=source.rel)
    except SyntaxError as exc:
        record.error = exc.msg
        record.error_line = exc.lineno
        log.debug("skipped %s:%s: %s", source.rel, exc.lineno, exc.msg)
        return record, []
    except (ValueError, RecursionError) as exc:  # null bytes, absurd nesting
        record.error = str(exc) or type(exc).__name__
        log.debug("skipped %s: %s", source.rel, record.error)
        return record, []
    record.warnings = result.warnings
    return record, result.tasks


def subtree_of(root: Path | str, folder: Path | str) -> str:
    """``folder`` relative to ``root``, "/"-separated ("" for the root itself).

    Raises ``ValueError`` when ``folder`` is not ``root`` or inside it.
    """
    root_path, folder_path = Path(root).resolve(), Path(folder).resolve()
    return "/".join(folder_path.relative_to(root_path).parts)


def _under(subtree: str, rel: str) -> bool:
    return not subtree or rel.startswith(f"{subtree}/")


def discover(
    root: Path | str = ".",
    *,
    previous: Manifest | None = None,
    include: Sequence[str] | None = None,
    exclude: Sequence[str] | None = None,
    progress: Progress | None = None,
    subtree: Path | str | None = None,
) -> Manifest:
    """Every task under ``root``, found without importing anything.

    ``previous`` (a manifest of the same root) lets unchanged files be skipped;
    ``include``/``exclude`` default to the previous run's. Broken files are
    recorded in ``Manifest.errors``, never raised. ``subtree`` (a folder inside
    ``root``) scans only that folder: what ``previous`` knows outside it is kept, so
    the result is what a scan of the whole root would give when nothing else changed.
    ``ScanStats`` then counts the subtree's files. Raises ``ValueError`` for a
    ``subtree`` outside ``root``.
    """
    started = time.perf_counter()
    root_path = Path(root).resolve()
    within = "" if subtree is None else subtree_of(root_path, root_path / subtree)
    if previous is not None and Path(previous.root) != root_path:
        previous = None
    include = list(include if include is not None else (previous.include if previous else []))
    exclude = list(exclude if exclude is not None else (previous.exclude if previous else []))
    manifest = Manifest(root=str(root_path), include=include, exclude=exclude)
    manifest.scanned_at = time.time()
    racy_after = time.time_ns() - RACY_WINDOW_NS
    stats = manifest.stats
    known = previous.files if previous is not None else {}
    known_tasks = _tasks_by_file(previous)
    if within and previous is not None:
        manifest.files.update((rel, r) for rel, r in previous.files.items() if not _under(within, rel))  # fmt: skip
        manifest.tasks.extend(t for t in previous.tasks if not _under(within, t.file))

    sources = walk_sources(root_path, include=include, exclude=exclude, start=within)
    stats.files = len(sources)
    for done, source in enumerate(sources, 1):
        if progress is not None:
            progress(done, stats.files)
        old = known.get(source.rel)
        if (
            old is not None
            and not old.racy
            and (old.mtime_ns, old.size) == (source.mtime_ns, source.size)
        ):
            stats.unchanged += 1
            record, tasks = _reuse(known_tasks.get(source.rel, []), old, source)
        else:
            try:
                with open(source.path, "rb") as handle:
                    data = handle.read()
            except OSError as exc:
                manifest.files[source.rel] = FileRecord("", source.mtime_ns, source.size, source.module, error=f"cannot read it: {exc.strerror or exc}")  # fmt: skip
                continue
            stats.hashed += 1
            digest = hashlib.sha256(data).hexdigest()
            racy = source.mtime_ns >= racy_after
            if old is not None and old.sha256 == digest:
                fresh = dataclasses.replace(old, mtime_ns=source.mtime_ns, size=source.size, racy=racy)  # fmt: skip
                record, tasks = _reuse(known_tasks.get(source.rel, []), fresh, source)
            else:
                record, tasks = _scan(source, data, digest, racy, stats)
        manifest.files[source.rel] = record
        manifest.tasks.extend(tasks)
    if within:  # in the order a whole scan gives: by file, then as declared in it
        manifest.files = dict(sorted(manifest.files.items()))
        manifest.tasks.sort(key=lambda entry: entry.file)
    stats.elapsed_secs = time.perf_counter() - started
    return manifest


def same_content(a: Manifest | None, b: Manifest) -> bool:
    """True when writing ``b`` over ``a`` would change nothing but the scan time."""
    return (
        a is not None
        and a.root == b.root
        and a.include == b.include
        and a.exclude == b.exclude
        and a.files == b.files
        and a.tasks == b.tasks
    )


def refresh_manifest(
    root: Path | str | None,
    manifest_path: Path | str,
    *,
    include: Sequence[str] | None = None,
    exclude: Sequence[str] | None = None,
    progress: Progress | None = None,
    previous: Manifest | None = None,
    subtree: Path | str | None = None,
) -> tuple[Manifest | None, Manifest, ManifestDiff]:
    """Re-run discovery against the manifest at ``manifest_path`` and save it if anything changed.

    ``root`` ``None`` means the manifest's own root (else the working directory).
    ``subtree`` rescans only that folder of the root and keeps the rest (see ``discover``).
    Returns ``(previous, new, diff)``. Raises ``OSError`` if the manifest cannot be written.
    """
    if previous is None:
        previous = load_manifest(manifest_path)
    if root is None:
        root = previous.root if previous is not None and Path(previous.root).is_dir() else "."
    new = discover(
        root,
        previous=previous,
        include=include,
        exclude=exclude,
        progress=progress,
        subtree=subtree,
    )
    if not same_content(previous, new):
        save_manifest(new, manifest_path)
    return previous, new, diff_manifests(previous, new)
