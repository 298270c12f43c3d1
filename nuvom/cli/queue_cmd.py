"""``nuvom queue stats``: what each queue holds, per backend, for people and for scripts."""

from __future__ import annotations

from typing import Any

from rich.markup import escape
from rich.table import Table

from nuvom.backends.contract import ALL_QUEUES, QueueStats
from nuvom.cli.output import OutputFormat, console, print_json

_COUNTS = ("pending", "scheduled", "running", "expired", "failed", "quarantined")


def collect_stats() -> dict[str, Any]:
    """The counts ``nuvom queue stats`` shows, as plain data."""
    from nuvom.runtime import current

    runtime = current()
    queue, results = runtime.queue, runtime.results
    rows: dict[str, QueueStats] = {row.queue: row for row in queue.queue_stats()}
    failed = results.failed_by_queue()
    if failed is not None and ALL_QUEUES not in rows:
        for name in failed:
            if name != ALL_QUEUES:
                rows.setdefault(name, QueueStats(name))
    listed: list[dict[str, Any]] = []
    for name in sorted(rows):
        row = rows[name]
        if failed is None:
            failed_here: int | None = None
        elif name == ALL_QUEUES:
            failed_here = sum(failed.values())
        else:
            failed_here = failed.get(name, 0)
        listed.append(
            {
                "queue": row.queue,
                "pending": row.pending,
                "scheduled": row.scheduled,
                "running": row.running,
                "expired": row.expired,
                "failed": failed_here,
                "quarantined": row.quarantined,
                "lease_owners": dict(sorted(row.lease_owners.items())),
            }
        )
    totals: dict[str, int | None] = {
        key: sum(r[key] for r in listed) for key in _COUNTS if key != "failed"
    }
    totals["failed"] = None if failed is None else sum(failed.values())
    return {
        "queue_backend": queue.name,
        "result_backend": results.name,
        "queues": listed,
        "totals": totals,
    }


def _owners_text(owners: dict[str, int]) -> str:
    return ", ".join(f"{escape(owner)} ({count})" for owner, count in owners.items()) or "-"


def show_queue_stats(fmt: OutputFormat) -> None:
    data = collect_stats()
    if fmt is OutputFormat.json:
        print_json(data)
        return
    title = f"queues on {data['queue_backend']} (results: {data['result_backend']})"
    table = Table(title=title, title_justify="left")
    table.add_column("queue", overflow="fold")
    for key in _COUNTS:
        table.add_column(key, justify="right")
    table.add_column("lease owners (running)", overflow="fold")
    for row in data["queues"]:
        table.add_row(
            escape(row["queue"]),
            *("-" if row[key] is None else str(row[key]) for key in _COUNTS),
            _owners_text(row["lease_owners"]),
        )
    totals = data["totals"]
    table.add_row(
        "[bold]total[/]", *("-" if totals[key] is None else str(totals[key]) for key in _COUNTS), ""
    )
    console.print(table)
