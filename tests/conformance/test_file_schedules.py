"""Schedules on the file queue, as separate processes see them.

Two ``FileJobQueue`` objects on one folder share nothing but the files, as two
processes would; the last test races real spawned processes. A crash is an
exception no ``except Exception`` catches, raised from the step it interrupts.
"""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from nuvom.backends.contract import TICKS_KEPT_SECS
from nuvom.backends.file import queue as file_queue
from nuvom.backends.file import store as file_store
from nuvom.backends.file.queue import FileJobQueue
from nuvom.clock import FakeClock
from nuvom.job import Job
from nuvom.records import Schedule
from nuvom.result_backends.memory_backend import MemoryResultBackend
from nuvom.scheduler import Scheduler, new_schedule, tick_job_id

from .processes import race_processes

LEASE_SECS = 30.0
RACERS = 8
SPAWNED = 3
SPAWNED_TICKS = 25
WAIT_SECS = 60.0


class Crash(BaseException):
    """The process dying at this point: nothing after it runs, no handler catches it."""


def die(*args: object) -> Any:
    raise Crash


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    return tmp_path / "queue"


@pytest.fixture
def first(folder: Path, clock: FakeClock) -> FileJobQueue:
    return FileJobQueue(folder, clock=clock)


@pytest.fixture
def second(folder: Path, clock: FakeClock) -> FileJobQueue:
    return FileJobQueue(folder, clock=clock)


def _schedule(clock: FakeClock, secs: float = 10.0) -> Schedule:
    return new_schedule("t", args=[1], interval=secs, now=clock.time())


def _job(schedule: Schedule, tick: float) -> Job:
    return Job("t", args=(1,), id=tick_job_id(schedule.id, tick))


def _queued(queue: FileJobQueue) -> list[str]:
    return [job.id for job in queue.waiting_jobs()]


def _staged(queue: FileJobQueue) -> list[Path]:
    return sorted(queue.schedules_dir.rglob("*.job"))


def test_two_queues_on_one_folder_race_for_a_tick_and_one_wins(
    first: FileJobQueue, second: FileJobQueue, clock: FakeClock
):
    schedule = _schedule(clock)
    first.save_schedule(schedule)
    tick = schedule.next_run_at
    start, wins = threading.Barrier(RACERS), []

    def race(queue: FileJobQueue) -> None:
        start.wait()
        wins.append(queue.fire_tick(schedule.id, tick, job=_job(schedule, tick),
                                    next_run_at=tick + 10))  # fmt: skip

    threads = [threading.Thread(target=race, args=((first, second)[n % 2],)) for n in range(RACERS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)

    assert sorted(wins) == [False] * (RACERS - 1) + [True]
    assert _queued(first) == [_job(schedule, tick).id]
    assert _staged(first) == [], "the losers take their staged job back"
    for queue in (first, second):
        (stored,) = queue.list_schedules()
        assert (stored.last_run_at, stored.next_run_at) == (tick, tick + 10)


def test_what_one_queue_changes_the_other_sees_at_once(
    first: FileJobQueue, second: FileJobQueue, clock: FakeClock
):
    schedule = _schedule(clock)
    first.save_schedule(schedule)
    tick = schedule.next_run_at

    assert second.fire_tick(schedule.id, tick, job=None, next_run_at=tick + 10) is True
    assert first.fire_tick(schedule.id, tick, job=None, next_run_at=tick + 10) is False
    assert first.fire_tick(schedule.id, tick - 5, job=None, next_run_at=tick) is False, "stale"
    assert second.pause_schedule(schedule.id, True) is True
    assert first.fire_tick(schedule.id, tick + 10, job=None, next_run_at=tick + 20) is False
    assert first.due_schedules(tick + 100, 10) == []
    assert first.next_schedule_at() is None
    assert first.pause_schedule(schedule.id, False) is True
    assert second.due_schedules(tick + 100, 10)[0].next_run_at == tick + 10
    assert first.remove_schedule(schedule.id) is True
    assert second.remove_schedule(schedule.id) is False
    assert second.fire_tick(schedule.id, tick + 10, job=None, next_run_at=tick + 20) is False
    assert second.pause_schedule(schedule.id, True) is False
    assert first.list_schedules() == second.list_schedules() == []


def test_a_save_that_moves_a_schedule_back_refuses_only_the_claimed_ticks(
    first: FileJobQueue, second: FileJobQueue, clock: FakeClock
):
    schedule = _schedule(clock)
    first.save_schedule(schedule)
    tick = schedule.next_run_at
    assert first.fire_tick(schedule.id, tick, job=_job(schedule, tick), next_run_at=tick + 20)
    assert first.fire_tick(schedule.id, tick + 20, job=None, next_run_at=tick + 30)

    second.save_schedule(schedule)  # a worker upserting what it read before the ticks fired

    assert second.list_schedules() == [schedule], "saved as given"
    for claimed in (tick, tick + 20):
        assert first.fire_tick(schedule.id, claimed, job=None, next_run_at=tick + 40) is False
    assert second.fire_tick(schedule.id, tick + 10, job=None, next_run_at=tick + 40) is True
    assert len(_queued(first)) == 1


def test_a_winner_that_dies_before_queueing_its_job_is_finished_by_the_next_reader(
    first: FileJobQueue, second: FileJobQueue, clock: FakeClock, monkeypatch
):
    schedule = _schedule(clock)
    first.save_schedule(schedule)
    tick = schedule.next_run_at
    job = _job(schedule, tick)

    monkeypatch.setattr(first, "_finish_fire", die)
    with pytest.raises(Crash):
        first.fire_tick(schedule.id, tick, job=job, next_run_at=tick + 10)

    assert _queued(second) == [], "the job is staged, not queued yet"
    assert len(_staged(second)) == 1
    assert second.fire_tick(schedule.id, tick, job=job, next_run_at=tick + 10) is False, "won"
    assert _queued(second) == [job.id], "the losing racer queued the winner's job"
    (stored,) = second.list_schedules()
    assert (stored.last_run_at, stored.next_run_at, stored.last_job_id) == (tick, tick + 10, job.id)

    (claimed,) = second.pop_batch(10, worker_id="w1", lease_secs=LEASE_SECS)
    second.ack(claimed.id, worker_id="w1")
    second.list_schedules()
    second.due_schedules(tick + 100, 10)
    assert second.qsize() == 0, "queued once: the staged file is gone"
    assert _staged(second) == []


def test_a_dead_winner_is_repaired_by_the_next_scheduler_pass(
    first: FileJobQueue, second: FileJobQueue, clock: FakeClock, monkeypatch
):
    schedule = _schedule(clock, 1.0)
    first.save_schedule(schedule)
    clock.advance(1.0)
    results = MemoryResultBackend(clock=clock)
    monkeypatch.setattr(first, "_finish_fire", die)
    with pytest.raises(Crash):
        Scheduler(first, results, clock).run_once()

    assert Scheduler(second, results, clock).run_once() == 0, "nothing is due: the tick fired"
    assert _queued(second) == [tick_job_id(schedule.id, schedule.next_run_at)]


def test_a_writer_that_dies_before_publishing_fires_nothing_and_its_job_is_swept(
    first: FileJobQueue, second: FileJobQueue, clock: FakeClock, monkeypatch
):
    schedule = _schedule(clock)
    first.save_schedule(schedule)
    tick = schedule.next_run_at
    job = _job(schedule, tick)

    monkeypatch.setattr(file_store, "publish_exclusively", die)
    with pytest.raises(Crash):
        first.fire_tick(schedule.id, tick, job=job, next_run_at=tick + 10)
    monkeypatch.undo()

    assert second.qsize() == 0
    (orphan,) = _staged(second)
    assert second.sweep_schedules() == 0, "a day may pass before a staged job is an orphan"
    assert second.fire_tick(schedule.id, tick, job=job, next_run_at=tick + 10) is True
    a_day_ago = time.time() - TICKS_KEPT_SECS - 60
    os.utime(orphan, (a_day_ago, a_day_ago))
    assert second.sweep_schedules() == 1
    assert not orphan.exists()
    assert _queued(second) == [job.id]


def test_a_winner_that_dies_after_keying_its_tick_is_finished_too(
    first: FileJobQueue, second: FileJobQueue, clock: FakeClock, monkeypatch
):
    schedule = _schedule(clock)
    first.save_schedule(schedule)
    tick = schedule.next_run_at
    job = _job(schedule, tick)

    monkeypatch.setattr(first, "_queue_staged", die)
    with pytest.raises(Crash):
        first.fire_tick(schedule.id, tick, job=job, next_run_at=tick + 10)

    assert second.qsize() == 0
    assert second.next_schedule_at() == tick + 10
    assert _queued(second) == [job.id]


def test_tick_keys_are_kept_a_day_past_the_newest(first: FileJobQueue, clock: FakeClock):
    schedule = _schedule(clock)
    first.save_schedule(schedule)
    tick = schedule.next_run_at
    later = tick + TICKS_KEPT_SECS + 10
    assert first.fire_tick(schedule.id, tick, job=None, next_run_at=tick + 10)
    assert first.fire_tick(schedule.id, tick + 10, job=None, next_run_at=later)
    assert first.fire_tick(schedule.id, later, job=None, next_run_at=later + 10)
    keys = first.ticks_dir / first._schedule_folder(schedule.id).name

    assert first.sweep_schedules() == 1
    assert sorted(p.name for p in keys.iterdir()) == sorted(
        file_queue._tick_name(t) for t in (tick + 10, later)
    )


def test_a_writer_whose_slot_was_deleted_meanwhile_withdraws(first: FileJobQueue, clock: FakeClock):
    schedule = _schedule(clock)
    first.save_schedule(schedule)
    folder = first._schedule_folder(schedule.id)
    for paused in (True, False, True, False):
        first.pause_schedule(schedule.id, paused)
    kept = sorted(p.name for p in folder.iterdir())
    assert kept == [file_queue._version_name(n) for n in (4, 5)], "old versions are deleted"

    read_long_ago = file_queue._Version(1, schedule, token="long-gone")
    assert first._publish(folder, 1, read_long_ago, schedule.id, schedule, None) is False, (
        "version 2 was free, version 5 is newer"
    )
    assert sorted(p.name for p in folder.iterdir()) == kept


def test_a_winner_whose_version_another_writer_moved_on_from_at_once_won(
    first: FileJobQueue, second: FileJobQueue, clock: FakeClock, monkeypatch
):
    schedule = _schedule(clock)
    first.save_schedule(schedule)
    tick, later = schedule.next_run_at, schedule.next_run_at + 10
    publish, second_won = file_store.publish_exclusively, []

    def second_moves_on_before_first_looks(*args: Any, **kwargs: Any) -> bool:
        won = publish(*args, **kwargs)
        if won and not second_won:
            second_won.append(None)
            second_won[0] = second.fire_tick(
                schedule.id, later, job=_job(schedule, later), next_run_at=later + 10
            )
        return won

    monkeypatch.setattr(file_store, "publish_exclusively", second_moves_on_before_first_looks)
    first_won = first.fire_tick(schedule.id, tick, job=_job(schedule, tick), next_run_at=later)

    assert (first_won, second_won) == (True, [True]), "each tick is reported won by one"
    assert sorted(_queued(first)) == sorted(_job(schedule, t).id for t in (tick, later))
    (stored,) = first.list_schedules()
    assert (stored.last_run_at, stored.next_run_at) == (later, later + 10)
    assert _staged(first) == []


def test_a_removed_schedule_is_swept_a_day_later_and_can_come_back(
    first: FileJobQueue, second: FileJobQueue, clock: FakeClock
):
    schedule = _schedule(clock)
    first.save_schedule(schedule)
    tick = schedule.next_run_at
    assert first.fire_tick(schedule.id, tick, job=None, next_run_at=tick + 10)
    assert first.remove_schedule(schedule.id)

    assert second.sweep_schedules() == 0
    assert second.sweep_schedules(older_than_secs=-1) >= 1
    assert list(second.schedules_dir.iterdir()) == []
    second.save_schedule(schedule)
    assert first.list_schedules() == [schedule]
    assert first.fire_tick(schedule.id, tick, job=None, next_run_at=tick + 10), "a new schedule"


def test_a_corrupt_version_is_set_aside_and_the_one_before_read(
    first: FileJobQueue, clock: FakeClock
):
    schedule = _schedule(clock)
    first.save_schedule(schedule)
    first.pause_schedule(schedule.id, True)
    folder = first._schedule_folder(schedule.id)
    newest = folder / file_queue._version_name(2)
    newest.write_bytes(b"garbage")

    assert [s.paused for s in first.list_schedules()] == [False]
    assert not newest.exists()
    assert (folder / f"{newest.name}.corrupt").exists()


def test_a_read_only_queue_lists_schedules_and_changes_no_file(
    first: FileJobQueue, folder: Path, clock: FakeClock, monkeypatch
):
    schedule = _schedule(clock)
    first.save_schedule(schedule)
    tick = schedule.next_run_at
    monkeypatch.setattr(first, "_finish_fire", die)
    with pytest.raises(Crash):
        first.fire_tick(schedule.id, tick, job=_job(schedule, tick), next_run_at=tick + 10)
    looking = FileJobQueue(folder, clock=clock, read_only=True)

    assert [s.next_run_at for s in looking.list_schedules()] == [tick + 10]
    assert looking.next_schedule_at() == tick + 10
    assert len(_staged(looking)) == 1, "a reader that only looks queues nothing"


# -- real processes ----------------------------------------------------------------
def fire_every_tick(folder: str, schedule_id: str, ticks: list[float], go: Any, reports: Any,
                    name: str) -> None:  # fmt: skip
    """A spawned scheduler: once ``go`` is set, try every tick; report the ones it won."""
    try:
        queue = FileJobQueue(folder)
        if not go.wait(WAIT_SECS):
            raise TimeoutError("the test never said go")
        won = []
        for tick, following in zip(ticks, [*ticks[1:], ticks[-1] + 1], strict=True):
            job = Job("t", id=tick_job_id(schedule_id, tick))
            if queue.fire_tick(schedule_id, tick, job=job, next_run_at=following):
                won.append(tick)
        queue.close()
    except BaseException as exc:
        reports.put((name, f"{type(exc).__name__}: {exc}"))
        raise
    reports.put((name, won))


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_schedulers_in_separate_processes_fire_each_tick_exactly_once(folder: Path):
    queue = FileJobQueue(folder)
    schedule = Schedule("race", "t", interval=1.0, next_run_at=1.0)
    queue.save_schedule(schedule)
    ticks = [float(n) for n in range(1, SPAWNED_TICKS + 1)]
    names = [f"proc-{n}" for n in range(SPAWNED)]
    outcomes = race_processes(fire_every_tick, [(str(folder), schedule.id, ticks)] * SPAWNED,
                              WAIT_SECS)  # fmt: skip

    errors = {name: got for name, got in outcomes.items() if isinstance(got, str)}
    assert not errors, errors
    assert sorted(outcomes) == names
    won = sorted(tick for got in outcomes.values() for tick in got)
    assert won == ticks, "each tick won by exactly one process"
    assert sorted(_queued(queue)) == sorted(tick_job_id(schedule.id, t) for t in ticks)
    (stored,) = queue.list_schedules()
    assert (stored.last_run_at, stored.next_run_at) == (ticks[-1], ticks[-1] + 1)
    assert _staged(queue) == []
