"""Job commands: status, inspect job, history recent, retry, cancel, prune.

The first three only look: they open the store read-only (``read_only_runtime``),
so running one where nothing was ever enqueued creates nothing, and says where it looked.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from rich.markup import escape
from rich.panel import Panel
from rich.table import Table

from nuvom.cli.output import (
    Col,
    OutputFormat,
    console,
    fail,
    fit_table,
    print_json,
    seconds,
    styled_status,
    when,
)
from nuvom.job import JobStatus
from nuvom.records import JobRecord

# Where a store is and why a job waits are shared with the dashboard; other commands import
# them from here as before.
from nuvom.store_view import StorePlace as StorePlace
from nuvom.store_view import age_secs, cancel, waiting_on
from nuvom.store_view import store_place as store_place

if TYPE_CHECKING:
    import typer

    from nuvom.config import Settings
    from nuvom.discovery import Manifest
    from nuvom.runtime import Runtime


DEMO_TASK_PREFIX = "demo."  # the names of nuvom's sample tasks (nuvom/demo/tasks.py)
OUTCOME_CHARS = 200  # of a result's repr or an error a history row measures; the table cuts it
# Narrow terminals lose the times first, then the attempt count; ids and statuses stay whole.
HISTORY_COLUMNS = (
    Col("id"),
    Col("task", fit="cut"),
    Col("status"),
    Col("attempts", justify="right", drop=1),
    Col("created", drop=3),
    Col("took", justify="right", drop=2),
    Col("result / error", fit="cut"),
)
ATTEMPT_COLUMNS = (
    Col("#", justify="right"),
    Col("status"),
    Col("started", drop=2),
    Col("took", justify="right", drop=1),
    Col("worker", fit="cut"),
    Col("error", fit="cut"),
)


@contextmanager
def reading() -> Iterator[Runtime]:
    """The backends opened read-only for one command, closed after it."""
    from nuvom.runtime import read_only_runtime

    runtime = read_only_runtime()
    try:
        yield runtime
    finally:
        runtime.close()


def _not_found(job_id: str, runtime: Runtime) -> typer.Exit:
    return fail(f"no job with id {job_id!r} {store_place(runtime.settings, 'result').note()}")


class TaskRetries:
    """The retries a job gets when it set none: its task's ``retries``, resolved as the worker
    does (``RunOptions.resolve``: the job's override, else the task's, else the default).

    The task is the one registered in this process if there is one, else its declaration
    in the source (discovery reads options with ``ast``; nothing is imported, and the
    manifest is refreshed in memory only), else one of nuvom's own ``nuvom demo`` tasks.
    A task nowhere to be found, or whose ``retries`` is not a literal, stays unknown (``None``).
    """

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime
        self._declared: Manifest | None = None
        self._scanned = False

    def _from_source(self, name: str) -> Any:
        from nuvom.options import OPTIONS

        if not self._scanned:
            self._scanned = True
            self._declared = _declarations(self.runtime.settings)
        entry = self._declared.find(name) if self._declared is not None else None
        return None if entry is None else entry.options.get("retries", OPTIONS["retries"].default)

    def of(self, name: str) -> int | None:
        task = self.runtime.registry.find(name)
        value = task.retries if task is not None else self._from_source(name)
        if task is None and value is None and name.startswith(DEMO_TASK_PREFIX):
            import nuvom.demo.tasks  # noqa: F401  nuvom's code, not the project's: registers them

            demo = self.runtime.registry.find(name)
            value = demo.retries if demo is not None else None
        return value if isinstance(value, int) and not isinstance(value, bool) else None

    def fill(self, records: Sequence[JobRecord]) -> None:
        """Set ``max_retries`` on the records that leave it to their task."""
        known: dict[str, int | None] = {}
        for record in records:
            if record.max_retries is None and record.func_name:
                if record.func_name not in known:
                    known[record.func_name] = self.of(record.func_name)
                record.max_retries = known[record.func_name]


def _declarations(settings: Settings) -> Manifest | None:
    """The project's tasks as the source declares them now; the manifest file is not written."""
    from pathlib import Path

    from nuvom.discovery import discover, load_manifest

    manifest = load_manifest(settings.manifest_path)
    root = manifest.root if manifest is not None and Path(manifest.root).is_dir() else "."
    try:
        return discover(root, previous=manifest)
    except OSError:  # an unreadable tree: what the manifest says is the best there is
        return manifest


def _get(job_id: str, runtime: Runtime) -> JobRecord:
    from nuvom.result_store import get_record

    record = get_record(job_id, backend=runtime.results)
    if record is None:
        raise _not_found(job_id, runtime)
    return record


def show_status(job_id: str, fmt: OutputFormat) -> int:
    with reading() as runtime:
        record = _get(job_id, runtime)
    if fmt is OutputFormat.json:
        print_json({"id": record.id, "status": record.status.value, "result": record.result,
                    "error_type": record.error_type, "error_message": record.error_message})  # fmt: skip
    elif record.status is JobStatus.SUCCESS:
        console.print(
            escape(repr(record.result))
            if isinstance(record.result, str)
            else escape(str(record.result)),
            highlight=False,
            soft_wrap=False,
        )
    elif record.error_type and record.status in (JobStatus.FAILED, JobStatus.RETRYING):
        console.print(
            f"{styled_status(record.status.value)} {escape(record.error_type)}: {escape(record.error_message or '')}",
            highlight=False,
            soft_wrap=False,
        )
    else:
        console.print(styled_status(record.status.value))
    return 0


def _call_text(record: JobRecord) -> str:
    parts = [repr(a) for a in record.args] + [f"{k}={v!r}" for k, v in record.kwargs.items()]
    return f"{record.func_name}({', '.join(parts)})"


def show_job(job_id: str, fmt: OutputFormat) -> None:
    with reading() as runtime:
        record = _get(job_id, runtime)
        TaskRetries(runtime).fill([record])
        waiting = waiting_on(runtime, record)
    if fmt is OutputFormat.json:
        print_json({**record.to_dict(), "waiting_on": waiting})
        return
    grid = Table.grid(padding=(0, 2))
    grid.add_column(style="bold")
    grid.add_column(overflow="fold")
    grid.add_row("id", escape(record.id))
    grid.add_row("status", styled_status(record.status.value))
    if waiting:
        grid.add_row("waiting", escape(waiting))
    grid.add_row("call", escape(_call_text(record)))
    grid.add_row("queue", escape(f"{record.queue}  (priority {record.priority})"))
    if record.has_result:
        grid.add_row("result", escape(repr(record.result)))
    if record.error_type:
        grid.add_row("error", escape(f"{record.error_type}: {record.error_message}"))
    grid.add_row(
        "attempts",
        str(record.attempts)
        + (f" (retries allowed: {record.max_retries})" if record.max_retries is not None else ""),
    )
    grid.add_row("created", when(record.created_at))
    if record.due_at:
        grid.add_row("due", when(record.due_at))
    grid.add_row("started", when(record.started_at))
    grid.add_row("finished", when(record.finished_at))
    grid.add_row("duration", seconds(record.duration_secs))
    grid.add_row("worker", escape(record.worker_id or "-"))
    if record.origin and "schedule" in record.origin:
        tick = record.origin.get("tick")
        tick_text = when(tick) if isinstance(tick, int | float) else "-"
        grid.add_row("schedule", escape(f"{record.origin['schedule']}, tick {tick_text}"))
    console.print(Panel(grid, title=f"job {escape(record.id)}", expand=False))
    if record.history:
        rows = []
        for attempt in record.history:
            took = (
                attempt.finished_at - attempt.started_at
                if attempt.finished_at and attempt.started_at
                else None
            )
            error = f"{attempt.error_type}: {attempt.error_message}" if attempt.error_type else ""
            rows.append((str(attempt.number), styled_status(attempt.status), when(attempt.started_at),
                         seconds(took), escape(attempt.worker_id or "-"), escape(error)))  # fmt: skip
        console.print(fit_table("attempts", ATTEMPT_COLUMNS, rows))
    if record.traceback:
        console.print(
            Panel(
                escape(record.traceback.rstrip()),
                title="traceback",
                border_style="red",
                expand=False,
            ),
            soft_wrap=False,  # wrap long lines inside the panel rather than crop them
        )


def _parse_status(status: str | None) -> JobStatus | None:
    if status is None:
        return None
    try:
        return JobStatus(status.upper())
    except ValueError:
        names = ", ".join(s.value for s in JobStatus)
        raise fail(f"unknown status {status!r} (one of {names})", code=2) from None


def show_history(limit: int, status: str | None, fmt: OutputFormat) -> None:
    chosen = _parse_status(status)
    with reading() as runtime:
        records = runtime.results.list_jobs(status=chosen, limit=limit)
        if fmt is OutputFormat.json:
            TaskRetries(runtime).fill(records)
        place = store_place(runtime.settings, "result")
    if fmt is OutputFormat.json:
        print_json([r.to_dict() for r in records])
        return
    if not records:
        what = f"no {chosen.value} jobs" if chosen else "no jobs yet"
        console.print(escape(f"{what} {place.note()}"), highlight=False)
        return
    rows = []
    for r in records:
        outcome = (
            repr(r.result)
            if r.has_result
            else (f"{r.error_type}: {r.error_message}" if r.error_type else "")
        )
        rows.append((escape(r.id), escape(r.func_name or "-"), styled_status(r.status.value), str(r.attempts),
                     when(r.created_at), seconds(r.duration_secs), escape(outcome[:OUTCOME_CHARS])))  # fmt: skip
    title = f"recent jobs{f' ({chosen.value})' if chosen else ''}"
    console.print(fit_table(title, HISTORY_COLUMNS, rows))


def retry_one(job_id: str) -> None:
    from nuvom.sdk import retry_job

    # JobNotFound and JobStateError reach main() and become one line there.
    job = retry_job(job_id)
    console.print(f"job {job.id} re-enqueued ({job.status.value})", markup=False)


def cancel_one(job_id: str) -> None:
    # JobNotFound and JobStateError reach main() and become one line there.
    done = cancel(job_id)
    if done.workflow:
        console.print(f"workflow {job_id}: {len(done.ids)} waiting job(s) cancelled", markup=False)
        return
    status = done.status.value if done.status is not None else "CANCELLED"
    console.print(f"job {job_id} {status}", markup=False)


def parse_age(text: str) -> float:
    age = age_secs(text)
    if age is None:
        raise fail(f"--older-than {text!r}: use a number with s, m, h, d or w (e.g. 7d)", code=2)
    return age


def prune_jobs(older_than: str, status: str | None) -> None:
    from nuvom.result_store import get_result_backend

    age = parse_age(older_than)
    chosen = _parse_status(status)
    if chosen is not None and not chosen.is_final:
        raise fail(f"only finished jobs can be pruned, not {chosen.value}", code=2)
    removed = get_result_backend().prune(
        older_than=time.time() - age, statuses=[chosen] if chosen else None
    )
    console.print(f"pruned {removed} job(s) older than {older_than}")


def upgrade(func_name: str, from_version: int) -> int:
    """``nuvom jobs upgrade TASK --from V``: exit 1 when some jobs could not be moved."""
    from nuvom.sdk import upgrade_jobs

    done = upgrade_jobs(func_name, from_version)
    if done.version == from_version:
        console.print(escape(f"{func_name} is at version {from_version} already: nothing to move"), highlight=False)  # fmt: skip
        return 0
    console.print(
        escape(f"{len(done.moved)} job(s) of {func_name} moved from version {from_version} to {done.version}"),
        highlight=False,
    )  # fmt: skip
    for job_id, why in done.refused:
        console.print(f"[yellow]left[/] {escape(job_id)}: {escape(why)}", highlight=False)
    return 1 if done.refused else 0
