"""``nuvom queue stats``: what each queue holds, per backend, for people and for scripts."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from rich.markup import escape

from nuvom.backends.contract import ALL_QUEUES, QueueStats
from nuvom.cli.jobs_cmd import reading, store_place
from nuvom.cli.output import Col, OutputFormat, console, fit_table, print_json

if TYPE_CHECKING:
    from nuvom.runtime import Runtime

_COUNTS = ("pending", "scheduled", "parked", "running", "expired", "failed", "quarantined")
# At 80 columns "expired" (leases run out, reclaimed soon) gives way first, then "parked"
# (jobs of a workflow waiting for others to succeed).
_DROPS = {"expired": 1, "parked": 2}
_COLUMNS = (
    Col("queue", fit="cut"),
    *(Col(key, justify="right", drop=_DROPS.get(key, 0)) for key in _COUNTS),
    Col("leased by", fit="cut"),
)


def collect_stats(runtime: Runtime | None = None) -> dict[str, Any]:
    """The counts ``nuvom queue stats`` shows, as plain data; with no ``runtime``, read from
    the configured backends opened read-only (nothing is created where there is no store)."""
    if runtime is None:
        with reading() as looking:
            return collect_stats(looking)
    queue, results = runtime.queue, runtime.results
    rows: dict[str, QueueStats] = {row.queue: row for row in queue.queue_stats()}
    parked: dict[str, int] = {}
    for job in queue.parked_jobs():
        parked[job.queue] = parked.get(job.queue, 0) + 1
    if ALL_QUEUES in rows:  # a plugin's one row for every queue
        parked = {ALL_QUEUES: sum(parked.values())} if parked else {}
    for name in parked:
        rows.setdefault(name, QueueStats(name))
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
                "parked": parked.get(name, 0),
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
    with reading() as runtime:
        data = collect_stats(runtime)
        queue_place = store_place(runtime.settings, "queue")
        result_place = store_place(runtime.settings, "result")
    if fmt is OutputFormat.json:
        print_json(data)
        return
    if queue_place.missing and result_place.missing:
        console.print(escape(f"no jobs yet {queue_place.note()}"), highlight=False)
        return
    title = f"queues on {data['queue_backend']} in {queue_place.label}"
    if result_place.label != queue_place.label:
        title += f" (results: {data['result_backend']} in {result_place.label})"
    rows = [
        [
            escape(row["queue"]),
            *("-" if row[key] is None else str(row[key]) for key in _COUNTS),
            _owners_text(row["lease_owners"]),
        ]
        for row in data["queues"]
    ]
    totals = data["totals"]
    rows.append(
        [
            "[bold]total[/]",
            *("-" if totals[key] is None else str(totals[key]) for key in _COUNTS),
            "",
        ]
    )
    console.print(fit_table(escape(title), _COLUMNS, rows, title_justify="left"))
