"""What the SQL engines add to the workflow contract (``tests/conformance/test_dependencies.py``).

A store written before workflows existed opens, keeps the jobs it holds, and takes jobs
that wait for others; on PostgreSQL, a dependent parked while the job it waits for is
being settled on another connection is never left parked (the ack waits for the row the
submit marked and reads the mark).
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Callable, Iterator
from contextlib import closing
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import pytest

from nuvom.backends.common import queue_rows
from nuvom.backends.contract import BaseJobQueue, BaseResultBackend
from nuvom.backends.memory.results import MemoryResultBackend
from nuvom.backends.sqlite import sql as sqlite_sql
from nuvom.backends.sqlite.queue import SQLiteJobQueue
from nuvom.backends.sqlite.results import SQLiteResultBackend
from nuvom.backends.sqlite.store import SQLiteStore
from nuvom.clock import FakeClock
from nuvom.job import Job, JobStatus
from nuvom.records import JobPayloadCodec, Outcome
from nuvom.runtime import current

from .servers import drop_postgres_schema, require_postgres, server_lock, unique_name

LEASE_SECS = 30.0
RACES = 100  # settle-against-submit races per PostgreSQL pairing (the mark is what wins them)


@dataclass
class Pair:
    queue: BaseJobQueue
    results: BaseResultBackend
    clock: FakeClock

    def claim(self, worker: str = "w1") -> list[Job]:
        return self.queue.claim(100, worker_id=worker, lease_secs=LEASE_SECS, results=self.results)

    def finish(self, job: Job, worker: str = "w1") -> None:
        outcome = Outcome(job, JobStatus.SUCCESS, result=job.id, worker_id=worker,
                          finished_at=self.clock.time())  # fmt: skip
        self.queue.settle([outcome], self.results)


def _job(name: str, *after: str) -> Job:
    origin = {"workflow": "wf", "after": list(after), "feed": "one"} if after else None
    return Job("tests.task", id=name, origin=origin)


def _older_sqlite_file(path: Path, waiting: Job) -> None:
    """A file as nuvom wrote it before workflows: no parked or edge tables, one job waiting."""
    payloads = JobPayloadCodec(current().codec)
    with closing(sqlite3.connect(path)) as conn, conn:
        for statement in sqlite_sql.SCHEMA:
            if "nuvom_parked" not in statement and "nuvom_edges" not in statement:
                conn.execute(statement)
        conn.execute(sqlite_sql.SET_SCHEMA_VERSION, (str(sqlite_sql.SCHEMA_VERSION),))
        conn.executemany(sqlite_sql.ENQUEUE, queue_rows([waiting], payloads, 0.0))


def test_a_sqlite_file_from_before_workflows_opens_and_parks_jobs(tmp_path: Path) -> None:
    path, clock = tmp_path / "old.db", FakeClock()
    _older_sqlite_file(path, _job("old"))
    before = path.read_bytes()
    looking = SQLiteJobQueue(path, clock=clock, read_only=True)
    assert looking.parked_jobs() == []
    assert looking.qsize() == 1
    looking.close()
    assert path.read_bytes() == before, "a read-only look adds no table"

    store = SQLiteStore(path)
    pair = Pair(SQLiteJobQueue(store=store, clock=clock),
                SQLiteResultBackend(store=store, clock=clock), clock)  # fmt: skip
    try:
        pair.queue.submit([_job("after-old", "old")], pair.results)
        assert [j.id for j in pair.queue.parked_jobs()] == ["after-old"]
        (old,) = pair.claim()
        pair.finish(old)
        assert [j.id for j in pair.claim()] == ["after-old"]
    finally:
        store.close()


@pytest.fixture
def postgres_schema() -> Iterator[str]:
    with server_lock(exclusive=False):
        require_postgres()
        schema = unique_name("nuvom_test")
        try:
            yield schema
        finally:
            drop_postgres_schema(schema)


def test_a_postgres_schema_from_before_workflows_migrates_and_keeps_its_jobs(
    postgres_schema: str,
) -> None:
    import psycopg
    from psycopg import sql as psql

    from nuvom.backends.postgres import sql as pg_sql
    from nuvom.backends.postgres.queue import PostgresJobQueue
    from nuvom.backends.postgres.results import PostgresResultBackend
    from nuvom.backends.postgres.store import PostgresStore

    dsn, clock = require_postgres(), FakeClock()
    payloads = JobPayloadCodec(current().codec)
    with psycopg.connect(dsn) as conn:  # version 2, as nuvom migrated it before workflows
        conn.execute(psql.SQL("CREATE SCHEMA {0}; SET search_path TO {0}").format(
            psql.Identifier(postgres_schema)))  # fmt: skip
        conn.execute(pg_sql.CREATE_META)
        for migration in pg_sql.MIGRATIONS[:2]:
            for statement in migration:
                conn.execute(statement)
        conn.execute(pg_sql.SET_SCHEMA_VERSION, ("2",))
        conn.cursor().executemany(pg_sql.ENQUEUE, queue_rows([_job("old")], payloads, 0.0))

    store = PostgresStore(dsn, schema=postgres_schema, migrate=False)
    pair = Pair(PostgresJobQueue(store=store, clock=clock),
                PostgresResultBackend(store=store, clock=clock), clock)  # fmt: skip
    try:
        assert store.migrate() == (2, pg_sql.SCHEMA_VERSION)
        pair.queue.submit([_job("after-old", "old")], pair.results)
        (old,) = pair.claim()
        pair.finish(old)
        assert [j.id for j in pair.claim()] == ["after-old"]
        assert pair.queue.qsize() == 0
    finally:
        pair.queue.close()
        store.close()


def _sqlite_shared(tmp_path: Path) -> Iterator[Pair]:
    clock, store = FakeClock(), SQLiteStore(tmp_path / "nuvom.db")
    yield Pair(SQLiteJobQueue(store=store, clock=clock),
               SQLiteResultBackend(store=store, clock=clock), clock)  # fmt: skip
    store.close()


def _postgres(schema: str, *, shared: bool) -> Iterator[Pair]:
    from nuvom.backends.postgres.queue import PostgresJobQueue
    from nuvom.backends.postgres.results import PostgresResultBackend
    from nuvom.backends.postgres.store import PostgresStore

    clock, store = FakeClock(), PostgresStore(require_postgres(), schema=schema)
    queue = PostgresJobQueue(store=store, clock=clock)
    results = (
        PostgresResultBackend(store=store, clock=clock)
        if shared
        else MemoryResultBackend(clock=clock)
    )
    yield Pair(queue, results, clock)
    queue.close()
    store.close()


@pytest.fixture(params=["sqlite-shared", "postgres", "postgres-separate"])
def pair(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Pair]:
    if request.param == "sqlite-shared":
        yield from _sqlite_shared(tmp_path)
        return
    with server_lock(exclusive=False):
        require_postgres()
        schema = unique_name("nuvom_test")
        try:
            yield from _postgres(schema, shared=request.param == "postgres")
        finally:
            drop_postgres_schema(schema)


def test_a_dependent_submitted_before_what_it_waits_for_is_released_by_it(pair: Pair) -> None:
    pair.queue.submit([_job("later", "first")], pair.results)
    pair.queue.submit([_job("first")], pair.results)
    (first,) = pair.claim()
    pair.finish(first)
    assert [j.id for j in pair.claim()] == ["later"]


def _race(*steps: Callable[[], object]) -> list[BaseException]:
    """Run ``steps`` on threads started together; what they raised."""
    start = threading.Barrier(len(steps))
    errors: list[BaseException] = []

    def run(step: Callable[[], object]) -> None:
        start.wait()
        try:
            step()
        except BaseException as exc:  # pragma: no cover - reported by the caller
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(step,)) for step in steps]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    return errors


@pytest.mark.parametrize("pair", ["postgres", "postgres-separate"], indirect=True)
def test_a_dependent_parked_while_its_dependency_settles_is_released(pair: Pair) -> None:
    for n in range(RACES):
        pair.queue.submit([_job(f"dep{n}")], pair.results)
        (dep,) = pair.claim()
        then = _job(f"then{n}", dep.id)
        errors = _race(partial(pair.finish, dep), partial(pair.queue.submit, [then], pair.results))
        assert errors == []
        assert [j.id for j in pair.claim()] == [then.id], f"race {n} left it parked"
        assert pair.queue.parked_jobs() == []
