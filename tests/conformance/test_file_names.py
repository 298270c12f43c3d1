"""A file queue's file names are its state: one that does not parse is poison, not a crash.

Real pending job files are renamed to names nuvom never writes (hand edits,
other programs, a bad copy). Each is quarantined beside its reason, the job
its contents name is recorded FAILED ``CorruptJob``, and the claim goes on
with the good files.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

import nuvom
from nuvom.backends.file import store as file_store
from nuvom.backends.file.queue import FileJobQueue
from nuvom.backends.file.results import FileResultBackend
from nuvom.clock import FakeClock
from nuvom.job import Job, JobStatus
from nuvom.registry import TaskRegistry
from nuvom.task import task
from nuvom.worker import Worker

GOOD_JOBS = 10
LEASE_SECS = 10.0


def _fields(path: Path) -> list[str]:
    """A pending name's fields: priority, due, seq, attempts, id (``.job`` dropped)."""
    return path.name[: -len(".job")].split("_")


def _join(fields: list[str], suffix: str = ".job") -> str:
    return "_".join(fields) + suffix


def _rename(path: Path, name: str) -> Path:
    target = path.with_name(name)
    path.rename(target)
    return target


def _with_field(index: int, value: str) -> Callable[[Path], Path]:
    def spoil(path: Path) -> Path:
        fields = _fields(path)
        fields[index] = value
        return _rename(path, _join(fields))

    return spoil


def _into(folder: Callable[[Path], Path]) -> Callable[[Path], Path]:
    """Move the file, name unchanged, into the folder ``folder(path)`` gives."""

    def spoil(path: Path) -> Path:
        target = folder(path) / path.name
        target.parent.mkdir(parents=True, exist_ok=True)
        path.rename(target)
        return target

    return spoil


def _claimed_by_bad_owner(path: Path) -> Path:
    claimed = path.parents[2] / "claimed" / path.parent.name
    claimed.mkdir(parents=True, exist_ok=True)
    target = claimed / f"{0:017d}_=zz_{path.name}"  # its lease ran out long ago
    path.rename(target)
    return target


# name -> how a real pending file is spoilt (returns where it now is)
SPOILERS: dict[str, Callable[[Path], Path]] = {
    "id not hex": _with_field(4, "=zz"),
    "id hex but not utf-8": _with_field(4, "=ff"),
    "id a bad hash": _with_field(4, "~nothex"),
    "empty priority": _with_field(0, ""),
    "priority not digits": _with_field(0, "abcdefghij"),
    "priority in other digits": _with_field(0, "٠١٢٣٤٥٦٧٨٩"),
    "priority out of range": _with_field(0, "9999999999"),
    "due too short": _with_field(1, "1" * 16),
    "seq not digits": _with_field(2, "x" * 20),
    "attempts empty": _with_field(3, ""),
    "truncated": lambda path: _rename(path, path.name[:25]),
    "no suffix": lambda path: _rename(path, path.name[: -len(".job")]),
    "extra field": lambda path: _rename(path, _join([*_fields(path), "x"])),
    "queue folder not a queue": _into(lambda path: path.parents[1] / "=zz"),
    "queue folder upper case": _into(lambda path: path.parents[1] / "UPPER"),
    "outside any queue folder": _into(lambda path: path.parents[1]),
    "claimed by a bad owner": _claimed_by_bad_owner,
}


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def queue(tmp_path: Path, clock: FakeClock) -> Iterator[FileJobQueue]:
    made = FileJobQueue(tmp_path / "queue", clock=clock)
    yield made
    made.close()


@pytest.fixture
def results(tmp_path: Path, clock: FakeClock) -> Iterator[FileResultBackend]:
    made = FileResultBackend(tmp_path / "results", clock=clock)
    yield made
    made.close()


def _pending_file(queue: FileJobQueue, job: Job) -> Path:
    (path,) = [p for p in queue.pending_dir.rglob("*.job") if job.id in p.name]
    return path


def test_a_worker_fails_each_badly_named_job_and_runs_the_good_ones(
    queue: FileJobQueue, results: FileResultBackend, clock: FakeClock, caplog
):
    nuvom.configure(
        queue_backend=queue, result_backend=results, registry=TaskRegistry(), clock=clock
    )

    @task
    def add(x: int, y: int) -> int:
        return x + y

    victims = {how: add.apply_async((0, 0), priority=5).job for how in SPOILERS}
    good = add.map([(n, 1) for n in range(GOOD_JOBS)])
    for how, victim in victims.items():
        SPOILERS[how](_pending_file(queue, victim))

    with caplog.at_level(logging.WARNING):
        Worker(workers=1).run(burst=True)

    assert [handle.get(timeout=5) for handle in good] == [n + 1 for n in range(GOOD_JOBS)]
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR], "no claim failed"
    for how, victim in victims.items():
        record = results.get_full(victim.id)
        assert record is not None, how
        assert (record.status, record.error_type) == (JobStatus.FAILED, "CorruptJob"), how
    quarantined = list(queue.quarantined())
    assert len(quarantined) == len(SPOILERS)
    for path, why in quarantined:
        assert path.name.endswith(".corrupt")
        assert path.name[: -len(".corrupt")] in why, "the reason names the file"
    assert sum(row.quarantined for row in queue.queue_stats()) == len(SPOILERS)
    assert queue.stats()["quarantined"] == len(SPOILERS)
    assert queue.qsize() == 0
    assert [p for p in queue.claimed_dir.rglob("*") if p.is_file()] == []


@pytest.mark.parametrize("how", sorted(SPOILERS))
def test_one_claim_quarantines_a_bad_name_and_reports_its_job(
    queue: FileJobQueue, results: FileResultBackend, how: str
):
    bad, before, after = Job("t", priority=5), Job("t", priority=9), Job("t")
    queue.submit([bad, before, after], results)
    SPOILERS[how](_pending_file(queue, bad))

    claimed = queue.claim_batch(10, worker_id="w1", lease_secs=LEASE_SECS)

    assert sorted(job.id for job in claimed.jobs) == sorted([before.id, after.id])
    ((job_id, reason),) = claimed.quarantined
    assert job_id == bad.id, "the id comes from the file's contents"
    ((path, why),) = list(queue.quarantined())
    assert why == reason
    assert path.with_name(path.name[: -len(".corrupt")] + ".reason").exists()
    assert queue.claim_batch(10, worker_id="w1", lease_secs=LEASE_SECS).quarantined == []


def test_readers_skip_bad_names_and_leave_them_to_the_claim(queue: FileJobQueue):
    kept, bad = Job("t"), Job("t")
    queue.enqueue_many([kept, bad])
    SPOILERS["id not hex"](_pending_file(queue, bad))
    (queue.pending_dir / "stray.job").write_bytes(b"not in a queue folder")

    assert queue.qsize() == 1
    assert [job.id for job in queue.waiting_jobs()] == [kept.id]
    assert queue.cancel(bad.id) is False
    (row,) = queue.queue_stats()
    assert (row.pending, row.quarantined) == (1, 0)
    assert list(queue.quarantined()) == [], "only a claim, which can report the job, sets aside"

    claimed = queue.claim_batch(10, worker_id="w1", lease_secs=LEASE_SECS)

    assert [job.id for job in claimed.jobs] == [kept.id]
    assert [job_id for job_id, _ in claimed.quarantined] == [bad.id], "the stray names no job"
    assert sorted(path.parent.name for path, _ in queue.quarantined()) == ["_", "default"]


def test_garbage_with_a_bad_name_is_quarantined_and_names_no_job(queue: FileJobQueue):
    queue.enqueue(Job("t"))
    (queue.pending_dir / "default" / "0000000001_x.job").write_bytes(b"\x00garbage")

    claimed = queue.claim_batch(10, worker_id="w1", lease_secs=LEASE_SECS)

    assert len(claimed.jobs) == 1
    assert claimed.quarantined == [], "no job to fail: the contents name none"
    ((_, why),) = list(queue.quarantined())
    assert "not a job file name" in why


@pytest.mark.parametrize(
    "field", ["=zz", "=ff", "=6", "~short", "", "has space", "under_score", ".dot"]
)
def test_decode_field_refuses_what_encode_field_never_writes(field: str):
    with pytest.raises(file_store.DecodeFailure):
        file_store.decode_field(field)


@pytest.mark.parametrize("text", ["plain", "Emails/EU", "ünïcode", "x" * 200, "con"])
def test_decode_field_reads_what_encode_field_writes(text: str):
    for directory in (False, True):
        field = file_store.encode_field(text, directory=directory)
        decoded = file_store.decode_field(field, directory=directory)
        assert decoded == (None if field.startswith("~") else text)
