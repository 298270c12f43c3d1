"""Job commands: status, inspect job, history recent, retry, cancel, prune."""

from __future__ import annotations

import re
import time

from rich.markup import escape
from rich.panel import Panel
from rich.table import Table

from nuvom.cli.output import (
    OutputFormat,
    console,
    fail,
    print_json,
    seconds,
    styled_status,
    when,
)
from nuvom.job import JobStatus
from nuvom.records import JobRecord
from nuvom.sdk import get_job


def show_status(job_id: str, fmt: OutputFormat) -> int:
    record = get_job(job_id)  # JobNotFound becomes one line in main()
    if fmt is OutputFormat.json:
        print_json({"id": record.id, "status": record.status.value, "result": record.result,
                    "error_type": record.error_type, "error_message": record.error_message})  # fmt: skip
    elif record.status is JobStatus.SUCCESS:
        console.print(
            escape(repr(record.result))
            if isinstance(record.result, str)
            else escape(str(record.result)),
            highlight=False,
        )
    elif record.error_type and record.status in (JobStatus.FAILED, JobStatus.RETRYING):
        console.print(
            f"{styled_status(record.status.value)} {escape(record.error_type)}: {escape(record.error_message or '')}",
            highlight=False,
        )
    else:
        console.print(styled_status(record.status.value))
    return 0


def _call_text(record: JobRecord) -> str:
    parts = [repr(a) for a in record.args] + [f"{k}={v!r}" for k, v in record.kwargs.items()]
    return f"{record.func_name}({', '.join(parts)})"


def show_job(job_id: str, fmt: OutputFormat) -> None:
    record = get_job(job_id)  # JobNotFound becomes one line in main()
    if fmt is OutputFormat.json:
        print_json(record.to_dict())
        return
    grid = Table.grid(padding=(0, 2))
    grid.add_column(style="bold")
    grid.add_column(overflow="fold")
    grid.add_row("id", record.id)
    grid.add_row("status", styled_status(record.status.value))
    grid.add_row("call", escape(_call_text(record)))
    grid.add_row("queue", f"{record.queue}  (priority {record.priority})")
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
    grid.add_row("worker", record.worker_id or "-")
    console.print(Panel(grid, title=f"job {record.id}", expand=False))
    if record.history:
        table = Table(title="attempts", show_lines=False)
        for column in ("#", "status", "started", "took", "worker", "error"):
            table.add_column(column, overflow="fold")
        for attempt in record.history:
            took = (
                attempt.finished_at - attempt.started_at
                if attempt.finished_at and attempt.started_at
                else None
            )
            error = f"{attempt.error_type}: {attempt.error_message}" if attempt.error_type else ""
            table.add_row(str(attempt.number), styled_status(attempt.status), when(attempt.started_at),
                          seconds(took), attempt.worker_id or "-", escape(error))  # fmt: skip
        console.print(table)
    if record.traceback:
        console.print(
            Panel(
                escape(record.traceback.rstrip()),
                title="traceback",
                border_style="red",
                expand=False,
            )
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
    from nuvom.result_store import get_result_backend

    records = get_result_backend().list_jobs(status=_parse_status(status), limit=limit)
    if fmt is OutputFormat.json:
        print_json([r.to_dict() for r in records])
        return
    table = Table(title=f"recent jobs{f' ({status.upper()})' if status else ''}")
    table.add_column("id", no_wrap=True, min_width=32)
    for column in ("task", "status", "attempts", "created", "took", "result / error"):
        table.add_column(column, overflow="fold")
    for r in records:
        outcome = (
            repr(r.result)
            if r.has_result
            else (f"{r.error_type}: {r.error_message}" if r.error_type else "")
        )
        table.add_row(r.id, r.func_name or "-", styled_status(r.status.value), str(r.attempts),
                      when(r.created_at), seconds(r.duration_secs), escape(outcome[:80]))  # fmt: skip
    console.print(table)
    if not records:
        console.print("no jobs yet" + (f" with status {status.upper()}" if status else ""))


def retry_one(job_id: str) -> None:
    from nuvom.sdk import retry_job

    # JobNotFound and JobStateError reach main() and become one line there.
    job = retry_job(job_id)
    console.print(f"job {job.id} re-enqueued ({job.status.value})")


def cancel_one(job_id: str) -> None:
    from nuvom.sdk import cancel_job

    record = cancel_job(job_id)
    console.print(f"job {record.id} {record.status.value}")


_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def parse_age(text: str) -> float:
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smhdw]?)\s*", text)
    if not match:
        raise fail(f"--older-than {text!r}: use a number with s, m, h, d or w (e.g. 7d)", code=2)
    return float(match.group(1)) * _UNITS[match.group(2) or "s"]


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
