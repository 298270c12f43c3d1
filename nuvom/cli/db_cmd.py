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
    from nuvom.runtime import Runtime

MOVE_BATCH = 500  # jobs copied per destination transaction
MOVABLE = ("sqlite", "file", "postgres", "redis")  # engines another process can read


def migrate_schema() -> None:
    """Create or upgrade nuvom's PostgreSQL schema (NUVOM_POSTGRES_DSN, NUVOM_POSTGRES_SCHEMA)."""
    from nuvom.backends.postgres.store import PostgresStore, redact, require_dsn
    from nuvom.runtime import current

    settings = current().settings
    dsn = require_dsn(settings)
    store = PostgresStore(
        dsn,
        schema=settings.postgres_schema,
        migrate=False,
        timeout_secs=settings.postgres_timeout_secs,
    )
    try:
        before, after = store.migrate()
    finally:
        store.close()
    where = f"schema {settings.postgres_schema!r} on {redact(dsn)}"
    if before == after:
        console.print(f"{where} is up to date (version {after})", markup=False, highlight=False)
    else:
        console.print(
            f"{where} migrated from version {before} to {after}", markup=False, highlight=False
        )


def _runtime_for(name: str) -> Runtime:
    from nuvom.config import load_settings
    from nuvom.runtime import Runtime, current

    if name not in MOVABLE:
        raise ConfigError(
            f"cannot move jobs with backend {name!r}: choose from {', '.join(MOVABLE)}"
        )
    settings = load_settings(queue_backend=name, result_backend=name)
    return Runtime(settings, registry=current().registry)


def move_waiting_jobs(source: Runtime, destination: Runtime) -> dict[str, Any]:
    """Move every waiting job; returns counts (moved, claimed_meanwhile)."""
    jobs = source.queue.waiting_jobs()
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
        markup=False,
        highlight=False,
    )
    if counts["claimed_meanwhile"]:
        err_console.print(
            f"{counts['claimed_meanwhile']} job(s) were claimed by a {source_name} worker "
            "during the move and stay there",
            markup=False,
            highlight=False,
        )
