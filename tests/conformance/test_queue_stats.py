"""``queue_stats()`` on the embedded backends: one row per queue, lease owners, expired claims."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from nuvom.clock import FakeClock
from nuvom.job import Job
from nuvom.queue_backends.base import QueueStats

from .conftest import BUILDERS, Backends

PER_QUEUE = ["memory", "file", "sqlite", "sqlite-shared", "postgres", "redis"]


@pytest.fixture(params=PER_QUEUE)
def embedded(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Backends]:
    built = BUILDERS[request.param](tmp_path, FakeClock())
    yield built
    built.close()


def test_rows_per_queue_with_lease_owners(embedded: Backends):
    queue, clock = embedded.queue, embedded.clock
    queue.enqueue_many(
        [
            Job("t", queue="emails"),
            Job("t", queue="emails"),
            Job("t", queue="emails", due_at=clock.time() + 60),
            Job("t", queue="reports"),
            Job("t", queue="reports"),
        ]
    )
    queue.pop_batch(1, worker_id="w1", lease_secs=100, queues=["emails"])
    queue.pop_batch(1, worker_id="w2", lease_secs=100, queues=["reports"])
    queue.pop_batch(1, worker_id="w1", lease_secs=5, queues=["reports"])
    clock.advance(10)  # w1's claim on reports has expired; the others hold

    rows = {row.queue: row for row in queue.queue_stats()}

    assert sorted(rows) == ["emails", "reports"]
    emails, reports = rows["emails"], rows["reports"]
    assert (emails.pending, emails.scheduled, emails.running, emails.expired) == (1, 1, 1, 0)
    assert emails.lease_owners == {"w1": 1}
    assert (reports.pending, reports.running, reports.expired) == (0, 1, 1)
    assert reports.lease_owners == {"w2": 1}
    totals = QueueStats.totals(list(rows.values()))
    assert totals["waiting"] == queue.qsize() == 2
    assert queue.stats()["running"] == 2
