"""SQLite failing inside a write: a nuvom error naming the file, nothing half-written, and
the same store (and a running worker) carrying on once the fault is gone.

The faults are SQLite's own, made in ways that work for root too: a trigger that raises
inside a statement after ``BEGIN`` succeeded, and ``max_page_count`` for a full disk.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
from collections.abc import Iterator
from contextlib import closing, contextmanager
from pathlib import Path

import pytest

from nuvom.errors import BackendError, NuvomError
from nuvom.job import Job, JobStatus
from nuvom.queue import enqueue, enqueue_many
from nuvom.queue_backends.sqlite_queue import SQLiteJobQueue
from nuvom.task import task
from nuvom.worker import Worker

from .helpers import DEFAULT_WAIT_SECS, Project, wait_for

FAULT = "injected fault"


@contextmanager
def failing(db_path: Path, event: str, table: str, when: str = "1") -> Iterator[None]:
    """Every ``event`` (INSERT, UPDATE, DELETE) on ``table`` matching ``when`` fails inside
    SQLite, for every connection to the file, until the block ends."""
    with closing(sqlite3.connect(db_path, isolation_level=None)) as conn:
        conn.execute(
            f"CREATE TRIGGER test_fault BEFORE {event} ON {table} WHEN {when} "
            f"BEGIN SELECT RAISE(ABORT, '{FAULT}'); END"
        )
    try:
        yield
    finally:
        with closing(sqlite3.connect(db_path, isolation_level=None)) as conn:
            conn.execute("DROP TRIGGER test_fault")


class Collect(logging.Handler):
    """Keeps the records a worker thread logs (nuvom's loggers may not reach caplog's)."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)

    def matching(self, text: str) -> list[logging.LogRecord]:
        return [r for r in list(self.records) if text in r.getMessage()]


@pytest.fixture
def worker_log() -> Iterator[Collect]:
    logger = logging.getLogger("nuvom.worker")
    handler, level = Collect(), logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        yield handler
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)


def test_a_fault_inside_an_enqueue_is_a_backend_error_and_leaves_nothing(
    project: Project,
) -> None:
    runtime = project.configure()

    @task(registry=runtime.registry)
    def add(x: int, y: int) -> int:
        return x + y

    @task(registry=runtime.registry, name="add_doomed", queue="doomed")
    def add_doomed(x: int, y: int) -> int:
        return x + y

    store = runtime.queue.store
    first, second = Job("add", args=[3, 4]), Job("add", args=[5, 6], queue="doomed")

    with failing(project.db_path, "INSERT", "nuvom_queue", "NEW.queue = 'doomed'"):
        # The batch's second row fails after its first was written, in one transaction.
        with pytest.raises(BackendError) as refused:
            enqueue_many([first, second])
        with pytest.raises(BackendError):
            enqueue(second)
        with pytest.raises(BackendError):
            add_doomed.delay(1, 2)
        passing = add.delay(1, 2)  # the connection is fine for a write SQLite accepts

    message = str(refused.value)
    assert isinstance(refused.value, NuvomError)
    assert refused.value.backend == "sqlite"
    assert refused.value.__cause__ is None
    assert refused.value.__suppress_context__  # one clear line: sqlite3's error is not chained
    assert str(project.db_path) in message, message
    assert FAULT in message, message
    assert [job.id for job in runtime.queue.waiting_jobs()] == [passing.id]
    assert runtime.results.get_full(first.id) is None
    assert runtime.results.get_full(second.id) is None
    assert runtime.results.status_counts() == {"PENDING": 1}

    handles = enqueue_many([first, second])  # on the same store, now the fault is gone
    handles.append(add_doomed.delay(7, 8))

    assert runtime.queue.store is store
    assert Worker(workers=1).run(burst=True).succeeded == 4
    assert passing.get(timeout=5) == 3
    assert [h.get(timeout=5) for h in handles] == [7, 11, 15]


@pytest.mark.timeout(60)
@pytest.mark.parametrize(
    ("step", "event", "logged"),
    [("claim", "UPDATE", "claiming jobs failed"), ("settle", "DELETE", "outcomes failed")],
)
def test_a_fault_in_a_workers_step_is_logged_retried_and_outlived(
    project: Project, worker_log: Collect, step: str, event: str, logged: str
) -> None:
    runtime = project.configure()

    @task(registry=runtime.registry)
    def add(x: int, y: int) -> int:
        return x + y

    handles = add.map([(n, 1) for n in range(5)])
    worker = Worker(workers=1, runtime=runtime)
    thread = threading.Thread(target=worker.run, name=f"worker-{step}", daemon=True)
    # claim: the claim's UPDATE fails; settle: the ack's DELETE, after the outcomes were written.
    with failing(project.db_path, event, "nuvom_queue"):
        thread.start()
        try:
            errors = wait_for(lambda: worker_log.matching(logged), what=f"a failed {step}")
            assert thread.is_alive()
            assert JobStatus.SUCCESS not in {h.status for h in handles}  # rolled back
        except BaseException:
            worker.stop(force=True)
            thread.join(timeout=DEFAULT_WAIT_SECS)
            raise
    try:
        assert [h.get(timeout=DEFAULT_WAIT_SECS) for h in handles] == [n + 1 for n in range(5)]
    finally:
        worker.stop()
        thread.join(timeout=DEFAULT_WAIT_SECS)
    assert not thread.is_alive()

    # One clear line naming the file, as for any backend error: no traceback, no bug report.
    assert errors[0].levelno == logging.ERROR
    assert not errors[0].exc_info, errors[0].exc_info
    assert str(project.db_path) in errors[0].getMessage()
    assert FAULT in errors[0].getMessage()
    for handle in handles:
        record = runtime.results.get_full(handle.id)
        assert record is not None
        assert (record.status, record.error_type) == (JobStatus.SUCCESS, None)
    assert runtime.queue.qsize() == 0


def test_a_full_disk_is_a_backend_error_and_the_wal_is_given_back(tmp_path: Path) -> None:
    db_path = tmp_path / "nuvom.db"
    wal = tmp_path / "nuvom.db-wal"
    with closing(SQLiteJobQueue(db_path)) as queue:
        queue.enqueue(Job("add", args=[1, 2]))
        assert wal.stat().st_size > 0  # frames the store wrote, kept for reuse
        conn = queue.store.conn  # this thread's: where SQLite counts the pages
        limit = conn.execute("PRAGMA max_page_count").fetchone()[0]
        pages = conn.execute("PRAGMA page_count").fetchone()[0]
        conn.execute(f"PRAGMA max_page_count = {pages}")  # "full" at its current size
        big = Job("add", args=["x" * 200_000, "y"])

        with pytest.raises(BackendError) as refused:
            queue.enqueue(big)

        message = str(refused.value)
        assert "database or disk is full" in message, message
        assert str(db_path) in message, message
        assert wal.stat().st_size == 0  # checkpointed into the file and truncated
        assert queue.qsize() == 1

        conn.execute(f"PRAGMA max_page_count = {limit}")  # the disk has room again
        queue.enqueue(big)

        assert queue.qsize() == 2
        assert queue.store.conn is conn
