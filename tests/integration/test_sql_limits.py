"""Flow control on SQLite and PostgreSQL: limits kept by the claim and submit transactions
across processes, and stored state that is old or damaged.

Claimers in spawned processes, each with its own connections, never hold more jobs of a
concurrency key than its limit and never take more tokens than their task's bucket holds;
producers racing on one unique key store one job. A SQLite file or a PostgreSQL schema
written before limits existed keeps its jobs and gains them; a job whose limit entry
cannot be read is quarantined alone; a pause outlives the queue object that set it; a
claim gets past many held jobs to the ones behind them.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterator
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from nuvom.backends.common import queue_rows
from nuvom.backends.contract import BaseJobQueue, BaseResultBackend
from nuvom.clock import FakeClock
from nuvom.job import Job, JobStatus
from nuvom.limits import concurrency_tag
from nuvom.records import JobPayloadCodec, Outcome
from nuvom.runtime import current

from .servers import drop_postgres_schema, require_postgres, server_lock, unique_name

try:
    from ..conformance.processes import race_processes
except ImportError:  # tests/ is not a package: pytest put tests/ itself on sys.path
    from conformance.processes import race_processes  # type: ignore[no-redef]

LEASE_SECS = 30.0
LIMITED = "limits.task"
SPAWNED = 4  # claimer or producer processes per race
WAIT_SECS = 60.0  # a spawned process that has not reported by then is killed
ENGINES = ["sqlite", "postgres"]


@dataclass(frozen=True)
class Where:
    """A store a spawned process can open too: a SQLite file, or a PostgreSQL schema."""

    engine: str
    path: str = ""
    dsn: str = ""
    schema: str = ""

    def open(self, clock: FakeClock | None = None) -> tuple[BaseJobQueue, BaseResultBackend]:
        """A queue and its result backend on one store (their joint writer), and a closer."""
        if self.engine == "sqlite":
            from nuvom.backends.sqlite.queue import SQLiteJobQueue
            from nuvom.backends.sqlite.results import SQLiteResultBackend

            return (SQLiteJobQueue(self.path, clock=clock),
                    SQLiteResultBackend(self.path, clock=clock))  # fmt: skip
        from nuvom.backends.postgres.queue import PostgresJobQueue
        from nuvom.backends.postgres.results import PostgresResultBackend

        return (PostgresJobQueue(self.dsn, schema=self.schema, clock=clock),
                PostgresResultBackend(self.dsn, schema=self.schema, clock=clock))  # fmt: skip


@pytest.fixture(params=ENGINES)
def where(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Where]:
    if request.param == "sqlite":
        yield Where("sqlite", path=str(tmp_path / "nuvom.db"))
        return
    with server_lock(exclusive=False):
        dsn = require_postgres()
        schema = unique_name("nuvom_test")
        try:
            yield Where("postgres", dsn=dsn, schema=schema)
        finally:
            drop_postgres_schema(schema)


@pytest.fixture
def pair(where: Where) -> Iterator[tuple[BaseJobQueue, BaseResultBackend, FakeClock]]:
    clock = FakeClock()
    queue, results = where.open(clock)
    yield queue, results, clock
    queue.close()
    results.close()


def _job(name: str, func: str = LIMITED, **origin: Any) -> Job:
    return Job(func, id=name, args=(name,), origin=origin or None)


def _claim(queue: BaseJobQueue, results: BaseResultBackend, n: int = 100,
           worker: str = "w1") -> list[str]:  # fmt: skip
    jobs = queue.claim(n, worker_id=worker, lease_secs=LEASE_SECS, results=results)
    return sorted(job.id for job in jobs)


def _errors(outcomes: dict[str, Any]) -> dict[str, str]:
    return {name: got for name, got in outcomes.items() if isinstance(got, str)}


# -- races across processes -------------------------------------------------------------
LIMIT = 3
# More jobs than one claim reads as candidates (sqlbase.CANDIDATES_PER_ROUND): racing
# claimers lock different rows of the same key, so only the key's lock keeps the limit.
CONC_JOBS = 120


def claim_and_settle(where: Where, go: Any, reports: Any, name: str) -> None:
    """A spawned claimer: claim two at a time (the joint claim), hold each a moment, settle
    it; report the span (claimed .. settled) of every job it held."""
    try:
        queue, results = where.open()
        if not go.wait(WAIT_SECS):
            raise TimeoutError("the test never said go")
        spans: list[tuple[str, float, float]] = []
        idle_since = time.monotonic()
        while time.monotonic() - idle_since < 1.5:
            jobs = queue.claim(2, worker_id=name, lease_secs=LEASE_SECS, results=results)
            if not jobs:
                time.sleep(0.005)
                continue
            began = time.time()  # after the claim returned: inside the time it was held
            time.sleep(0.02)
            ended = time.time()  # before the settle is sent
            outcomes = [Outcome(job, JobStatus.SUCCESS, result=None, worker_id=name,
                                finished_at=ended) for job in jobs]  # fmt: skip
            queue.settle(outcomes, results)
            spans += [(job.id, began, ended) for job in jobs]
            idle_since = time.monotonic()
        queue.close()
        results.close()
    except BaseException as exc:
        reports.put((name, f"{type(exc).__name__}: {exc}"))
        raise
    reports.put((name, spans))


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_claimers_in_separate_processes_never_hold_more_than_the_limit(where: Where):
    queue, results = where.open()
    for i in range(CONC_JOBS):  # one by one: the one-statement submit keeps limits too
        queue.submit([_job(f"c{i:03}", conc=["shared", LIMIT])], results)

    outcomes = race_processes(claim_and_settle, [(where,)] * SPAWNED, WAIT_SECS)

    assert not _errors(outcomes)
    spans = [span for got in outcomes.values() for span in got]
    assert sorted(job_id for job_id, _, _ in spans) == [f"c{i:03}" for i in range(CONC_JOBS)]
    edges = sorted([(start, 1) for _, start, _ in spans] + [(end, -1) for _, _, end in spans])
    most = running = 0
    for _, step in edges:
        running += step
        most = max(most, running)
    assert most <= LIMIT, f"{most} jobs of one key held at once, the limit is {LIMIT}"
    assert queue.qsize() == 0
    queue.close()
    results.close()


BURST = 5
RATE_JOBS = 100  # more than one claim reads, as CONC_JOBS


def claim_all(where: Where, go: Any, reports: Any, name: str) -> None:
    """A spawned claimer with a plain queue (no result backend): claim until idle for a
    second, never settling; report the ids it got."""
    try:
        queue, results = where.open()
        if not go.wait(WAIT_SECS):
            raise TimeoutError("the test never said go")
        got: list[str] = []
        idle_since = time.monotonic()
        while time.monotonic() - idle_since < 1.0:
            jobs = queue.pop_batch(2, worker_id=name, lease_secs=LEASE_SECS)
            got += [job.id for job in jobs]
            if jobs:
                idle_since = time.monotonic()
        queue.close()
        results.close()
    except BaseException as exc:
        reports.put((name, f"{type(exc).__name__}: {exc}"))
        raise
    reports.put((name, got))


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_claimers_in_separate_processes_share_one_token_bucket(where: Where):
    queue, results = where.open()
    # One token an hour after the burst: the race may take the burst and nothing more.
    queue.enqueue_many([_job(f"r{i:03}", rate=[1 / 3600, BURST]) for i in range(RATE_JOBS)])

    outcomes = race_processes(claim_all, [(where,)] * SPAWNED, WAIT_SECS)

    assert not _errors(outcomes)
    got = [job_id for ids in outcomes.values() for job_id in ids]
    assert len(got) == BURST, f"took {sorted(got)}"
    assert len(set(got)) == BURST, "none twice"
    assert queue.qsize() == RATE_JOBS - BURST
    queue.close()
    results.close()


def submit_unique(where: Where, go: Any, reports: Any, name: str) -> None:
    """A spawned producer: submit 10 jobs of one unique key, alternately by the joint submit
    and by a plain enqueue; report the ids stored and the holders it was told of."""
    try:
        queue, results = where.open()
        if not go.wait(WAIT_SECS):
            raise TimeoutError("the test never said go")
        stored, holders = [], set()
        for i in range(10):
            job = _job(f"{name}-{i}", unique=["the-key", 0.0])
            plain = i % 2  # half by a bare enqueue, half by the joint submit
            duplicates = (
                (queue.enqueue_many([job]) or {}) if plain else queue.submit([job], results)
            )
            if duplicates:
                holders.add(duplicates[job.id])
            else:
                stored.append(job.id)
        queue.close()
        results.close()
    except BaseException as exc:
        reports.put((name, f"{type(exc).__name__}: {exc}"))
        raise
    reports.put((name, (stored, sorted(holders))))


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_producers_in_separate_processes_store_one_job_per_unique_key(where: Where):
    queue, results = where.open()  # the schema exists before the race
    outcomes = race_processes(submit_unique, [(where,)] * SPAWNED, WAIT_SECS)

    assert not _errors(outcomes)
    stored = [job_id for got, _ in outcomes.values() for job_id in got]
    assert len(stored) == 1, f"stored {stored}"
    holders = {holder for _, told in outcomes.values() for holder in told}
    assert holders == set(stored), "every duplicate was told the one holder"
    assert queue.qsize() == 1
    assert queue.unique_holder("the-key") == stored[0]
    queue.close()
    results.close()


# -- stored state written before limits existed -----------------------------------------
# nuvom_queue and nuvom_parked as schema 1 of the SQLite file had them.
_SQLITE_V1 = (
    "CREATE TABLE nuvom_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
    """CREATE TABLE nuvom_queue (
        seq INTEGER PRIMARY KEY, id TEXT NOT NULL UNIQUE, queue TEXT NOT NULL,
        priority INTEGER NOT NULL DEFAULT 0, due_at REAL NOT NULL, available_at REAL NOT NULL,
        lease_owner TEXT, attempts INTEGER NOT NULL DEFAULT 0, enqueued_at REAL NOT NULL,
        payload BLOB NOT NULL)""",
    "CREATE INDEX nuvom_queue_order ON nuvom_queue (priority DESC, due_at, seq)",
    """CREATE TABLE nuvom_parked (
        id TEXT PRIMARY KEY, queue TEXT NOT NULL, priority INTEGER NOT NULL DEFAULT 0,
        due_at REAL, attempts INTEGER NOT NULL DEFAULT 0, enqueued_at REAL NOT NULL,
        payload BLOB NOT NULL, errback INTEGER NOT NULL DEFAULT 0, waiting INTEGER NOT NULL)""",
    "INSERT INTO nuvom_meta (key, value) VALUES ('schema_version', '1')",
)


def test_a_sqlite_file_from_before_limits_keeps_its_jobs_and_gains_limits(tmp_path: Path):
    from nuvom.backends.sqlite import sql
    from nuvom.backends.sqlite.queue import SQLiteJobQueue
    from nuvom.backends.sqlite.results import SQLiteResultBackend

    path, clock = tmp_path / "old.db", FakeClock()
    payloads = JobPayloadCodec(current().codec)
    with closing(sqlite3.connect(path)) as conn, conn:
        for statement in _SQLITE_V1:
            conn.execute(statement)
        conn.executemany(sql.ENQUEUE, queue_rows([Job("old.task", id="old")], payloads, 0.0))
    before = path.read_bytes()

    looking = SQLiteJobQueue(path, clock=clock, read_only=True)
    assert looking.qsize() == 1
    assert looking.hold_of("old") is None
    assert looking.paused_queues() == []
    assert looking.unique_holder("any") is None
    [row] = looking.queue_stats()
    assert (row.pending, row.held, row.paused) == (1, {}, False)
    looking.close()
    assert path.read_bytes() == before, "a read-only look changes nothing"

    queue, results = SQLiteJobQueue(path, clock=clock), SQLiteResultBackend(path, clock=clock)
    try:
        with closing(sqlite3.connect(path)) as conn:
            assert conn.execute(sql.GET_SCHEMA_VERSION).fetchone() == (str(sql.SCHEMA_VERSION),)
        queue.submit([_job("c1", conc=["k", 1]), _job("c2", conc=["k", 1])], results)
        assert _claim(queue, results) == ["c1", "old"]
        assert queue.hold_of("c2") == concurrency_tag("k")
    finally:
        queue.close()
        results.close()


def test_a_postgres_schema_from_before_limits_migrates_and_keeps_its_jobs(tmp_path: Path):
    import psycopg
    from psycopg import sql as psql

    from nuvom.backends.postgres import sql as pg_sql
    from nuvom.backends.postgres.queue import PostgresJobQueue
    from nuvom.backends.postgres.results import PostgresResultBackend
    from nuvom.backends.postgres.store import PostgresStore

    with server_lock(exclusive=False):
        dsn, clock, schema = require_postgres(), FakeClock(), unique_name("nuvom_test")
        payloads = JobPayloadCodec(current().codec)
        try:
            with psycopg.connect(dsn) as conn:  # version 3: workflows, no limits yet
                conn.execute(psql.SQL("CREATE SCHEMA {0}; SET search_path TO {0}").format(
                    psql.Identifier(schema)))  # fmt: skip
                conn.execute(pg_sql.CREATE_META)
                for migration in pg_sql.MIGRATIONS[:3]:
                    for statement in migration:
                        conn.execute(statement)
                conn.execute(pg_sql.SET_SCHEMA_VERSION, ("3",))
                rows = queue_rows([Job("old.task", id="old")], payloads, 0.0)
                conn.cursor().executemany(pg_sql.ENQUEUE, rows)

            store = PostgresStore(dsn, schema=schema, migrate=False)
            queue = PostgresJobQueue(store=store, clock=clock)
            results = PostgresResultBackend(store=store, clock=clock)
            try:
                assert store.migrate() == (3, pg_sql.SCHEMA_VERSION)
                queue.submit([_job("c1", conc=["k", 1]), _job("c2", conc=["k", 1])], results)
                assert _claim(queue, results) == ["c1", "old"]
                assert queue.hold_of("c2") == concurrency_tag("k")
            finally:
                queue.close()
                store.close()
        finally:
            drop_postgres_schema(schema)


# -- damaged and lasting state ------------------------------------------------------------
def _corrupt_limit(where: Where, job_id: str) -> None:
    """Give job ``job_id``'s stored payload a concurrency entry no job can have (limit 0)."""
    codec = current().codec
    if where.engine == "sqlite":
        with closing(sqlite3.connect(where.path)) as conn, conn:
            (payload,) = conn.execute(
                "SELECT payload FROM nuvom_queue WHERE id = ?", (job_id,)
            ).fetchone()
            body = codec.loads(bytes(payload))
            body[6]["conc"] = ["k", 0]
            conn.execute("UPDATE nuvom_queue SET payload = ? WHERE id = ?",
                         (codec.dumps(body), job_id))  # fmt: skip
        return
    import psycopg
    from psycopg import sql as psql

    with psycopg.connect(where.dsn) as conn:
        conn.execute(psql.SQL("SET search_path TO {}").format(psql.Identifier(where.schema)))
        (payload,) = conn.execute(
            "SELECT payload FROM nuvom_queue WHERE id = %s", (job_id,)
        ).fetchone()  # type: ignore[misc]
        body = codec.loads(bytes(payload))
        body[6]["conc"] = ["k", 0]
        conn.execute("UPDATE nuvom_queue SET payload = %s WHERE id = %s",
                     (codec.dumps(body), job_id))  # fmt: skip


def test_a_job_whose_limit_entry_cannot_be_read_is_quarantined_alone(
    where: Where, pair: tuple[BaseJobQueue, BaseResultBackend, FakeClock]
):
    queue, results, _ = pair
    queue.submit([_job(f"c{i}", conc=["k", 1]) for i in range(3)], results)
    _corrupt_limit(where, "c0")

    claimed = queue.claim_batch(100, worker_id="w1", lease_secs=LEASE_SECS)

    assert [job.id for job in claimed.jobs] == ["c1"], "the others' limit still holds"
    assert [job_id for job_id, _ in claimed.quarantined] == ["c0"]
    assert queue.hold_of("c2") == concurrency_tag("k")
    assert queue.stats()["quarantined"] == 1


def test_a_pause_outlives_the_queue_that_set_it(where: Where):
    queue, results = where.open()
    assert queue.pause_queue("emails") is True
    queue.submit([Job("t", id="mail", queue="emails"), Job("t", id="other")], results)
    queue.close()
    results.close()

    queue, results = where.open()
    try:
        assert queue.paused_queues() == ["emails"]
        assert _claim(queue, results) == ["other"]
        assert queue.pause_queue("emails", False) is True
        assert _claim(queue, results) == ["mail"]
    finally:
        queue.close()
        results.close()


def test_a_claim_gets_past_many_held_jobs_to_the_ones_behind(
    pair: tuple[BaseJobQueue, BaseResultBackend, FakeClock],
):
    queue, results, _ = pair
    held = [_job(f"a{i:04}", rate=[1.0, 1]) for i in range(1000)]
    queue.submit([*held, *[Job("plain.task", id=f"b{i}") for i in range(4)]], results)

    assert _claim(queue, results, n=5) == ["a0000", "b0", "b1", "b2", "b3"]
    assert queue.qsize() == 999
    assert _claim(queue, results, n=5) == [], "the held ones wait for their tokens"


def test_a_freed_slot_wakes_the_first_held_job_even_settled_without_its_limits(
    pair: tuple[BaseJobQueue, BaseResultBackend, FakeClock],
):
    """A settle reads a job's limits from the store: the outcome's copy of the job may not
    carry them (a worker rebuilt it)."""
    queue, results, clock = pair
    queue.submit([_job(f"c{i}", conc=["k", 1], unique=[f"u{i}", 0.0]) for i in range(3)],
                 results)  # fmt: skip
    [first] = queue.claim(5, worker_id="w1", lease_secs=LEASE_SECS, results=results)
    assert _claim(queue, results) == []
    bare = Job(LIMITED, id=first.id, lease_owner="w1", attempts=1)
    queue.settle([Outcome(bare, JobStatus.SUCCESS, result=None, worker_id="w1",
                          finished_at=clock.time())], results)  # fmt: skip
    assert queue.unique_holder("u0") is None
    assert _claim(queue, results, worker="w2") == ["c1"], "woken at once"


def test_an_unreadable_token_bucket_starts_anew_rather_than_fail_a_claim(tmp_path: Path):
    from nuvom.backends.sqlite.queue import SQLiteJobQueue

    path = tmp_path / "nuvom.db"
    queue = SQLiteJobQueue(path, clock=FakeClock())
    try:
        queue.enqueue_many([_job(f"r{i}", rate=[1.0, 2]) for i in range(3)])
        with closing(sqlite3.connect(path)) as conn, conn:  # SQLite keeps what it is given
            conn.execute("INSERT INTO nuvom_buckets VALUES (?, 'lots', 'yesterday')", (LIMITED,))
        claimed = queue.pop_batch(10, worker_id="w1", lease_secs=30)
        assert [job.id for job in claimed] == ["r0", "r1"], "a full bucket of two"
    finally:
        queue.close()
