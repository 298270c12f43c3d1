"""``nuvom runworker``."""

from __future__ import annotations

from nuvom.cli.output import err_console


def run_worker(
    *,
    workers: int | None,
    batch_size: int | None,
    queues: str | None,
    burst: bool,
    pool: str | None,
    grace_secs: float | None,
    max_tasks_per_child: int | None = None,
    max_memory_per_child: float | None = None,
    hostname: str | None = None,
    dev: bool = False,
) -> int:
    import os

    from nuvom.worker import Worker

    names = [q.strip() for q in queues.split(",") if q.strip()] if queues else None
    worker = Worker(
        workers=workers,
        pool=pool,
        batch_size=batch_size,
        queues=names,
        grace_secs=grace_secs,
        max_tasks_per_child=max_tasks_per_child,
        max_memory_per_child_mb=max_memory_per_child,
        # Several workers on one queue tell each other apart by host; the pid and
        # random tail keep ids unique when two share a host name.
        worker_id=f"{hostname}:{os.getpid()}:{os.urandom(2).hex()}" if hostname else None,
    )
    err_console.print(
        f"[bold]nuvom worker[/] {worker.worker_id}  pool={worker.pool} {worker.executor.unit.split()[-1]}={worker.concurrency} "
        f"queue={worker.queue!r} queues={','.join(names) if names else 'all'}"
        + ("  (burst)" if burst else "  (CTRL+C to stop)"),
        highlight=False,
    )
    reloader = None
    if dev:
        from nuvom.watcher import DevReloader

        reloader = DevReloader(worker.runner.loader)
        reloader.start()
        if worker.pool == "process":
            err_console.print(
                "[yellow]--dev reloads tasks in this process; process-pool children "
                "run edited code only once they are replaced[/]",
                highlight=False,
            )
    try:
        stats = worker.run(burst=burst)
    finally:
        if reloader is not None:
            reloader.stop()
    err_console.print(
        f"processed {stats.processed}: {stats.succeeded} ok, {stats.failed} failed, "
        f"{stats.retried} retried, {stats.released} released",
        highlight=False,
    )
    return 1 if stats.forced else 0
