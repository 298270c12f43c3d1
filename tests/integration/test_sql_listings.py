"""The dashboard's listings on SQLite and PostgreSQL read indexes, not tables: the first page
and a page of one status and task are index ranges walked in order (EXPLAIN says so, on a
PostgreSQL table big enough for its planner to choose), and so is the activity count; a
file from before the indexes gets them; the filters and the merge of their ranges keep
``JobQuery``'s order, jobs only queued included. The claim of a one-queue worker reads its
queue's range in claim order, however many jobs wait in the others."""

from __future__ import annotations

import re
import sqlite3
from collections.abc import Callable, Iterator
from contextlib import closing, contextmanager
from pathlib import Path
from typing import Any

import pytest

from nuvom.backends.contract import JobQuery
from nuvom.backends.sqlbase import SQLResultBackend
from nuvom.clock import FakeClock
from nuvom.job import Job, JobStatus
from nuvom.records import ErrorInfo, Outcome

from .servers import drop_postgres_schema, require_postgres, server_lock, unique_name

LEASE_SECS = 30.0
TASKS = 20
PG_ROWS = 20_000  # enough that a sequential scan costs the planner more than an index range
FIRST_PAGE = JobQuery(limit=50)
FAILED_OF_TASK = JobQuery(status=JobStatus.FAILED, tasks=("shop.task_3",), limit=50)
NEW_INDEXES = ("nuvom_jobs_task", "nuvom_attempts_ended", "nuvom_queue_enqueued")


def _statement(results: SQLResultBackend, query: JobQuery) -> tuple[str, dict[str, Any]]:
    """The page statement ``find_jobs`` runs first for ``query``, with its parameters."""
    source = results.find_sources(query)[0]
    return source.statement, {**source.params, "limit": query.limit, "now": 0.0}


def _activity_params() -> dict[str, Any]:
    return {"since": 0.0, "until": 3600.0, "bucket": 60.0, "sample": 10_000}


# -- SQLite ------------------------------------------------------------------------
@pytest.fixture
def sqlite_results(tmp_path: Path) -> Iterator[Any]:
    from nuvom.backends.sqlite.results import SQLiteResultBackend

    results = SQLiteResultBackend(path=tmp_path / "nuvom.db", clock=FakeClock())
    yield results
    results.close()


def _sqlite_plan(results: Any, statement: str, params: dict[str, Any]) -> str:
    rows = results.store.conn.execute("EXPLAIN QUERY PLAN " + statement, params).fetchall()
    return "\n".join(str(row[-1]) for row in rows)


def test_sqlite_pages_and_activity_walk_indexes_in_order(sqlite_results: Any):
    from nuvom.backends.sqlite import sql

    plans = {
        "first page": _sqlite_plan(sqlite_results, *_statement(sqlite_results, FIRST_PAGE)),
        "FAILED of a task": _sqlite_plan(
            sqlite_results, *_statement(sqlite_results, FAILED_OF_TASK)
        ),
        "activity": _sqlite_plan(sqlite_results, sql.ATTEMPTS_ENDED, _activity_params()),
    }
    assert "USING INDEX nuvom_jobs_updated" in plans["first page"]
    assert "USING INDEX nuvom_jobs_task (func_name=? AND status=?" in plans["FAILED of a task"]
    assert "USING COVERING INDEX nuvom_attempts_ended" in plans["activity"]
    for name, plan in plans.items():
        assert not re.search(r"\bSCAN\b", plan), f"{name}: {plan}"
        assert "TEMP B-TREE FOR ORDER BY" not in plan, f"{name} sorts: {plan}"
    queued = sqlite_results.find_sources(FIRST_PAGE)[-1]
    plan = _sqlite_plan(sqlite_results, queued.statement, {**queued.params, "limit": 50, "now": 0})
    assert "nuvom_queue_enqueued" in plan, plan
    assert not re.search(r"SCAN q\b", plan), plan


def test_a_sqlite_file_from_before_the_indexes_gets_them(tmp_path: Path):
    from nuvom.backends.sqlite.results import SQLiteResultBackend

    path = tmp_path / "nuvom.db"
    SQLiteResultBackend(path=path).close()
    with closing(sqlite3.connect(path)) as conn:
        for index in NEW_INDEXES:
            conn.execute(f"DROP INDEX {index}")
        conn.commit()
    SQLiteResultBackend(path=path).close()
    with closing(sqlite3.connect(path)) as conn:
        names = {row[0] for row in conn.execute("SELECT name FROM sqlite_master")}
    assert set(NEW_INDEXES) <= names


def _run(queue: Any, results: Any, clock: FakeClock, jobs: list[Job], failed: set[str]) -> None:
    """Claim and settle each of ``jobs`` (one second apart), failing those in ``failed``."""
    queue.submit(jobs, results)
    for _ in jobs:
        [job] = queue.claim(1, worker_id="w", lease_secs=LEASE_SECS, results=results)
        clock.advance(1.0)
        status = JobStatus.FAILED if job.id in failed else JobStatus.SUCCESS
        error = ErrorInfo("ValueError", "no") if job.id in failed else None
        queue.settle([Outcome(job, status, result=1, worker_id="w", error=error,
                              started_at=clock.time() - 0.5, finished_at=clock.time())],
                     results)  # fmt: skip


def test_sqlite_filters_merge_ranges_and_queued_jobs_in_order(tmp_path: Path):
    from nuvom.backends.sqlite.queue import SQLiteJobQueue
    from nuvom.backends.sqlite.results import SQLiteResultBackend

    clock = FakeClock()
    queue = SQLiteJobQueue(path=tmp_path / "nuvom.db", clock=clock)
    results = SQLiteResultBackend(store=queue.store, clock=clock)
    try:
        done = [Job(f"t.{'ab'[n % 2]}", args=(n,), id=f"j{n}", queue=f"q{n % 3}")
                for n in range(8)]  # fmt: skip
        _run(queue, results, clock, done, failed={"j1", "j4"})
        clock.advance(1.0)
        queue.submit([Job("t.a", args=("late",), id="w1"), Job("t.b", id="w2", queue="q1")],
                     results)  # fmt: skip

        def ids(**filters: Any) -> list[str]:
            return [r.id for r in results.find_jobs(JobQuery(**filters))]

        assert ids(limit=4) == ["w2", "w1", "j7", "j6"], "queued jobs merged in, newest first"
        assert ids(tasks=("t.a",)) == ["w1", "j6", "j4", "j2", "j0"], "every status of a task"
        assert ids(tasks=("t.a", "t.b"), status=JobStatus.FAILED) == ["j4", "j1"]
        assert ids(queue="q1") == ["w2", "j7", "j4", "j1"]
        assert ids(status=JobStatus.PENDING) == ["w2", "w1"]
        assert ids(search="late") == ["w1"], "in a queued job's arguments"
        page = results.find_jobs(JobQuery(tasks=("t.a", "t.b"), limit=3))
        last = page[-1]
        rest = ids(tasks=("t.a", "t.b"), before=(last.updated_at or 0.0, last.id))
        assert [r.id for r in page] + rest == ["w2", "w1", "j7", "j6", "j5", "j4", "j3", "j2",
                                               "j1", "j0"]  # fmt: skip
    finally:
        results.close()
        queue.close()


# -- PostgreSQL ------------------------------------------------------------------------
_JOB_COLUMNS = ("id, func_name, queue, status, payload, attempts, started_at, finished_at, "
                "updated_at")  # fmt: skip


def _fill(conn: Any, payloads: Any) -> None:
    """PG_ROWS finished records over 7 days (10% FAILED, 20 tasks), one attempt each."""
    step = 7 * 86_400 / PG_ROWS
    with conn.cursor() as cur:
        with cur.copy(f"COPY nuvom_jobs ({_JOB_COLUMNS}) FROM STDIN") as copy:
            for n in range(PG_ROWS):
                job = Job(f"shop.task_{n % TASKS}", args=(n,), id=f"{n:08d}", queue=f"q{n % 4}")
                status = "FAILED" if n % 10 == 3 else "SUCCESS"
                ended = n * step
                copy.write_row((job.id, job.func_name, job.queue, status, payloads.encode(job),
                                1, ended - 0.1, ended, ended))  # fmt: skip
        with cur.copy(
            "COPY nuvom_attempts (job_id, number, status, finished_at) FROM STDIN"
        ) as copy:
            for n in range(PG_ROWS):
                copy.write_row((f"{n:08d}", 1, "FAILED" if n % 10 == 3 else "SUCCESS", n * step))
    conn.commit()
    conn.execute("ANALYZE nuvom_jobs")
    conn.execute("ANALYZE nuvom_attempts")
    conn.commit()


_PG_TYPES = {float: "float8", int: "bigint", str: "text", list: "text[]"}


def _generic_plan(conn: Any, statement: str, params: dict[str, Any]) -> str:
    """EXPLAIN of ``statement``'s generic plan, the one the store's sessions run
    (``plan_cache_mode = force_generic_plan``): prepared with $n for each named parameter."""
    from psycopg import sql as psql

    names: list[str] = []

    def number(match: re.Match[str]) -> str:
        if match.group(1) not in names:
            names.append(match.group(1))
        return f"${names.index(match.group(1)) + 1}"

    text = re.sub(r"%\((\w+)\)s", number, statement)
    types = ", ".join(_PG_TYPES[type(params[name])] for name in names)
    conn.execute("SET plan_cache_mode = force_generic_plan")
    conn.execute(f"PREPARE listing ({types}) AS {text}")
    try:
        values = psql.SQL(", ").join(psql.Literal(params[name]) for name in names)
        rows = conn.execute(psql.SQL("EXPLAIN EXECUTE listing({})").format(values)).fetchall()
    finally:
        conn.execute("DEALLOCATE listing")
    return "\n".join(row[0] for row in rows)


@contextmanager
def _postgres(make: Callable[[str, str], Any]) -> Iterator[tuple[Any, Any]]:
    """``make(dsn, schema)``'s backend on a schema of its own (dropped afterwards), and a
    connection whose search path is that schema."""
    import psycopg
    from psycopg import sql as psql

    with server_lock(exclusive=False):
        dsn, schema = require_postgres(), unique_name("nuvom_test")
        try:
            backend = make(dsn, schema)
            try:
                with psycopg.connect(dsn) as conn:
                    conn.execute(psql.SQL("SET search_path TO {}").format(psql.Identifier(schema)))
                    yield backend, conn
            finally:
                backend.close()
        finally:
            drop_postgres_schema(schema)


def test_postgres_pages_and_activity_walk_indexes_in_order():
    from nuvom.backends.postgres import sql
    from nuvom.backends.postgres.results import PostgresResultBackend

    def make(dsn: str, schema: str) -> Any:
        return PostgresResultBackend(dsn=dsn, schema=schema, clock=FakeClock())

    with _postgres(make) as (results, conn):
        _fill(conn, results.payloads)
        found = results.find_jobs(FAILED_OF_TASK)
        assert [r.id for r in found][:2] == ["00019983", "00019963"]
        plans = {
            "first page": _generic_plan(conn, *_statement(results, FIRST_PAGE)),
            "FAILED of a task": _generic_plan(conn, *_statement(results, FAILED_OF_TASK)),
            "activity": _generic_plan(conn, sql.ATTEMPTS_ENDED, _activity_params()),
            "unattempted": _generic_plan(conn, sql.UNATTEMPTED_ENDED, _activity_params()),
        }
    assert "Index Scan Backward using nuvom_jobs_updated" in plans["first page"]
    assert "Index Scan Backward using nuvom_jobs_task" in plans["FAILED of a task"]
    assert "using nuvom_attempts_ended" in plans["activity"]
    for name, plan in plans.items():
        assert "Seq Scan" not in plan, f"{name}: {plan}"
    for name in ("first page", "FAILED of a task"):
        assert "Sort" not in plans[name], f"{name} sorts: {plans[name]}"


# -- claims: a worker of one queue reads that queue's range, in claim order ----------------
def _claim_params(queues: list[str] | None) -> dict[str, Any]:
    params: dict[str, Any] = {"now": 1e9, "n": 10, "worker": "w", "until": 1e9 + 30,
                              "started": 1e9, "refused": []}  # fmt: skip
    if queues:
        params.update(queues=queues, queue=queues[0])
    return params


def test_sqlite_a_one_queue_claim_reads_its_queue_in_claim_order(tmp_path: Path):
    from nuvom.backends.sqlite import sql
    from nuvom.backends.sqlite.queue import SQLiteJobQueue

    queue = SQLiteJobQueue(path=tmp_path / "nuvom.db", clock=FakeClock())
    try:
        queue.enqueue_many([Job("t", args=(i,), queue=f"q{i % 4}") for i in range(2_000)])
        conn = queue.store.conn
        conn.execute("ANALYZE")
        explain = "EXPLAIN QUERY PLAN "
        one = conn.execute(explain + sql.claim_from_queues(1), ("w", 1e9, 1e9, "q1", 10))
        one_plan = "\n".join(str(row[-1]) for row in one.fetchall())
        every = conn.execute(explain + sql.CLAIM_ANY_QUEUE, ("w", 1e9, 1e9, 10))
        every_plan = "\n".join(str(row[-1]) for row in every.fetchall())
    finally:
        queue.close()
    assert "nuvom_queue_by_queue" in one_plan, one_plan
    assert "TEMP B-TREE" not in one_plan, one_plan
    assert "nuvom_queue_order" in every_plan, every_plan


def test_postgres_a_one_queue_claim_reads_its_queue_in_claim_order():
    from nuvom.backends.postgres import sql
    from nuvom.backends.postgres.queue import PostgresJobQueue

    def make(dsn: str, schema: str) -> Any:
        return PostgresJobQueue(dsn=dsn, schema=schema, clock=FakeClock())

    with _postgres(make) as (_, conn):
        with (
            conn.cursor() as cur,
            cur.copy(
                "COPY nuvom_queue (id, queue, due_at, available_at, enqueued_at, payload) FROM STDIN"
            ) as copy,
        ):
            for n in range(PG_ROWS):  # a backlog, and a queue of a few jobs: -Q live
                copy.write_row((f"{n:08d}", "live" if n % 1000 == 0 else "backlog", n, n, n, b"x"))
        conn.commit()
        conn.execute("ANALYZE nuvom_queue")
        conn.commit()
        plans = {
            "one": _generic_plan(conn, sql.CLAIM_FROM_QUEUE, _claim_params(["live"])),
            "one, marked running": _generic_plan(
                conn, sql.CLAIM_AND_START_FROM_QUEUE, _claim_params(["live"])
            ),
            "one, limited": _generic_plan(
                conn, sql.CANDIDATES_FROM_QUEUE, {**_claim_params(["live"]), "skip": []}
            ),
            "every": _generic_plan(conn, sql.CLAIM_ANY_QUEUE, _claim_params(None)),
        }
    for name in ("one", "one, marked running", "one, limited"):
        assert "Index Scan using nuvom_queue_by_queue" in plans[name], plans[name]
        assert "Sort" not in plans[name], plans[name]
    assert "Index Scan using nuvom_queue_order" in plans["every"], plans["every"]


# -- a claim and a batch settle read their own rows by index, not every job ever run ---------
def _batch_plan(conn: Any, statement: str, rows: list[list[Any]]) -> str:
    """EXPLAIN of a ``sql.BATCHED`` statement's generic plan: every parameter is the batch's
    one jsonb (``PostgresBackend.run_many``)."""
    import json

    from psycopg import sql as psql

    conn.execute("SET plan_cache_mode = force_generic_plan")
    conn.execute(f"PREPARE batch (jsonb) AS {statement.replace('%s', '$1')}")
    try:
        literal = psql.Literal(json.dumps(rows))
        found = conn.execute(psql.SQL("EXPLAIN EXECUTE batch({})").format(literal)).fetchall()
    finally:
        conn.execute("DEALLOCATE batch")
    return "\n".join(row[0] for row in found)


def test_postgres_a_claim_and_a_batch_settle_read_only_their_rows_of_a_long_history():
    from nuvom.backends.postgres import sql
    from nuvom.backends.postgres.queue import PostgresJobQueue

    def make(dsn: str, schema: str) -> Any:
        return PostgresJobQueue(dsn=dsn, schema=schema, clock=FakeClock())

    with _postgres(make) as (_, conn):
        with conn.cursor() as cur:
            with cur.copy("COPY nuvom_queue (id, queue, due_at, available_at, enqueued_at, "
                          "payload, lease_owner) FROM STDIN") as copy:  # fmt: skip
                for n in range(PG_ROWS):
                    copy.write_row((f"{n:08d}", "q", n, n, n, b"x", "w"))
            with cur.copy("COPY nuvom_attempts (job_id, number, status) FROM STDIN") as copy:
                for n in range(PG_ROWS):
                    copy.write_row((f"{n:08d}", 1, "RUNNING"))
            with cur.copy("COPY nuvom_jobs (id, status, updated_at) FROM STDIN") as copy:
                for n in range(PG_ROWS):
                    copy.write_row((f"{n:08d}", "RUNNING", n))
        conn.commit()
        for table in ("nuvom_queue", "nuvom_attempts", "nuvom_jobs"):
            conn.execute(f"ANALYZE {table}")
        conn.commit()
        ids = [f"{n:08d}" for n in range(100, 132)]
        plans = {
            "attempts": _batch_plan(conn, sql.BATCHED[sql.FINISH_ATTEMPT][0],
                                    [[i, "SUCCESS", 1.0, None, None, None] for i in ids]),
            "acks": _batch_plan(conn, sql.BATCHED[sql.ACK_KEYED][0], [[i, "w"] for i in ids]),
            "claim and start": _generic_plan(conn, sql.CLAIM_AND_START_ANY_QUEUE,
                                             _claim_params(None)),
        }  # fmt: skip
    for name, plan in plans.items():
        for table in ("nuvom_queue", "nuvom_attempts", "nuvom_jobs"):
            assert f"Seq Scan on {table}" not in plan, f"{name}: {plan}"
    # One queue, statistics read: the claim walks its order's index, it does not sort every
    # due job (as it did when paused queues were <> ALL(ARRAY(...))).
    assert "Index Scan using nuvom_queue_order" in plans["claim and start"], plans
    assert "Sort" not in plans["claim and start"], plans["claim and start"]
