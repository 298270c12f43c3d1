"""Redis schedules, on what the conformance suite cannot see: the keys themselves.

A claimed tick's key expires; a script that refuses part-way leaves every key as it was;
the due index (``P:scheds``) holds exactly the schedules not paused, at their next run;
a record that cannot be read is set aside instead of coming due on every pass.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Iterator
from dataclasses import replace
from typing import Any

import pytest

from nuvom.backends.contract import TICKS_KEPT_SECS
from nuvom.backends.redis.queue import RedisJobQueue
from nuvom.errors import BackendError
from nuvom.job import Job
from nuvom.records import Schedule
from nuvom.scheduler import new_schedule, tick_job_id

from .servers import redis_queue_on_fake_clock

INTERVAL = 10.0


@pytest.fixture
def queue() -> Iterator[RedisJobQueue]:
    with redis_queue_on_fake_clock() as redis_queue:
        yield redis_queue


class Collect(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())


@pytest.fixture
def redis_log() -> Iterator[Collect]:
    logger = logging.getLogger("nuvom.redis")
    handler, level = Collect(), logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    try:
        yield handler
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)


def _schedule(queue: RedisJobQueue, **options: Any) -> Schedule:
    options.setdefault("interval", INTERVAL)
    return new_schedule("reports.send", args=[1], kwargs={"to": "ops"}, now=queue.clock.time(),
                        **options)  # fmt: skip


def _job(schedule: Schedule, tick: float) -> Job:
    return Job("reports.send", args=(1,), id=tick_job_id(schedule.id, tick))


def _tick_key(queue: RedisJobQueue, schedule_id: str, tick: float) -> str:
    return f"{queue.prefix}:tick:{schedule_id}:{float(tick)!r}"


def _index(queue: RedisJobQueue) -> dict[str, float]:
    """The due index: schedule id -> next run."""
    rows = queue.client.zrange(f"{queue.prefix}:scheds", 0, -1, withscores=True)
    return {key.decode(): score for key, score in rows}


def _ids(queue: RedisJobQueue) -> set[str]:
    return {key.decode() for key in queue.client.smembers(f"{queue.prefix}:schedids")}


def _snapshot(queue: RedisJobQueue) -> dict[bytes, Any]:
    """Every key under the prefix with its whole value and whether it expires. (Not ``DUMP``:
    a hash in a rehashing table dumps its fields in another order, unchanged.)"""
    client: Any = queue.client
    read = {
        b"string": client.get,
        b"hash": client.hgetall,
        b"set": client.smembers,
        b"zset": lambda key: client.zrange(key, 0, -1, withscores=True),
        b"stream": lambda key: (client.xrange(key), client.xinfo_groups(key)),
    }
    keys = client.scan_iter(match=f"{queue.prefix}:*", count=1000)
    return {key: (read[client.type(key)](key), client.ttl(key) > 0) for key in keys}


# -- tick keys -------------------------------------------------------------------------
def test_a_claimed_tick_is_keyed_with_its_job_and_expires(queue: RedisJobQueue) -> None:
    schedule = _schedule(queue)
    queue.save_schedule(schedule)
    tick = schedule.next_run_at

    assert queue.fire_tick(schedule.id, tick, job=_job(schedule, tick), next_run_at=tick + 10)
    assert queue.fire_tick(schedule.id, tick + 10, job=None, next_run_at=tick + 20), "skipped"

    client: Any = queue.client
    fired, skipped = _tick_key(queue, schedule.id, tick), _tick_key(queue, schedule.id, tick + 10)
    for key in (fired, skipped):
        assert TICKS_KEPT_SECS - 60 <= client.ttl(key) <= TICKS_KEPT_SECS, "kept a day, not forever"
    assert client.get(fired) == _job(schedule, tick).id.encode(), "names the tick's job"
    assert client.get(skipped) == b""

    client.pexpire(fired, 1)
    deadline = time.monotonic() + 5
    while client.exists(fired) and time.monotonic() < deadline:
        time.sleep(0.01)
    assert not client.exists(fired)
    refired = queue.fire_tick(schedule.id, tick, job=_job(schedule, tick), next_run_at=tick + 10)
    assert refired is False, "once its key is gone, a stale tick is still refused"


def test_every_scheduler_keys_a_tick_the_same_way(queue: RedisJobQueue) -> None:
    other = RedisJobQueue(queue.url, prefix=queue.prefix, clock=queue.clock)
    try:
        schedule = _schedule(queue)
        assert schedule.next_run_at == 1_010.0
        queue.save_schedule(schedule)
        assert queue.fire_tick(schedule.id, 1_010.0, job=_job(schedule, 1_010.0),
                               next_run_at=1_020.0)  # fmt: skip
        queue.save_schedule(schedule)  # a sync that read it before the tick: back at 1010

        again = other.fire_tick(schedule.id, 1_010, job=_job(schedule, 1_010), next_run_at=1_020)

        assert again is False, "the int tick is the same tick: its key says it was claimed"
        ticks = list(queue.client.scan_iter(match=f"{queue.prefix}:tick:*"))
        assert ticks == [_tick_key(queue, schedule.id, 1_010).encode()]
        assert queue.qsize() == 1
    finally:
        other.close()


# -- nothing half-written ---------------------------------------------------------------
def test_a_fire_refused_by_a_spoilt_job_key_writes_nothing(queue: RedisJobQueue) -> None:
    schedule = _schedule(queue)
    queue.save_schedule(schedule)
    tick = schedule.next_run_at
    job = _job(schedule, tick)
    job_key = f"{queue.prefix}:job:{job.id}"
    queue.client.set(job_key, "not nuvom's")
    before = _snapshot(queue)

    with pytest.raises(BackendError, match="not a hash"):
        queue.fire_tick(schedule.id, tick, job=job, next_run_at=tick + 10)

    assert _snapshot(queue) == before, "no tick key, no job, the schedule where it was"
    queue.client.delete(job_key)
    assert queue.fire_tick(schedule.id, tick, job=job, next_run_at=tick + 10) is True
    assert queue.qsize() == 1


@pytest.mark.parametrize(
    ("tick", "next_run_at"),
    [(math.nan, 1_020.0), (1_010.0, math.nan), (1_010.0, math.inf), (math.inf, 1_020.0)],
)
def test_a_fire_with_a_time_that_is_not_a_number_writes_nothing(
    queue: RedisJobQueue, tick: float, next_run_at: float
) -> None:
    schedule = _schedule(queue)
    queue.save_schedule(schedule)
    before = _snapshot(queue)

    with pytest.raises(BackendError, match="not a number"):
        queue.fire_tick(schedule.id, tick, job=_job(schedule, 1_010.0), next_run_at=next_run_at)

    assert _snapshot(queue) == before


def test_a_fire_on_a_spoilt_schedule_record_writes_nothing(queue: RedisJobQueue) -> None:
    schedule = _schedule(queue)
    queue.save_schedule(schedule)
    queue.client.hset(f"{queue.prefix}:sched:{schedule.id}", "next", "soon")
    before = _snapshot(queue)
    tick = schedule.next_run_at

    with pytest.raises(BackendError, match="next run soon is not a number"):
        queue.fire_tick(schedule.id, tick, job=_job(schedule, tick), next_run_at=tick + 10)

    assert _snapshot(queue) == before


def test_a_save_it_refuses_leaves_the_stored_schedule_as_it_was(queue: RedisJobQueue) -> None:
    schedule = _schedule(queue)
    queue.save_schedule(schedule)
    before = _snapshot(queue)

    for bad in (replace(schedule, next_run_at=math.nan), replace(schedule, last_run_at=math.inf)):
        with pytest.raises(BackendError, match="not a number"):
            queue.save_schedule(bad)

    assert _snapshot(queue) == before
    assert queue.list_schedules() == [schedule]


# -- the due index -------------------------------------------------------------------------
def test_the_due_index_holds_exactly_the_schedules_not_paused(queue: RedisJobQueue) -> None:
    first, second = _schedule(queue), _schedule(queue, interval=60.0)
    queue.save_schedule(first)
    queue.save_schedule(second)
    both = {first.id: first.next_run_at, second.id: second.next_run_at}
    assert (_index(queue), _ids(queue)) == (both, set(both))

    assert queue.pause_schedule(first.id, True)
    assert queue.pause_schedule(first.id, True), "pausing twice is pausing"
    assert (_index(queue), _ids(queue)) == ({second.id: second.next_run_at}, set(both))
    tick = first.next_run_at
    assert not queue.fire_tick(first.id, tick, job=_job(first, tick), next_run_at=tick + 10)
    assert _index(queue) == {second.id: second.next_run_at}

    assert queue.pause_schedule(first.id, False)
    assert _index(queue) == both, "back at the same next run"
    assert queue.fire_tick(first.id, tick, job=_job(first, tick), next_run_at=tick + 10)
    assert _index(queue) == {**both, first.id: tick + 10}, "moved on with the tick"

    queue.save_schedule(replace(first, paused=True))
    assert _index(queue) == {second.id: second.next_run_at}, "saved paused: not indexed"
    queue.save_schedule(first)
    assert _index(queue) == both

    assert queue.remove_schedule(first.id)
    assert (_index(queue), _ids(queue)) == ({second.id: second.next_run_at}, {second.id})
    assert not queue.client.exists(f"{queue.prefix}:sched:{first.id}")
    assert queue.pause_schedule(first.id, False) is False, "a removed schedule stays out"
    assert queue.remove_schedule(second.id)
    assert (_index(queue), _ids(queue), queue.next_schedule_at()) == ({}, set(), None)


def test_unreadable_schedules_are_set_aside_and_the_others_still_fire(
    queue: RedisJobQueue, redis_log: Collect
) -> None:
    good, bad_time, bad_blob = _schedule(queue), _schedule(queue), _schedule(queue)
    for schedule in (good, bad_time, bad_blob):
        queue.save_schedule(schedule)
    client: Any = queue.client
    client.hset(f"{queue.prefix}:sched:{bad_time.id}", "next", "soon")
    client.hset(f"{queue.prefix}:sched:{bad_blob.id}", "def", b"\xff\x00")
    client.zadd(f"{queue.prefix}:scheds", {"ghost": 0.0})  # an index entry with no record
    queue.clock.advance(INTERVAL)  # type: ignore[attr-defined]

    due = queue.due_schedules(queue.clock.time(), 10)

    assert [s.id for s in due] == [good.id]
    assert _index(queue) == {good.id: good.next_run_at}, "the rest are out of the index"
    assert queue.next_schedule_at() == good.next_run_at, "nothing past due to spin on"
    for schedule_id in (bad_time.id, bad_blob.id):
        assert [line for line in redis_log.lines if schedule_id in line and "set aside" in line]
    assert [s.id for s in queue.list_schedules()] == [good.id]

    queue.save_schedule(bad_blob)  # saved again, whole
    assert {s.id for s in queue.due_schedules(queue.clock.time(), 10)} == {good.id, bad_blob.id}


def test_a_schedule_saved_again_meanwhile_is_not_set_aside(queue: RedisJobQueue) -> None:
    schedule = _schedule(queue)
    queue.save_schedule(schedule)

    set_aside = queue.script("SET_ASIDE_SCHEDULE")(args=[queue.prefix, schedule.id, b"old"])

    assert set_aside == 0, "only the definition that could not be decoded is set aside"
    assert _index(queue) == {schedule.id: schedule.next_run_at}
