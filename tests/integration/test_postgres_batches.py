"""PostgreSQL writes a batch submit, and a batch settle, as one statement per table
(``PostgresBackend.run_many``, over one jsonb array of rows): the jobs keep their order and
every value, a batch that names one id twice still stores the last copy, and a smaller batch
goes row by row as before."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any

import pytest

from nuvom.clock import FakeClock
from nuvom.job import Job

from .servers import drop_postgres_schema, require_postgres, server_lock, unique_name

LEASE_SECS = 30.0
_WRITES = r"INSERT INTO nuvom_(queue|jobs)|UPDATE nuvom_attempts|DELETE FROM nuvom_queue"


@pytest.fixture
def pg() -> Iterator[tuple[Any, Any]]:
    from nuvom.backends.postgres.queue import PostgresJobQueue
    from nuvom.backends.postgres.results import PostgresResultBackend

    with server_lock(exclusive=False):
        dsn, schema = require_postgres(), unique_name("nuvom_test")
        clock = FakeClock()
        queue = PostgresJobQueue(dsn=dsn, schema=schema, clock=clock)
        results = PostgresResultBackend(store=queue.store, clock=clock)
        try:
            yield queue, results
        finally:
            queue.close()
            drop_postgres_schema(schema)


def _statements(queue: Any, monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, int]]:
    """(how, rows) of each write ``run_many`` makes: 'one' for a batch, 'each' row by row."""
    import psycopg

    made: list[tuple[str, int]] = []
    execute, executemany = psycopg.Cursor.execute, psycopg.Cursor.executemany

    def one(self: Any, statement: Any, params: Any = None, **kw: Any) -> Any:
        if isinstance(statement, str) and "jsonb_array_elements(" in statement:
            made.append(("one", len(json.loads(params[0]))))
        return execute(self, statement, params, **kw)

    def each(self: Any, statement: Any, rows: Any, **kw: Any) -> Any:
        rows = list(rows)
        if isinstance(statement, str) and re.search(_WRITES, statement):
            made.append(("each", len(rows)))
        return executemany(self, statement, rows, **kw)

    monkeypatch.setattr(psycopg.Cursor, "execute", one)
    monkeypatch.setattr(psycopg.Cursor, "executemany", each)
    return made


def test_a_batch_is_one_statement_per_table_and_keeps_its_order(pg, monkeypatch):
    queue, results = pg
    made = _statements(queue, monkeypatch)
    jobs = [Job("batch.task", args=(i,), priority=0) for i in range(200)]
    jobs[7] = Job("batch.task", args=(7,), due_at=queue.clock.time() + 60)  # scheduled
    queue.submit(jobs, results)
    assert made == [("one", 200), ("one", 200)], "the queue rows, then the records"

    claimed = queue.claim(500, worker_id="w", lease_secs=LEASE_SECS, results=results)
    due = [job.id for job in jobs if job.due_at is None]
    assert [job.id for job in claimed] == due, "claimed in the order they were submitted"
    assert results.get_full(jobs[7].id).status.value == "SCHEDULED"
    assert results.get_full(jobs[0].id).status.value == "RUNNING"


def test_a_batch_naming_an_id_twice_stores_the_last_copy(pg, monkeypatch):
    queue, results = pg
    made = _statements(queue, monkeypatch)
    jobs = [Job("batch.task", id=f"j{i:03}", args=(i,)) for i in range(40)]
    jobs.append(Job("batch.task", id="j005", args=("again",)))
    queue.submit(jobs, results)
    assert {how for how, _ in made} == {"each"}, "an upsert cannot touch one row twice"
    [job] = [j for j in queue.claim(100, worker_id="w", lease_secs=LEASE_SECS, results=results)
             if j.id == "j005"]  # fmt: skip
    assert list(job.args) == ["again"]


def test_a_small_batch_goes_row_by_row(pg, monkeypatch):
    queue, results = pg
    made = _statements(queue, monkeypatch)
    queue.submit([Job("batch.task", args=(i,)) for i in range(3)], results)
    assert made == [("each", 3), ("each", 3)]


def test_a_batch_stores_every_value_as_row_by_row_does(pg, monkeypatch):
    """Values cross as JSON: floats, negative priorities, bytes, text needing escapes and
    NULL due times are stored as the row-by-row statements store them."""
    from nuvom.backends.postgres import store

    queue, results = pg
    now = queue.clock.time()

    def batch(tag: str) -> list[Job]:
        return [
            Job("batch.task", id=f"{tag}{i:02}", args=(i, "qu\"ote\\ é ☃\n", b"\x00\xff" * i),
                queue=f"q é {tag}", priority=-(2**31) + i, created_at=now + i / 3,
                max_retries=i, due_at=None if i % 2 else now - 1 / 7)
            for i in range(20)
        ]  # fmt: skip

    def stored(tag: str) -> list[tuple[Any, ...]]:
        claimed = queue.claim(50, worker_id="w", lease_secs=LEASE_SECS, results=results,
                              queues=[f"q é {tag}"])  # fmt: skip
        rows = []
        for job in sorted(claimed, key=lambda j: j.id):
            record = results.get_full(job.id)
            rows.append((job.id[1:], list(job.args), job.priority, job.created_at, job.due_at,
                         job.max_retries, record.func_name, record.priority, record.due_at,
                         record.status, list(record.args)))  # fmt: skip
        return rows

    made = _statements(queue, monkeypatch)
    queue.submit(batch("a"), results)
    monkeypatch.setattr(store, "BATCH_MIN_ROWS", 10**9)
    queue.submit(batch("b"), results)
    assert made == [("one", 20), ("one", 20), ("each", 20), ("each", 20)]
    a, b = stored("a"), stored("b")
    assert len(a) == 20
    assert a == b


def test_a_settle_of_a_batch_is_one_statement_per_table_and_stores_what_row_by_row_does(
    pg, monkeypatch
):
    from nuvom.backends.postgres import store
    from nuvom.job import JobStatus
    from nuvom.records import ErrorInfo, Outcome

    queue, results = pg
    now = queue.clock.time()

    def outcome(i: int, job: Job) -> Outcome:
        if i % 3 == 0:
            return Outcome(job, JobStatus.SUCCESS, result={"n": i, "é": b"\x01"},
                           started_at=now, finished_at=now + i / 7, worker_id="w")  # fmt: skip
        if i % 3 == 1:
            error = ErrorInfo("ValueError", f'bad "{i}"\n', "Traceback ☃")
            return Outcome(job, JobStatus.FAILED, error=error, started_at=now,
                           finished_at=now + 1, worker_id="w")  # fmt: skip
        return Outcome(job, JobStatus.RETRYING, error=ErrorInfo("E", "again"), started_at=now,
                       finished_at=now + 1, worker_id="w", retry_at=now + 60)  # fmt: skip

    def settled(tag: str) -> list[tuple[Any, ...]]:
        jobs = [Job("batch.task", id=f"{tag}{i:02}", args=(i,), queue=tag) for i in range(12)]
        queue.submit(jobs, results)
        claimed = queue.claim(50, worker_id="w", lease_secs=LEASE_SECS, results=results,
                              queues=[tag])  # fmt: skip
        claimed.sort(key=lambda j: j.id)
        made.clear()
        queue.settle([outcome(i, job) for i, job in enumerate(claimed)], results)
        rows: list[tuple[Any, ...]] = []
        for job in claimed:
            r = results.get_full(job.id)
            rows.append((job.id[1:], r.status, r.result, r.error_type, r.error_message,
                         r.traceback, r.finished_at, r.due_at,
                         [(a.status, a.finished_at, a.error_type) for a in r.history]))  # fmt: skip
        queued = queue.claim(50, worker_id="w2", lease_secs=LEASE_SECS, results=results,
                             queues=[tag])  # fmt: skip
        rows.append(("left in the queue", sorted(j.id[1:] for j in queued)))
        return rows

    made = _statements(queue, monkeypatch)
    a = settled("a")
    assert made == [("one", 12), ("one", 12), ("one", 8)], "records, attempts, then the acks"
    monkeypatch.setattr(store, "BATCH_MIN_ROWS", 10**9)
    b = settled("b")
    assert made == [("each", 12), ("each", 12), ("each", 8)]
    assert a[-1] == ("left in the queue", []), "the retries are due in a minute"
    assert a == b
