"""One bad job never stops a queue: a stored job that went bad fails alone, on every engine.

The job is enqueued well and then spoilt where it is stored (an option of the
wrong type in its payload, a priority that is not an int), as a bug, an older
release or a hand edit could leave it. It sorts first; a one-thread worker
must still run the ten good jobs behind it, record it FAILED ``CorruptJob``
and return.
"""

from __future__ import annotations

import sqlite3
from typing import Any

import pytest

import nuvom
from nuvom.backends.file import store as file_store
from nuvom.backends.file.queue import _STRING, FORMAT_VERSION
from nuvom.errors import InvalidJob
from nuvom.job import Job, JobStatus
from nuvom.queue import enqueue
from nuvom.records import PAYLOAD_VERSION
from nuvom.registry import TaskRegistry
from nuvom.serialization import Codec
from nuvom.task import task
from nuvom.worker import Worker

from .conftest import Backends

GOOD_JOBS = 10


def _bad_payload(job: Job) -> bytes:
    """The job's payload with ``timeout_secs`` stored as a string."""
    body = [PAYLOAD_VERSION, job.func_name, list(job.args), job.kwargs, job.created_at,
            {"timeout_secs": "30"}]  # fmt: skip
    return Codec().dumps(body)


def spoil(b: Backends, job: Job, how: str) -> None:
    """Make the stored copy of ``job`` bad, behind the queue's back."""
    kind = b.kind.split("-")[0]
    if kind == "memory":
        stored = b.queue._waiting[job.id][1]  # type: ignore[attr-defined]
        if how == "payload":
            stored.timeout_secs = "30"
        else:
            stored.priority = "high"
    elif kind == "sqlite":
        with sqlite3.connect(b.queue.store.path) as conn:  # type: ignore[attr-defined]
            column, value = (
                ("payload", _bad_payload(job)) if how == "payload" else ("priority", "high")
            )
            conn.execute(f"UPDATE nuvom_queue SET {column} = ? WHERE id = ?", (value, job.id))
        conn.close()
    elif kind == "postgres":
        with b.queue.store.transaction() as cur:  # type: ignore[attr-defined]
            cur.execute(
                "UPDATE nuvom_queue SET payload = %s WHERE id = %s", (_bad_payload(job), job.id)
            )
    elif kind == "redis":
        key = f"{b.queue.prefix}:job:{job.id}"  # type: ignore[attr-defined]
        field, value = ("payload", _bad_payload(job)) if how == "payload" else ("priority", "1.5")
        b.queue.client.hset(key, field, value)  # type: ignore[attr-defined]
    elif kind == "file":
        (path,) = [p for p in b.queue.pending_dir.rglob("*.job") if job.id in p.name]  # type: ignore[attr-defined]
        head = b"".join(_STRING.pack(len(t)) + t for t in (job.id.encode(), job.queue.encode()))
        path.write_bytes(file_store.frame(head + _bad_payload(job), FORMAT_VERSION))
    else:
        raise AssertionError(kind)


def _hows(b: Backends) -> list[str]:
    # PostgreSQL's priority column is an integer and a file's priority is its name's digits:
    # neither can hold a non-int priority (the file engine's bad names are tested on their own).
    return ["payload"] if b.kind.split("-")[0] in ("postgres", "file") else ["payload", "priority"]


def test_spoilt_jobs_fail_alone_and_the_good_ones_behind_them_run(backends: Backends):
    nuvom.configure(
        queue_backend=backends.queue,
        result_backend=backends.results,
        registry=TaskRegistry(),
        clock=backends.clock,
    )

    @task
    def add(x: int, y: int) -> int:
        return x + y

    poisons = []
    for how in _hows(backends):
        poison = add.apply_async((0, 0), priority=5).job
        spoil(backends, poison, how)
        poisons.append(poison)
    good = add.map([(n, 1) for n in range(GOOD_JOBS)])

    Worker(workers=1).run(burst=True)

    assert [handle.get(timeout=5) for handle in good] == [n + 1 for n in range(GOOD_JOBS)]
    for poison in poisons:
        record = backends.results.get_full(poison.id)
        assert record is not None
        assert record.status is JobStatus.FAILED
        assert record.error_type == "CorruptJob"
    assert backends.queue.qsize() == 0
    rows: Any = backends.queue.queue_stats()
    assert sum(row.quarantined for row in rows) == len(poisons), "each is counted as quarantined"


def test_a_job_spoilt_before_enqueue_is_refused_and_nothing_is_stored(backends: Backends):
    nuvom.configure(
        queue_backend=backends.queue,
        result_backend=backends.results,
        registry=TaskRegistry(),
        clock=backends.clock,
    )
    job = Job("add", args=(1, 2))
    job.due_at = float("nan")

    with pytest.raises(InvalidJob, match="due_at"):
        enqueue(job)

    assert backends.queue.qsize() == 0
    assert backends.results.get_full(job.id) is None, "a refused job leaves no record"
    assert enqueue(Job("add", args=(1, 2))).id, "the queue still takes good jobs"
