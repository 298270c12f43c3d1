"""``nuvom runworker``."""

from __future__ import annotations

import logging

from rich.markup import escape

from nuvom.cli.output import err_console


def _backend_name(backend: object, configured: str) -> str:
    """A backend as the banner names it: its ``name``, else the name it was configured by
    (a plugin backend may not set ``name``); never an object's repr."""
    name = getattr(backend, "name", None)
    return name if isinstance(name, str) and name not in ("", "base") else configured


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
    queue_name = _backend_name(worker.queue, worker.runtime.settings.queue_backend)
    listened = ",".join(names) if names else "all"
    err_console.print(
        f"[bold]nuvom worker[/] {escape(worker.worker_id)}  pool={escape(worker.pool)} "
        f"{worker.executor.unit.split()[-1]}={worker.concurrency} "
        f"queue={escape(queue_name)} queues={escape(listened)}"
        + ("  (burst)" if burst else "  (CTRL+C to stop)"),
        highlight=False,
    )
    if queue_name == "memory":
        logging.getLogger("nuvom.worker").warning(
            "queue=memory: this worker only sees jobs enqueued in its own process, none that "
            "other processes enqueue (NUVOM_QUEUE_BACKEND=sqlite, the default, shares them)"
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
