"""``nuvom workers``: the workers the backend has heard from, live or lost."""

from __future__ import annotations

from rich.table import Table

from nuvom.cli.output import OutputFormat, console, err_console, print_json, when


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
        err_console.print(f"the {queue.name} queue backend does not record workers")
        return
    table = Table(title=f"workers ({queue.name})")
    table.add_column("id", no_wrap=True)
    for column in ("status", "host", "pid", "pool", "concurrency", "in flight"):
        table.add_column(column)
    table.add_column("last heartbeat")
    table.add_column("started")
    for info in workers:
        lost = info.is_lost(now)
        table.add_row(
            info.id,
            "[red]lost[/]" if lost else "[green]live[/]",
            info.host,
            str(info.pid),
            info.pool,
            str(info.concurrency),
            str(info.inflight),
            f"{when(info.heartbeat_at)} ({now - info.heartbeat_at:.0f}s ago)",
            when(info.started_at),
        )
    console.print(table)
    if not workers:
        err_console.print("no workers have registered")
