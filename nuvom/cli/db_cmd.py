"""``nuvom db migrate`` and ``nuvom migrate-queue``: schema upkeep and moving to a bigger backend.

``migrate-queue`` copies each waiting job (pending, scheduled, retrying) to the
destination, then removes it from the source only if it is still waiting there;
a job a source worker claimed meanwhile is taken back out of the destination.
Re-running after an interruption finishes the move: enqueueing an id again
replaces it, so nothing is duplicated.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from nuvom.cli.output import console, err_console
from nuvom.errors import ConfigError

if TYPE_CHECKING:
    from nuvom.job import Job
    from nuvom.queue_backends.base import BaseJobQueue
    from nuvom.runtime import Runtime

MOVE_BATCH = 500  # jobs copied per destination transaction
# The SQLite queue's waiting jobs in claim order (read-only; see sqlite_sql.py for the schema).
SQLITE_WAITING_JOBS = """
SELECT id, queue, priority, due_at, attempts, payload FROM nuvom_queue
WHERE lease_owner IS NULL ORDER BY priority DESC, due_at, seq
"""
MOVABLE = ("sqlite", "postgres", "redis")


def migrate_schema() -> None:
    """Create or upgrade nuvom's PostgreSQL schema (NUVOM_POSTGRES_DSN, NUVOM_POSTGRES_SCHEMA)."""
    from nuvom.queue_backends.postgres_store import PostgresStore, redact
    from nuvom.runtime import current

    settings = current().settings
    if not settings.postgres_dsn:
        raise ConfigError(
            "NUVOM_POSTGRES_DSN: set it to the database to migrate "
            "(e.g. postgresql://user@host:5432/dbname)",
            variable="NUVOM_POSTGRES_DSN",
        )
    store = PostgresStore(settings.postgres_dsn, schema=settings.postgres_schema, migrate=False)
    try:
        before, after = store.migrate()
    finally:
        store.close()
    where = f"schema {settings.postgres_schema!r} on {redact(settings.postgres_dsn)}"
    if before == after:
        console.print(f"{where} is up to date (version {after})", highlight=False)
    else:
        console.print(f"{where} migrated from version {before} to {after}", highlight=False)


def _runtime_for(name: str) -> Runtime:
    from nuvom.config import load_settings
    from nuvom.runtime import Runtime, current

    if name not in MOVABLE:
        raise ConfigError(
            f"cannot move jobs with backend {name!r}: choose from {', '.join(MOVABLE)}"
        )
    settings = load_settings(queue_backend=name, result_backend=name)
    return Runtime(settings, registry=current().registry)


def _waiting_jobs(queue: BaseJobQueue) -> list[Job]:
    """Every waiting job of ``queue``, in claim order."""
    from nuvom.queue_backends.sqlite_queue import SQLiteJobQueue

    reader = getattr(queue, "waiting_jobs", None)
    if reader is not None:
        jobs: list[Job] = reader()
        return jobs
    if not isinstance(queue, SQLiteJobQueue):
        raise ConfigError(f"the {queue.name!r} queue cannot list its waiting jobs")
    waiting = []
    for job_id, name, priority, due_at, attempts, payload in queue.store.read(SQLITE_WAITING_JOBS):
        waiting.append(
            queue.payloads.decode(
                payload,
                job_id=job_id,
                queue=name,
                priority=priority,
                attempts=attempts,
                due_at=due_at,
            )
        )
    return waiting


def move_waiting_jobs(source: Runtime, destination: Runtime) -> dict[str, Any]:
    """Move every waiting job; returns counts (moved, claimed_meanwhile)."""
    jobs = _waiting_jobs(source.queue)
    moved = claimed = 0
    for start in range(0, len(jobs), MOVE_BATCH):
        batch = jobs[start : start + MOVE_BATCH]
        destination.queue.submit(batch, destination.results)
        for job in batch:
            if source.queue.cancel(job.id):
                moved += 1
            else:  # a source worker took it meanwhile: it runs there, not twice
                destination.queue.cancel(job.id)
                claimed += 1
    return {"moved": moved, "claimed_meanwhile": claimed}


def migrate_queue(source_name: str, destination_name: str) -> None:
    if source_name == destination_name:
        raise ConfigError("--from and --to name the same backend; nothing to move")
    source = _runtime_for(source_name)
    destination = _runtime_for(destination_name)
    try:
        counts = move_waiting_jobs(source, destination)
    finally:
        source.close()
        destination.close()
    console.print(
        f"moved {counts['moved']} waiting job(s) from {source_name} to {destination_name}",
        highlight=False,
    )
    if counts["claimed_meanwhile"]:
        err_console.print(
            f"{counts['claimed_meanwhile']} job(s) were claimed by a {source_name} worker "
            "during the move and stay there",
            highlight=False,
        )
