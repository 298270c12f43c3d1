"""``prune`` on the SQL result backends keeps what an unfinished workflow still needs.

A job that comes after others is fed their results (or, an errback, their failure) when it
is claimed (``nuvom.workflow.feed``), so the records of the jobs named in its
``origin["after"]`` stay until it finished, whether it is parked, released, running or
retrying; and, as on the memory and file backends (``common.prunable``), no member of a
workflow whose last job is unfinished goes. Both pairings: the queue in the same store
(one transaction per step) and the SQL result backend alone (the memory queue beside it,
which parks and releases the jobs itself).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from nuvom.backends.contract import BaseJobQueue
from nuvom.backends.memory.queue import MemoryJobQueue
from nuvom.backends.sqlbase import SQLResultBackend
from nuvom.backends.sqlite.queue import SQLiteJobQueue
from nuvom.backends.sqlite.results import SQLiteResultBackend
from nuvom.backends.sqlite.store import SQLiteStore
from nuvom.clock import FakeClock
from nuvom.job import Job, JobStatus
from nuvom.records import ErrorInfo, Outcome
from nuvom.workflow import feed

from .servers import drop_postgres_schema, require_postgres, server_lock, unique_name

LEASE_SECS = 30.0


@dataclass
class Pair:
    queue: BaseJobQueue
    results: SQLResultBackend
    clock: FakeClock

    def submit(self, *jobs: Job) -> None:
        self.queue.submit(list(jobs), self.results)

    def claim(self) -> dict[str, Job]:
        claimed = self.queue.claim(100, worker_id="w1", lease_secs=LEASE_SECS,
                                   results=self.results)  # fmt: skip
        return {job.id: job for job in claimed}

    def settle(self, job: Job, status: JobStatus = JobStatus.SUCCESS, **fields: Any) -> None:
        if status is JobStatus.SUCCESS:
            fields.setdefault("result", f"result of {job.id}")
        outcome = Outcome(job, status, worker_id="w1", finished_at=self.clock.time(), **fields)
        self.queue.settle([outcome], self.results)
        self.clock.advance(1)

    def prune(self) -> int:
        """Prune every finished record there is (all of them are older than a second on)."""
        return self.results.prune(older_than=self.clock.time() + 1)

    def status(self, job_id: str) -> JobStatus | None:
        return self.results.get_status(job_id)


def member(name: str, workflow: str, *after: str, feed: str = "one") -> Job:
    """A job of ``workflow`` as ``nuvom.workflow`` compiles one, after ``after`` if any."""
    origin: dict[str, Any] = {"workflow": workflow}
    if after:
        origin.update(after=list(after), feed=feed)
    return Job("tests.task", id=name, origin=origin)


def _sqlite(tmp_path: Path, *, shared: bool) -> Iterator[Pair]:
    clock, store = FakeClock(), SQLiteStore(tmp_path / "nuvom.db")
    results = SQLiteResultBackend(store=store, clock=clock)
    queue = SQLiteJobQueue(store=store, clock=clock) if shared else MemoryJobQueue(clock=clock)
    yield Pair(queue, results, clock)
    queue.close()
    store.close()


def _postgres(schema: str, *, shared: bool) -> Iterator[Pair]:
    from nuvom.backends.postgres.queue import PostgresJobQueue
    from nuvom.backends.postgres.results import PostgresResultBackend
    from nuvom.backends.postgres.store import PostgresStore

    clock, store = FakeClock(), PostgresStore(require_postgres(), schema=schema)
    results = PostgresResultBackend(store=store, clock=clock)
    queue = PostgresJobQueue(store=store, clock=clock) if shared else MemoryJobQueue(clock=clock)
    yield Pair(queue, results, clock)
    queue.close()
    store.close()


@pytest.fixture(params=["sqlite-shared", "sqlite-alone", "postgres-shared", "postgres-alone"])
def pair(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Pair]:
    engine, pairing = request.param.split("-")
    if engine == "sqlite":
        yield from _sqlite(tmp_path, shared=pairing == "shared")
        return
    with server_lock(exclusive=False):
        require_postgres()
        schema = unique_name("nuvom_test")
        try:
            yield from _postgres(schema, shared=pairing == "shared")
        finally:
            drop_postgres_schema(schema)


def test_what_a_chord_body_is_fed_stays_while_it_is_parked_released_running_or_retrying(
    pair: Pair,
) -> None:
    pair.submit(member("a", "body"), member("b", "body"),
                member("body", "body", "a", "b", feed="list"), Job("tests.task", id="lone"))  # fmt: skip
    claimed = pair.claim()
    assert sorted(claimed) == ["a", "b", "lone"]
    pair.settle(claimed["lone"])
    pair.settle(claimed["a"])

    assert pair.prune() == 1, "the body is parked: only the job outside the workflow goes"
    assert pair.status("lone") is None
    assert pair.status("a") is JobStatus.SUCCESS

    pair.settle(claimed["b"])
    assert pair.prune() == 0, "the body is released: what it is fed stays"
    (body,) = pair.claim().values()
    assert pair.prune() == 0, "the body is running"
    pair.settle(body, JobStatus.RETRYING, retry_at=pair.clock.time())
    assert pair.prune() == 0, "the body will run again"
    assert pair.status("body") is JobStatus.RETRYING

    (body,) = pair.claim().values()
    assert feed(body, pair.results).args[0] == ["result of a", "result of b"]
    pair.settle(body)
    assert pair.prune() == 3, "the workflow finished: all of it goes"
    assert [pair.status(j) for j in ("a", "b", "body")] == [None, None, None]


def test_no_member_of_a_workflow_whose_last_job_is_unfinished_goes(pair: Pair) -> None:
    # a -> b -> last: ``last`` is fed b's result only, but a is a member of its workflow.
    pair.submit(member("a", "last"), member("b", "last", "a"), member("last", "last", "b"))
    for name in ("a", "b"):
        (job,) = pair.claim().values()
        assert job.id == name
        pair.settle(job)
    (last,) = pair.claim().values()

    assert pair.prune() == 0
    assert pair.status("a") is JobStatus.SUCCESS
    pair.settle(last)
    assert pair.prune() == 3


def test_what_a_then_callback_waits_for_stays_though_it_is_in_no_workflow(pair: Pair) -> None:
    # ``handle.then`` on a job already done: the callback is its own workflow.
    pair.submit(Job("tests.task", id="first"))
    (first,) = pair.claim().values()
    pair.settle(first)
    pair.submit(member("then", "then", "first"))

    assert pair.prune() == 0, "the callback is released: the result it is fed stays"
    (then,) = pair.claim().values()
    assert feed(then, pair.results).args[0] == "result of first"
    pair.settle(then)
    assert pair.prune() == 2


def test_the_failure_an_errback_is_fed_stays_after_the_workflow_was_cancelled(
    pair: Pair,
) -> None:
    last = member("last", "last", "a")
    last.origin["errback"] = "errback"  # type: ignore[index]
    pair.submit(member("a", "last"), last, member("errback", "last", "a", "last", feed="failure"))
    (a,) = pair.claim().values()
    pair.settle(a, JobStatus.FAILED, error=ErrorInfo("ValueError", "no"))
    assert pair.status("last") is JobStatus.CANCELLED, "the workflow's last job is final"

    assert pair.prune() == 0, "the errback is released: the failure it is fed stays"
    (errback,) = pair.claim().values()
    assert feed(errback, pair.results).args[:2] == ("a", "ValueError: no")
    pair.settle(errback)
    assert pair.prune() == 3


def test_prune_still_takes_only_the_statuses_asked_for(pair: Pair) -> None:
    pair.submit(member("a", "body"), member("body", "body", "a"), Job("tests.task", id="bad"))
    claimed = pair.claim()
    pair.settle(claimed["a"])
    pair.settle(claimed["bad"], JobStatus.FAILED, error=ErrorInfo("ValueError", "no"))
    later = pair.clock.time() + 1

    assert pair.results.prune(older_than=later, statuses=[JobStatus.SUCCESS]) == 0
    assert pair.results.prune(older_than=later, statuses=[JobStatus.FAILED]) == 1
    assert pair.status("a") is JobStatus.SUCCESS


def test_a_record_whose_payload_does_not_decode_neither_keeps_nor_stops_the_prune(
    pair: Pair,
) -> None:
    pair.submit(member("a", "body"), member("body", "body", "a"), Job("tests.task", id="lone"))
    claimed = pair.claim()
    pair.settle(claimed["a"])
    pair.settle(claimed["lone"])
    now = pair.clock.time()
    with pair.results.store.transaction() as cur:  # an unfinished job, and an old finished one
        cur.execute(pair.results.sql.MARK_RUNNING,
                    ("junk", "tests.task", "default", 0, b"junk", now, now, "w1", now))  # fmt: skip
        cur.execute(pair.results.sql.SAVE_OUTCOME,
                    ("old-junk", "tests.task", "default", 0, "SUCCESS", b"junk", None, False,
                     None, None, None, now, None, now, "w1", now))  # fmt: skip

    assert pair.prune() == 2, "lone and old-junk go; a stays, fed to the parked body"
    assert pair.status("a") is JobStatus.SUCCESS
    assert pair.status("junk") is JobStatus.RUNNING
