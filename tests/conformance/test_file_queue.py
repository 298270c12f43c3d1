"""What only the file queue can show: its layout, quarantine of bad files, Windows renames.

The delivery contract itself runs on the file backends through the shared
``backends`` fixture; these tests look at the files.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import pytest

from nuvom.backends.file import store as file_store
from nuvom.clock import FakeClock
from nuvom.errors import BackendUnavailable
from nuvom.job import Job, JobStatus
from nuvom.queue_backends.file_queue import FileJobQueue
from nuvom.result_backends.file_backend import FileResultBackend

LEASE_SECS = 10.0


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def queue(tmp_path: Path, clock: FakeClock) -> FileJobQueue:
    return FileJobQueue(tmp_path / "queue", clock=clock)


@pytest.fixture
def results(tmp_path: Path, clock: FakeClock) -> FileResultBackend:
    return FileResultBackend(tmp_path / "results", clock=clock)


def files(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.rglob("*") if p.is_file())


def test_one_file_per_job_named_in_claim_order(queue: FileJobQueue, clock: FakeClock):
    low = Job("t", priority=0)
    high = Job("t", priority=9)
    later = Job("t", priority=9, due_at=clock.time() + 60)
    queue.enqueue_many([low, high, later])

    names = files(queue.pending_dir)

    assert len(names) == 3
    assert [name.rsplit("_", 1)[1] for name in names] == [f"{j.id}.job" for j in (high, later, low)]
    assert files(queue.tmp_dir) == [], "temp files are renamed into place"
    (claimed,) = queue.pop_batch(1, worker_id="w1", lease_secs=LEASE_SECS)
    assert claimed.id == high.id, "the scheduled job sorts early but is not due yet"
    (held,) = files(queue.claimed_dir)
    lease_field, owner, *_ = held.split("_")
    assert int(lease_field) == round((clock.time() + LEASE_SECS) * 1_000_000)
    assert owner == "w1"


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        (b"", "empty file"),
        (b"NV", "truncated header"),
        (b"garbage that is long enough", "bad magic"),
        (file_store.frame(b"\x00\x01", 99), "version 99"),
    ],
)
def test_an_undecodable_file_is_quarantined_with_its_reason(
    queue: FileJobQueue, results: FileResultBackend, caplog, content, reason
):
    good, bad = Job("t", args=(1,)), Job("t", args=(2,))
    queue.submit([bad, good], results)
    (bad_path,) = [p for p in queue.pending_dir.rglob("*.job") if bad.id in p.name]
    bad_path.write_bytes(content)

    with caplog.at_level(logging.WARNING, logger="nuvom.file"):
        claimed = queue.claim(10, worker_id="w1", lease_secs=LEASE_SECS, results=results)
        again = queue.claim(10, worker_id="w1", lease_secs=LEASE_SECS, results=results)

    assert [job.id for job in claimed] == [good.id], "the worker goes on with the next job"
    assert again == []
    ((corrupt, why),) = list(queue.quarantined())
    assert corrupt.name.endswith(".corrupt")
    assert bad.id in corrupt.name
    assert reason in why
    assert len([r for r in caplog.records if "quarantined" in r.getMessage()]) == 1, "logged once"
    record = results.get_full(bad.id)
    assert record is not None
    assert record.status is JobStatus.FAILED
    assert record.error_type == "CorruptJob"
    assert queue.stats()["quarantined"] == 1


def test_a_truncated_job_file_is_quarantined(queue: FileJobQueue):
    job = Job("t", args=("x" * 100,))
    queue.enqueue(job)
    (path,) = queue.pending_dir.rglob("*.job")
    path.write_bytes(path.read_bytes()[:-10])

    assert queue.pop_batch(5, worker_id="w1", lease_secs=LEASE_SECS) == []

    ((_, why),) = list(queue.quarantined())
    assert "truncated body" in why


def test_a_stray_file_in_pending_is_quarantined_not_claimed(queue: FileJobQueue):
    queue.enqueue(Job("t"))
    stray = queue.pending_dir / "default" / "notes.txt"
    stray.write_text("not a job")

    assert len(queue.pop_batch(5, worker_id="w1", lease_secs=LEASE_SECS)) == 1

    assert not stray.exists()
    ((path, why),) = list(queue.quarantined())
    assert path.name == "notes.txt.corrupt"
    assert "not a job file name" in why


def test_ids_and_queues_that_are_not_file_safe_round_trip(queue: FileJobQueue):
    job = Job("t", id="weird/id with_underscore:and*stars", queue="Emails/EU")
    queue.enqueue(job)

    assert queue.qsize("Emails/EU") == 1
    (claimed,) = queue.pop_batch(1, worker_id="host:1/worker_2", lease_secs=LEASE_SECS)

    assert (claimed.id, claimed.queue) == (job.id, job.queue)
    (row,) = queue.queue_stats()
    assert row.queue == "Emails/EU"
    assert row.lease_owners == {"host:1/worker_2": 1}
    queue.ack(job.id, worker_id="host:1/worker_2")
    assert files(queue.claimed_dir) == []


def test_a_rename_retries_windows_file_in_use_errors(monkeypatch, tmp_path: Path):
    source, target = tmp_path / "a", tmp_path / "b"
    source.write_text("x")
    real_replace = os.replace
    failures = iter([PermissionError(13, "in use"), PermissionError(13, "in use")])

    def flaky_replace(src: object, dst: object) -> None:
        error = next(failures, None)
        if error is not None:
            raise error
        real_replace(src, dst)  # type: ignore[arg-type]

    monkeypatch.setattr(os, "replace", flaky_replace)
    file_store.replace(source, target)

    assert target.read_text() == "x"
    assert not source.exists()


def test_a_rename_that_stays_refused_is_one_clear_error(monkeypatch, tmp_path: Path):
    monkeypatch.setattr(file_store, "RENAME_RETRY_SECS", 0.05)

    def refuse(src: object, dst: object) -> None:
        raise PermissionError(13, "in use")

    monkeypatch.setattr(os, "replace", refuse)
    with pytest.raises(BackendUnavailable, match="cannot rename a file"):
        file_store.replace(tmp_path / "a", tmp_path / "b")


def test_an_undecodable_result_record_is_quarantined(results: FileResultBackend):
    results.set_result("job-1", {"ok": True})
    path = results._path("job-1")
    path.write_bytes(b"\x00garbage")

    assert results.get_full("job-1") is None

    assert not path.exists()
    assert [p.name for p in results.corrupt_dir.iterdir() if p.suffix == ".corrupt"] == [
        f"{path.name}.corrupt"
    ]


def test_queue_stats_counts_each_state_per_queue(queue: FileJobQueue, clock: FakeClock):
    queue.enqueue_many(
        [
            Job("t", queue="a"),
            Job("t", queue="a"),
            Job("t", queue="a", due_at=clock.time() + 60),
            Job("t", queue="b"),
        ]
    )
    queue.pop_batch(1, worker_id="w1", lease_secs=LEASE_SECS, queues=["a"])
    queue.pop_batch(1, worker_id="w2", lease_secs=1, queues=["b"])
    clock.advance(2)

    rows = {row.queue: row for row in queue.queue_stats()}

    assert (rows["a"].pending, rows["a"].scheduled, rows["a"].running) == (1, 1, 1)
    assert rows["a"].lease_owners == {"w1": 1}
    assert (rows["b"].pending, rows["b"].running, rows["b"].expired) == (0, 0, 1)
    assert queue.stats()["waiting"] == 2


def test_temp_files_left_by_a_crashed_writer_are_swept_at_start(tmp_path: Path, clock):
    FileJobQueue(tmp_path / "queue", clock=clock)
    stale = tmp_path / "queue" / "tmp" / "123-dead-1-0.tmp"
    fresh = tmp_path / "queue" / "tmp" / "456-live-1-0.tmp"
    for path in (stale, fresh):
        path.write_bytes(b"half a job")
    two_hours_ago = stale.stat().st_mtime - 2 * 3600
    os.utime(stale, (two_hours_ago, two_hours_ago))

    FileJobQueue(tmp_path / "queue", clock=clock)

    assert not stale.exists()
    assert fresh.exists(), "a write in progress in another process is left alone"
