"""``nuvom workers``: the workers the backend has heard from, live or lost."""

from __future__ import annotations

from rich.markup import escape

from nuvom.cli.output import Col, OutputFormat, console, err_console, fit_table, print_json, when

# The id already names host and pid, so those go first when the terminal is narrow.
COLUMNS = (
    Col("id"),
    Col("status"),
    Col("heartbeat", justify="right"),
    Col("in flight", justify="right", drop=1),
    Col("pool", drop=2),
    Col("concurrency", justify="right", drop=3),
    Col("started", drop=4),
    Col("host", fit="cut", drop=5),
    Col("pid", justify="right", drop=6),
)


def show_workers(fmt: OutputFormat) -> None:
    from nuvom.runtime import current

    runtime = current()
    queue = runtime.queue
    now = runtime.clock.time()
    workers = queue.list_workers()
    if fmt is OutputFormat.json:
        print_json([info.to_dict(now) for info in workers])
        return
    if not queue.records_workers:
        err_console.print(
            f"the {escape(queue.name)} queue backend does not record workers", highlight=False
        )
        return
    rows = [
        (
            escape(info.id),
            "[red]lost[/]" if info.is_lost(now) else "[green]live[/]",
            f"{now - info.heartbeat_at:.0f}s ago",
            str(info.inflight),
            escape(info.pool),
            str(info.concurrency),
            when(info.started_at),
            escape(info.host),
            str(info.pid),
        )
        for info in workers
    ]
    console.print(fit_table(f"workers ({escape(queue.name)})", COLUMNS, rows))
    if not workers:
        err_console.print("no workers have registered")
