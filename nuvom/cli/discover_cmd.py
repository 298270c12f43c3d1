"""``nuvom discover tasks`` and ``nuvom list tasks``: the manifest, built and read without imports."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rich.markup import escape

from nuvom.cli.output import (
    Col,
    OutputFormat,
    console,
    err_console,
    fail,
    fit_lines,
    json_record,
    print_json,
)

if TYPE_CHECKING:
    from nuvom.discovery import Manifest, ManifestDiff, TaskEntry

DIFF_LINES_SHOWN = 50  # tasks listed per kind of change before "… and N more"
PROGRESS_MIN_FILES = 500  # trees smaller than this finish before a bar is worth drawing
DEFAULT_MANIFEST_PATH = Path(".nuvom/manifest.json")
DESCRIPTION_CHARS = 60  # a listed description is cut to its first line, at most this long
# Names stay whole; at 80 columns options go first, then tags.
TASK_COLUMNS = (
    Col("name"),
    Col("version", justify="right", drop=3),
    Col("module", fit="cut"),
    Col("signature", fit="cut", drop=2),
    Col("tags", fit="cut", drop=2),
    Col("description", fit="cut"),
    Col("options", fit="cut", drop=1),
)
# Shown only when some listed task declares a timetable; whole, it outlasts options and tags.
SCHEDULE_COLUMN = Col("schedule", drop=1)


def _manifest_path() -> Path:
    """``NUVOM_MANIFEST_PATH``, validated with every other setting.

    With no ``NUVOM_*`` variable and no ``.env`` every setting is its default,
    so the settings object (pydantic, ~0.15 s to import) is not built at all:
    ``nuvom list tasks`` stays fast.
    """
    configured = any(name.upper().startswith("NUVOM_") for name in os.environ)
    if not configured and not Path(".env").exists():
        return DEFAULT_MANIFEST_PATH
    from nuvom.runtime import current

    return current().settings.manifest_path


@contextmanager
def _progress(enabled: bool) -> Iterator[Callable[[int, int], None] | None]:
    if not enabled or not err_console.is_terminal:
        yield None
        return
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

    with Progress(
        TextColumn("discovering"),
        BarColumn(),
        MofNCompleteColumn(),
        console=err_console,
        transient=True,
    ) as bar:
        job = bar.add_task("files", total=None)
        step = max(1, PROGRESS_MIN_FILES // 5)

        def update(done: int, total: int) -> None:
            if total >= PROGRESS_MIN_FILES and (done % step == 0 or done == total):
                bar.update(job, completed=done, total=total)

        yield update


def _where(entry: TaskEntry) -> str:
    return f"{escape(entry.module)}:{escape(entry.function)}  [dim]{escape(entry.file)}:{entry.line}[/]"


def _print_diff(diff: ManifestDiff) -> None:
    kinds: list[tuple[str, str, list[Any]]] = [
        ("+", "green", diff.added),
        ("-", "red", diff.removed),
        ("~", "yellow", diff.changed),
    ]
    for sign, style, entries in kinds:
        for item in entries[:DIFF_LINES_SHOWN]:
            if sign == "~":
                from nuvom.discovery.manifest import what_changed

                old, new = item
                detail = escape("; ".join(what_changed(old, new)))
                console.print(f"[{style}]~ {escape(new.name)}[/]  {detail}", highlight=False)
            else:
                console.print(f"[{style}]{sign} {escape(item.name)}[/]  {_where(item)}", highlight=False)  # fmt: skip
        if len(entries) > DIFF_LINES_SHOWN:
            console.print(f"[{style}]… and {len(entries) - DIFF_LINES_SHOWN} more[/]", highlight=False)  # fmt: skip


def _subtree(path: Path | None) -> str:
    """``path`` relative to the project root (the working directory); "" for all of it.

    One manifest per project: a folder argument rescans that part of it, it does not
    move the root (so ``discover tasks app/`` keeps the tasks found elsewhere).
    """
    from nuvom.discovery.index import subtree_of

    if path is None:
        return ""
    if not path.is_dir():
        raise fail(f"{path}: no such folder", code=2)
    try:
        return subtree_of(Path.cwd(), path)
    except ValueError:
        raise fail(
            f"{path} is outside this project ({Path.cwd()}), whose tasks the manifest "
            "lists: run nuvom discover tasks in the folder that holds it",
            code=2,
        ) from None


def discover_tasks(
    path: Path | None,
    include: list[str],
    exclude: list[str],
    fmt: OutputFormat,
    export: Path | None = None,
) -> int:
    from nuvom.discovery import load_manifest, refresh_manifest, save_manifest

    subtree = _subtree(path)
    manifest_path = _manifest_path()
    previous = load_manifest(manifest_path)
    with _progress(fmt is OutputFormat.table) as progress:
        try:
            _, manifest, diff = refresh_manifest(
                Path("."),
                manifest_path,
                # What the flags say, not the last run's: workers' rescans reuse these.
                include=include,
                exclude=exclude,
                progress=progress,
                previous=previous,
                subtree=subtree,
            )
        except OSError as exc:
            raise fail(f"cannot write the manifest {manifest_path}: {exc}") from None
    if export is not None:
        try:
            save_manifest(manifest, export)
        except OSError as exc:
            raise fail(f"cannot write {export}: {exc}") from None
    stats = manifest.stats
    problems = manifest.errors
    if fmt is OutputFormat.json:
        print_json(
            {
                "root": manifest.root,
                "scanned": subtree or ".",
                "manifest": str(manifest_path),
                "tasks": len(manifest.tasks),
                "files": stats.files,
                "parsed": stats.parsed,
                "hashed": stats.hashed,
                "unchanged": stats.unchanged,
                "elapsed_secs": round(stats.elapsed_secs, 4),
                "added": [e.name for e in diff.added],
                "removed": [e.name for e in diff.removed],
                "changed": [new.name for _, new in diff.changed],
                "errors": [
                    {"file": p.file, "line": p.line, "message": p.message} for p in problems
                ],
                "warnings": [str(p) for p in manifest.warnings],
                "exported": None if export is None else str(export),
            }
        )
        return 0
    for problem in problems:
        err_console.print(f"[yellow]skipped[/] {escape(str(problem))}", highlight=False)
    for warning in manifest.warnings:
        err_console.print(f"[yellow]warning:[/] {escape(str(warning))}", highlight=False)
    _print_diff(diff)
    if not diff:
        console.print("[dim]no task changes[/]", highlight=False)
    counts = (
        f"{stats.files} files ({stats.unchanged} unchanged, {stats.hashed} read, "
        f"{stats.parsed} parsed{f', {len(problems)} skipped' if problems else ''}) "
        f"in {stats.elapsed_secs:.2f} s"
    )
    if subtree:
        under = sum(1 for entry in manifest.tasks if entry.file.startswith(f"{subtree}/"))
        summary = f"{subtree}/: {under} tasks in {counts}; {len(manifest.tasks)} tasks in all"
    else:
        summary = f"{len(manifest.tasks)} tasks in {counts}"
    console.print(f"{escape(summary)} → {escape(str(manifest_path))}", highlight=False)
    if export is not None:
        console.print(f"exported {len(manifest.tasks)} tasks → {escape(str(export))}", highlight=False)  # fmt: skip
    return 0


def signature_changes(old: Manifest | None, new: Manifest) -> tuple[list[str], list[str]]:
    """Tasks whose parameters changed while their version did not (errors), and tasks
    whose version was bumped (notes), as lines to print."""
    from nuvom.discovery.signatures import signature_text

    errors, notes = [], []
    before = {e.name: e for e in old.tasks} if old is not None else {}
    for entry in sorted(new.tasks, key=lambda e: e.name):
        was = before.get(entry.name)
        if was is None or was.params is None or entry.params is None:
            continue
        if was.signature == entry.signature and was.version == entry.version:
            continue
        change = f"{signature_text(was.params)} → {signature_text(entry.params)}"
        if was.version == entry.version:
            errors.append(
                f"{entry.name}: parameters changed ({change}) but version is still "
                f"{entry.version}: bump @task(version=...) so old jobs stay with old workers"
            )
        elif was.signature != entry.signature:
            notes.append(f"{entry.name}: version {was.version} → {entry.version}, {change}")
        else:
            notes.append(f"{entry.name}: version {was.version} → {entry.version}")
    return errors, notes


def _still_waiting(names: list[str]) -> dict[str, int]:
    """Jobs waiting in the configured store per task name (for removed tasks); {} when
    there is no store or it cannot list them."""
    from nuvom.cli.jobs_cmd import reading
    from nuvom.errors import NuvomError

    wanted = set(names)
    counts: dict[str, int] = {}
    try:
        with reading() as runtime:
            for job in runtime.queue.waiting_jobs():
                if job.func_name in wanted:
                    counts[job.func_name] = counts.get(job.func_name, 0) + 1
    except (NuvomError, OSError):
        return {}
    return counts


def check_tasks(
    path: Path | None, include: list[str], exclude: list[str], fmt: OutputFormat
) -> int:
    """``discover tasks --check``: the source against the manifest on disk, written nowhere."""
    from nuvom.discovery import diff_manifests, discover, load_manifest

    subtree = _subtree(path)
    manifest_path = _manifest_path()
    committed = load_manifest(manifest_path)
    root = Path(committed.root) if committed is not None and Path(committed.root).is_dir() else Path(".")  # fmt: skip
    try:
        current = discover(root, include=include or None, exclude=exclude or None,
                           subtree=subtree or None, previous=committed)  # fmt: skip
    except OSError as exc:
        raise fail(f"cannot read the project: {exc}") from None
    errors, notes = signature_changes(committed, current)
    removed = [e.name for e in diff_manifests(committed, current).removed]
    waiting = _still_waiting(removed) if removed else {}
    warnings = [
        f"{name}: removed from the source, and {count} of its jobs still wait in the store"
        for name, count in sorted(waiting.items())
    ]
    if fmt is OutputFormat.json:
        print_json({"manifest": str(manifest_path), "errors": errors, "bumped": notes,
                    "warnings": warnings, "ok": not errors})  # fmt: skip
        return 1 if errors else 0
    if committed is None:
        err_console.print(
            f"[yellow]warning:[/] no manifest at {escape(str(manifest_path))} to check against "
            "(run nuvom discover tasks and commit it)", highlight=False,
        )  # fmt: skip
    for line in errors:
        console.print(f"[red]✗[/] {escape(line)}", highlight=False)
    for line in notes:
        console.print(f"[green]✓[/] {escape(line)}", highlight=False)
    for line in warnings:
        err_console.print(f"[yellow]warning:[/] {escape(line)}", highlight=False)
    if not errors:
        console.print(f"{len(current.tasks)} tasks: no signature changed without a version bump", highlight=False)  # fmt: skip
    return 1 if errors else 0


def _load_or_discover(refresh: bool) -> Manifest:
    from nuvom.discovery import load_manifest, refresh_manifest

    manifest_path = _manifest_path()
    manifest = None if refresh else load_manifest(manifest_path, files=False)
    if manifest is None:
        try:
            _, manifest, _ = refresh_manifest(None, manifest_path)
        except OSError as exc:
            raise fail(f"cannot write the manifest {manifest_path}: {exc}") from None
    return manifest


def _options_text(entry: TaskEntry) -> str:
    return ", ".join(f"{k}={v!r}" for k, v in entry.options.items() if k not in ("tags", "version"))


def _signature_text(entry: TaskEntry) -> str:
    from nuvom.discovery.signatures import signature_text

    return "?" if entry.params is None else signature_text(entry.params)


def _schedule(entry: TaskEntry) -> dict[str, Any] | None:
    """The timetable a task declares (``cron``/``interval``, ``timezone``), else ``None``."""
    cron, interval = entry.options.get("cron"), entry.options.get("interval")
    if cron is None and interval is None:
        return None
    return {"cron": cron, "interval": interval, "timezone": entry.options.get("timezone", "UTC")}


def _schedule_text(entry: TaskEntry) -> str:
    declared = _schedule(entry)
    if declared is None:
        return ""
    if declared["cron"] is None:
        from nuvom.cli.schedules_cmd import every

        interval = declared["interval"]
        return every(interval) if isinstance(interval, int | float) else repr(interval)
    zone = declared["timezone"]
    return f"{declared['cron']}" + (f" ({zone})" if zone != "UTC" else "")


def list_tasks(tags: list[str], fmt: OutputFormat, refresh: bool) -> int:
    manifest = _load_or_discover(refresh)
    wanted = set(tags)
    entries = [e for e in manifest.tasks if not wanted or wanted & set(e.tags)]
    if fmt is OutputFormat.json:
        # One task per line: readable, and the C encoder (indent= would use the slow one).
        lines = [
            json.dumps(
                json_record({"name": e.name, "version": e.version, "module": e.module,
                             "function": e.function, "file": e.file, "line": e.line,
                             "signature": None if e.params is None else _signature_text(e),
                             "params": e.params, "tags": e.tags,
                             "description": e.description, "schedule": _schedule(e),
                             "options": e.options}),
                ensure_ascii=False,
                allow_nan=False,
            )
            for e in entries
        ]  # fmt: skip
        sys.stdout.write("[\n  " + ",\n  ".join(lines) + "\n]\n" if lines else "[]\n")
        return 0
    if not entries:
        what = f" tagged {', '.join(sorted(wanted))}" if wanted else ""
        console.print(f"no tasks{escape(what)} under {escape(manifest.root)}", highlight=False)
        return 0
    scheduled = any(_schedule(e) is not None for e in entries)
    columns = (*TASK_COLUMNS[:3], SCHEDULE_COLUMN, *TASK_COLUMNS[3:]) if scheduled else TASK_COLUMNS
    rows = []
    for e in entries:
        summary = (e.description or "").strip().splitlines()
        description = summary[0] if summary else ""
        if len(description) > DESCRIPTION_CHARS:
            description = description[: DESCRIPTION_CHARS - 1] + "…"
        row = [e.name, str(e.version), f"{e.module}:{e.function}", _signature_text(e),
               ",".join(e.tags), description, _options_text(e)]  # fmt: skip
        if scheduled:
            row.insert(3, _schedule_text(e))
        rows.append(row)
    # Plain aligned columns: a Rich Table measures every cell and takes seconds on
    # thousands of tasks; this stays well under the 0.3 s a listing may take.
    lines = fit_lines(columns, rows)
    header = lines.pop(0)
    console.print(f"[bold]{escape(header)}[/]", highlight=False)
    sys.stdout.write("\n".join(lines) + "\n")
    footer = f"{len(entries)} tasks under {escape(manifest.root)}"
    console.print(footer, highlight=False, soft_wrap=False)  # a long root wraps, not overflows
    return 0
