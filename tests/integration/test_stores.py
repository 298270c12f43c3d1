"""One SQLite file shared by many processes; separate files share nothing.

Producers in several spawned processes write to one file at once without
losing a job or leaking "database is locked"; stores at two paths stay apart.
"""

from __future__ import annotations

import multiprocessing
from contextlib import closing
from pathlib import Path

import pytest

from nuvom.job import Job, JobStatus
from nuvom.queue import enqueue
from nuvom.queue_backends.sqlite_queue import SQLiteJobQueue
from nuvom.result_backends.sqlite_backend import SQLiteResultBackend
from nuvom.task import task
from nuvom.worker import Worker

from .helpers import DEFAULT_WAIT_SECS, Project, produce_jobs

PRODUCERS = 4
JOBS_PER_PRODUCER = 300


@pytest.mark.slow
@pytest.mark.timeout(90)
def test_producers_in_four_processes_lose_nothing(project: Project) -> None:
    context = multiprocessing.get_context("spawn")
    go = context.Event()
    reports: multiprocessing.Queue[tuple[str, list[str] | str]] = context.Queue()
    producers = [
        context.Process(
            target=produce_jobs,
            args=(str(project.db_path), JOBS_PER_PRODUCER, go, reports, f"producer-{n}"),
        )
        for n in range(PRODUCERS)
    ]
    try:
        for producer in producers:
            producer.start()
        go.set()  # all four write at once
        ids: dict[str, list[str] | str] = {}
        for _ in producers:
            name, outcome = reports.get(timeout=DEFAULT_WAIT_SECS)
            ids[name] = outcome
        for producer in producers:
            producer.join(timeout=DEFAULT_WAIT_SECS)
    finally:
        for producer in producers:
            if producer.is_alive():
                producer.kill()
                producer.join()
        reports.close()

    errors = {name: outcome for name, outcome in ids.items() if isinstance(outcome, str)}
    assert not errors, errors
    assert [p.exitcode for p in producers] == [0] * PRODUCERS
    enqueued = {job_id for outcome in ids.values() for job_id in outcome}
    assert len(enqueued) == PRODUCERS * JOBS_PER_PRODUCER

    runtime = project.configure()
    assert runtime.queue.qsize() == PRODUCERS * JOBS_PER_PRODUCER
    assert runtime.results.status_counts() == {"PENDING": PRODUCERS * JOBS_PER_PRODUCER}
    stored = runtime.results.list_jobs(limit=2 * PRODUCERS * JOBS_PER_PRODUCER)
    assert {record.id for record in stored} == enqueued


def test_two_queues_at_two_paths_never_share_a_connection(tmp_path: Path) -> None:
    first = SQLiteJobQueue(tmp_path / "one" / "queue.db")
    second = SQLiteJobQueue(tmp_path / "two" / "queue.db")
    try:
        first.enqueue(Job("add", args=[1, 2]))

        assert first.qsize() == 1
        assert second.qsize() == 0
        assert first.store.conn is not second.store.conn
        second.enqueue_many([Job("add", args=[3, 4]), Job("add", args=[5, 6])])
        assert (first.qsize(), second.qsize()) == (1, 2)
        claimed = second.pop_batch(10, worker_id="w", lease_secs=30)
        assert sorted(job.args[0] for job in claimed) == [3, 5]
        assert first.qsize() == 1
    finally:
        first.close()
        second.close()


def test_reconfiguring_to_another_path_sees_another_store(project: Project) -> None:
    one = project.configure(sqlite_db_path=project.root / "one.db")
    enqueue(Job("add", args=[1, 2]))
    assert one.queue.qsize() == 1

    two = project.configure(sqlite_db_path=project.root / "two.db")

    assert two.queue.qsize() == 0
    with closing(SQLiteJobQueue(project.root / "one.db")) as reopened:
        assert reopened.qsize() == 1


def test_queue_and_results_in_separate_files(project: Project) -> None:
    queue_path = project.root / "queue.db"
    results_path = project.root / "results.db"
    runtime = project.configure(sqlite_queue_path=queue_path, sqlite_db_path=results_path)

    @task(registry=runtime.registry)
    def add(x: int, y: int) -> int:
        return x + y

    job = add.delay(2, 3)
    assert runtime.queue.qsize() == 1

    stats = Worker(workers=2).run(burst=True)

    assert stats.succeeded == 1
    assert job.get(timeout=5) == 5
    assert runtime.queue.qsize() == 0
    with closing(SQLiteResultBackend(results_path)) as results:
        record = results.get_full(job.id)
    assert record is not None
    assert record.status is JobStatus.SUCCESS
    # The queue's file holds the queue only: no result rows leaked into it.
    with closing(SQLiteResultBackend(queue_path)) as beside_the_queue:
        assert beside_the_queue.get_full(job.id) is None
