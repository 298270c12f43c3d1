"""``nuvom db migrate`` on a fresh schema, and ``nuvom migrate-queue`` from the embedded default.

Moving jobs loses none and duplicates none: a second run finds nothing to move.
"""

from __future__ import annotations

import time

import pytest

from nuvom.backends.postgres import sql as postgres_sql
from nuvom.job import Job, JobStatus
from nuvom.queue import enqueue_many

from .helpers import TASKS, Project
from .servers import ServerBackend, require_postgres, server_backend, unique_name

__all__ = ["server_backend"]


@pytest.mark.slow
def test_db_migrate_creates_a_fresh_schema_then_finds_it_up_to_date(project: Project) -> None:
    import psycopg
    from psycopg import sql

    dsn = require_postgres()
    schema = unique_name("nuvom_test")
    env = {"NUVOM_POSTGRES_DSN": dsn, "NUVOM_POSTGRES_SCHEMA": schema}
    try:
        first = project.nuvom("db", "migrate", **env)
        second = project.nuvom("db", "migrate", **env)
        with psycopg.connect(dsn) as conn:
            tables = {
                row[0]
                for row in conn.execute(
                    "SELECT table_name FROM information_schema.tables WHERE table_schema = %s",
                    (schema,),
                )
            }
            version = conn.execute(
                sql.SQL("SELECT value FROM {}.nuvom_meta WHERE key = 'schema_version'").format(
                    sql.Identifier(schema)
                )
            ).fetchone()
    finally:
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema)))

    assert first.returncode == 0, first.stderr
    assert f"migrated from version 0 to {postgres_sql.SCHEMA_VERSION}" in first.stdout
    assert second.returncode == 0, second.stderr
    assert "up to date" in second.stdout
    assert {"nuvom_meta", "nuvom_queue", "nuvom_jobs", "nuvom_attempts", "nuvom_dead"} <= tables
    assert version == (str(postgres_sql.SCHEMA_VERSION),)


@pytest.mark.slow
def test_db_migrate_without_a_dsn_is_one_clear_error(project: Project) -> None:
    result = project.nuvom("db", "migrate")

    assert result.returncode == 2
    assert "NUVOM_POSTGRES_DSN" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.slow
@pytest.mark.timeout(90)
def test_migrate_queue_moves_pending_and_scheduled_jobs_once(
    project: Project, server_backend: ServerBackend
) -> None:
    project.write("tasks.py", TASKS)
    sqlite = project.configure()
    pending = enqueue_many([Job("add", args=[n, 1], priority=n % 3) for n in range(40)])
    scheduled = enqueue_many(
        [Job("add", args=[n, 2], due_at=time.time() + 3600) for n in range(10)]
    )
    (held,) = sqlite.queue.pop_batch(1, worker_id="busy-worker", lease_secs=600)
    env = dict(project.env, **server_backend.env)

    moved = project.nuvom("migrate-queue", "--from", "sqlite", "--to", server_backend.kind, env=env)
    again = project.nuvom("migrate-queue", "--from", "sqlite", "--to", server_backend.kind, env=env)

    assert moved.returncode == 0, moved.stderr
    assert f"moved 49 waiting job(s) from sqlite to {server_backend.kind}" in moved.stdout
    assert again.returncode == 0, again.stderr
    assert "moved 0 waiting job(s)" in again.stdout
    assert sqlite.queue.qsize() == 0, "nothing waits in the source any more"
    assert sqlite.queue.stats()["running"] == 1, "the claimed job stays with its worker"
    target = project.configure(**server_backend.settings)
    assert target.queue.qsize() == 49
    assert target.queue.stats()["scheduled"] == 10
    moved_ids = {job.id for job in pending + scheduled} - {held.id}
    for job_id in moved_ids:
        record = target.results.get_full(job_id)
        assert record is not None
        assert record.status in (JobStatus.PENDING, JobStatus.SCHEDULED)
    assert {j.id for j in scheduled} == {
        r.id for r in target.results.list_jobs(status=JobStatus.SCHEDULED, limit=100)
    }

    worker = project.start_worker("--burst", env=env)
    assert worker.wait(60) == 0, worker.describe()
    assert "processed 39" in worker.stderr, "each due job ran once; the scheduled ones wait"
    for job in pending:
        if job.id != held.id:
            assert target.results.get_result(job.id) == job.args[0] + 1
    assert target.queue.qsize() == 10
