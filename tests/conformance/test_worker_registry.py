"""The optional worker registry (``nuvom workers``), on every backend.

A backend that records workers lists them with their heartbeat; one that does
not keeps the defaults: registering is harmless and the listing is empty.
"""

from __future__ import annotations

from nuvom.records import WorkerInfo

from .conftest import Backends

LEASE_SECS = 5.0


def _info(worker_id: str, at: float, *, pid: int = 100) -> WorkerInfo:
    return WorkerInfo(
        id=worker_id,
        host="host-a",
        pid=pid,
        pool="process",
        concurrency=4,
        inflight=0,
        heartbeat_at=at,
        started_at=at,
        lease_secs=LEASE_SECS,
    )


def test_workers_are_listed_with_heartbeats_then_forgotten(backends: Backends) -> None:
    queue, clock = backends.queue, backends.clock
    queue.register_worker(_info("w1", clock.time(), pid=101))
    clock.advance(1)
    queue.register_worker(_info("w2", clock.time(), pid=102))
    clock.advance(1)
    queue.heartbeat_worker("w1", inflight=3, at=clock.time())

    listed = queue.list_workers()
    if not queue.records_workers:
        assert listed == []
        queue.unregister_worker("w1")  # still harmless
        return
    assert [(w.id, w.pid, w.inflight) for w in listed] == [("w1", 101, 3), ("w2", 102, 0)]
    assert listed[0].heartbeat_at == clock.time()
    assert listed[0].to_dict(clock.time())["status"] == "live"

    queue.unregister_worker("w1")
    queue.unregister_worker("w1")  # idempotent
    assert [w.id for w in queue.list_workers()] == ["w2"]


def test_a_worker_whose_heartbeat_is_stale_is_lost(backends: Backends) -> None:
    queue, clock = backends.queue, backends.clock
    queue.register_worker(_info("quiet", clock.time()))
    queue.register_worker(_info("beating", clock.time()))
    clock.advance(LEASE_SECS - 1)
    queue.heartbeat_worker("beating", inflight=1, at=clock.time())
    clock.advance(2)  # past the quiet one's lease, within the beating one's

    status = {w.id: w.is_lost(clock.time()) for w in queue.list_workers()}
    if queue.records_workers:
        assert status == {"quiet": True, "beating": False}
    else:
        assert status == {}
