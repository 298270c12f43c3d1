"""Flow control on the file queue, as separate processes see it.

Two ``FileJobQueue`` objects on one folder share nothing but the files, as two processes
would; the tests marked slow race real spawned processes. A crash is an exception no
``except Exception`` catches, raised from the step it interrupts.
"""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path
from typing import Any

import pytest

from nuvom.backends.file import flow as file_flow
from nuvom.backends.file import store as file_store
from nuvom.backends.file.queue import MIN_HOLDS, NEVER_ENQUEUED_GRACE_SECS, FileJobQueue
from nuvom.backends.file.results import FileResultBackend
from nuvom.clock import FakeClock
from nuvom.job import Job, JobStatus
from nuvom.limits import concurrency_tag, rate_tag
from nuvom.records import Outcome

from .processes import race_processes

LEASE_SECS = 30.0
LIMITED = "file.limited"
SPAWNED = 4
WAIT_SECS = 60.0


class Crash(BaseException):
    """The process dying at this point: nothing after it runs, no handler catches it."""


def die(*args: object, **kwargs: object) -> Any:
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


@pytest.fixture
def results(tmp_path: Path, clock: FakeClock) -> FileResultBackend:
    return FileResultBackend(tmp_path / "results", clock=clock)


def _job(name: str, **origin: Any) -> Job:
    return Job(LIMITED, id=name, args=(name,), origin=origin or None)


def _claim(queue: FileJobQueue, worker: str = "w1", n: int = 100) -> list[Job]:
    return queue.pop_batch(n, worker_id=worker, lease_secs=LEASE_SECS)


def _ids(jobs: list[Job]) -> list[str]:
    return sorted(job.id for job in jobs)


def _done(queue: FileJobQueue, job: Job, status: JobStatus = JobStatus.SUCCESS) -> None:
    outcome = Outcome(job, status, worker_id=job.lease_owner, finished_at=0.0)
    queue.ack_outcomes([outcome])


def _flow_files(queue: FileJobQueue) -> list[str]:
    folders = [queue.root / name for name in file_flow.FOLDERS]
    found = (p for f in folders for p in f.rglob("*") if p.is_file())
    return sorted(str(p.relative_to(queue.root)) for p in found)


# -- the plain path writes nothing of flow control ----------------------------------
def test_plain_jobs_beside_limited_ones_leave_no_flow_control_file(
    first: FileJobQueue, results: FileResultBackend
):
    first.submit([Job("t", id=f"p{i}") for i in range(5)], results)
    assert _flow_files(first) == []
    first.submit([_job("c0", conc=["k", 1]), _job("c1", conc=["k", 1])], results)
    claimed = _claim(first)
    assert _ids(claimed) == ["c0", "p0", "p1", "p2", "p3", "p4"]
    for job in claimed:
        _done(first, job)
    kinds = {path.split("/")[0] + "/" + path.split("/")[1] for path in _flow_files(first)}
    key, tag = file_flow.digest("k"), file_flow.digest(concurrency_tag("k"))
    assert kinds == {f"slots/{key}", f"holds/{tag}"}, "only the limited jobs' key and hold"


# -- two queue objects on one folder: what one does, the other sees --------------------
def test_a_hold_made_by_one_process_is_seen_and_woken_by_another(
    first: FileJobQueue, second: FileJobQueue
):
    first.enqueue_many([_job(f"c{i}", conc=["k", 1]) for i in range(3)])
    [running] = _claim(first)
    assert _claim(second, "w2") == []
    assert second.hold_of("c1") == concurrency_tag("k")
    assert sum(row.held.get(concurrency_tag("k"), 0) for row in second.queue_stats()) == 2

    _done(first, running)  # the slot frees in one process: the next starts in the other
    assert _ids(_claim(second, "w2")) == ["c1"]
    assert first.hold_of("c1") is None, "a claimed job carries no hold"


def test_a_slot_taken_again_by_another_claim_of_the_same_job_stays_taken(
    first: FileJobQueue, second: FileJobQueue, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
):
    first.enqueue_many([_job("a", conc=["k", 1]), _job("b", conc=["k", 1])])
    [a] = _claim(first)
    free_slot = first.flow.free_slot

    def reclaimed_before_the_slot_frees(key: str, token: str) -> None:
        [again] = _claim(second, "w2")  # "a", retried at once, claimed in another process
        assert again.id == "a"
        free_slot(key, token)  # the first claim's slot, not the second's

    monkeypatch.setattr(first.flow, "free_slot", reclaimed_before_the_slot_frees)
    outcome = Outcome(a, JobStatus.RETRYING, worker_id="w1", finished_at=0.0,
                      retry_at=clock.time())  # fmt: skip
    first.ack_outcomes([outcome])
    assert _claim(second, "w3") == [], "the second claim of a still holds the one slot"


def test_a_slot_whose_claim_ended_without_freeing_it_is_taken_over(
    first: FileJobQueue, second: FileJobQueue, monkeypatch: pytest.MonkeyPatch
):
    first.enqueue_many([_job("a", conc=["k", 1])])
    [a] = _claim(first)
    monkeypatch.setattr(first.flow, "free_slot", die)
    with pytest.raises(Crash):  # the worker died after its ack, before freeing the slot
        _done(first, a)
    second.enqueue_many([_job("b", conc=["k", 1])])
    assert _ids(_claim(second, "w2")) == ["b"], "a slot no longer held by a live lease is free"


def test_a_slot_freed_while_a_claim_holds_a_job_back_still_wakes_it(
    first: FileJobQueue, second: FileJobQueue, folder: Path, clock: FakeClock,
    monkeypatch: pytest.MonkeyPatch,
):  # fmt: skip
    first.enqueue_many([_job(f"c{i}", conc=["k", 2]) for i in range(3)])
    assert _ids(_claim(first, n=2)) == ["c0", "c1"]
    third = FileJobQueue(folder, clock=clock)  # knows nothing of first's claims
    hold = second.flow.hold

    def acked_before_the_hold_is_noted(tag: str, queue_dir: str, name: str) -> None:
        third.ack("c0", worker_id="w1")  # finds no hold to wake, and no token to free
        hold(tag, queue_dir, name)

    monkeypatch.setattr(second.flow, "hold", acked_before_the_hold_is_noted)
    assert _claim(second, "w2") == []
    monkeypatch.undo()
    assert _ids(_claim(second, "w2")) == ["c2"], "the claim looked again once its hold was noted"


def test_a_token_another_claim_takes_first_holds_the_job_back_after_all(
    first: FileJobQueue, second: FileJobQueue, monkeypatch: pytest.MonkeyPatch
):
    first.enqueue_many([_job("a", rate=[0.001, 1], conc=["k", 1])])
    take_tokens = first.flow.take_tokens

    def another_claim_first(rate: Any, count: int, now: float) -> tuple[int, float]:
        assert second.flow.take_tokens(rate, 1, now)[0] == 1  # the bucket's only token
        return take_tokens(rate, count, now)

    monkeypatch.setattr(first.flow, "take_tokens", another_claim_first)
    assert _claim(first) == [], "its token was set aside, then taken by another claim"
    [waiting] = first.waiting_jobs()
    assert (waiting.id, waiting.attempts) == ("a", 0)
    assert first.hold_of("a") == rate_tag(LIMITED)
    assert first.flow.has_free_slot("k", 1, first.clock.time()), "its slot was freed"


def test_racing_paused_and_resumed_by_two_processes(first: FileJobQueue, second: FileJobQueue):
    first.enqueue_many([Job("t", id="m", queue="mail")])
    assert first.pause_queue("mail") is True
    assert second.pause_queue("mail") is False, "paused already, by the other process"
    assert _claim(second, "w2") == []
    assert second.paused_queues() == ["mail"]
    assert second.pause_queue("mail", False) is True
    assert first.pause_queue("mail", False) is False
    assert _ids(_claim(first)) == ["m"]


def test_a_queue_name_too_long_for_a_file_name_is_paused_by_its_name(first: FileJobQueue):
    name = "Q" * 300
    first.pause_queue(name)
    assert first.paused_queues() == [name]
    assert [row.queue for row in first.queue_stats() if row.paused] == [name]


def test_a_claim_gets_past_more_held_jobs_than_it_holds_back_when_it_took_none(
    first: FileJobQueue,
):
    held = MIN_HOLDS + 50  # a burst worker stops at the first claim that comes back empty
    first.enqueue_many([_job(f"r{i:03d}", rate=[0.001, 1]) for i in range(held)])
    first.enqueue_many([Job("t", id="plain")])
    assert _ids(_claim(first, n=1)) == ["r000"]
    assert _ids(_claim(first, n=1)) == ["plain"], "not an empty claim while a job waits"
    assert first.qsize() == held - 1


def test_a_job_held_back_again_keeps_one_hold_and_the_sweep_drops_stale_ones(
    first: FileJobQueue, clock: FakeClock
):
    first.enqueue_many([_job(f"c{i}", conc=["k", 1]) for i in range(5)])
    assert _ids(_claim(first)) == ["c0"]
    assert first.heartbeat(["c0"], worker_id="w1", lease_secs=300.0) == ["c0"]
    clock.advance(LEASE_SECS + 1)  # the holds come due, the slot is still taken
    assert _claim(first, "w2") == []
    assert len(_holds(first)) == 4, "one hold per job held back, however often"
    assert all(first.hold_of(f"c{i}") == concurrency_tag("k") for i in range(1, 5))

    (path,) = [p for p in first.pending_dir.rglob("*.job") if p.name.endswith("_c4.job")]
    path.unlink()  # gone without a cancel (by hand, or a crash): its hold is stale
    assert first.sweep_holds(older_than_secs=0.0) == 1
    assert len(_holds(first)) == 3


# -- crashes ----------------------------------------------------------------------------
def test_a_unique_key_whose_producer_died_is_taken_over_once_stale(
    first: FileJobQueue, second: FileJobQueue, results: FileResultBackend,
    monkeypatch: pytest.MonkeyPatch,
):  # fmt: skip
    monkeypatch.setattr(first, "_write_jobs", die)
    with pytest.raises(Crash):  # the key taken, the job never written
        first.enqueue_many([_job("dead", unique=["k", 0.0])])
    assert second.submit([_job("next", unique=["k", 0.0])], results) == {"next": "dead"}, (
        "its producer may still be writing it"
    )
    _age(first.flow.unique_dir, NEVER_ENQUEUED_GRACE_SECS + 60)
    assert second.submit([_job("next", unique=["k", 0.0])], results) == {}
    assert second.unique_holder("k") == "next"
    assert _ids(_claim(second)) == ["next"]


def test_an_old_unique_key_whose_job_still_waits_is_kept(
    first: FileJobQueue, second: FileJobQueue, results: FileResultBackend
):
    first.submit([_job("holder", unique=["k", 0.0])], results)
    _age(first.flow.unique_dir, NEVER_ENQUEUED_GRACE_SECS + 60)
    assert second.submit([_job("dup", unique=["k", 0.0])], results) == {"dup": "holder"}
    [claimed] = _claim(first)
    assert second.submit([_job("dup2", unique=["k", 0.0])], results) == {"dup2": "holder"}
    _done(first, claimed, JobStatus.FAILED)
    assert second.submit([_job("after", unique=["k", 0.0])], results) == {}


def test_a_parked_unique_job_cancelled_by_its_dependency_lets_its_key_go(
    first: FileJobQueue, results: FileResultBackend
):
    waiting = Job(LIMITED, id="b", origin={"workflow": "wf", "after": ["a"], "unique": ["k", 0]})
    first.submit([Job("t", id="a"), waiting], results)
    assert first.unique_holder("k") == "b", "a parked job holds its key"
    [a] = _claim(first)
    resolved = first.ack_outcomes([Outcome(a, JobStatus.FAILED, worker_id="w1", finished_at=0)])
    assert resolved is not None
    assert [i for i, _ in resolved.cancelled] == ["b"]
    assert first.unique_holder("k") is None


# -- bad stored data ----------------------------------------------------------------------
def test_a_job_whose_limit_entry_cannot_be_read_is_quarantined_alone(first: FileJobQueue):
    first.enqueue_many([_job(f"c{i}", conc=["k", 1]) for i in range(3)])
    _rewrite_origin(first, "c0", {"conc": ["k", 0]})  # a limit of 0: no job could ever run

    claimed = first.claim_batch(100, worker_id="w1", lease_secs=LEASE_SECS)
    assert [job_id for job_id, _ in claimed.quarantined] == ["c0"]
    assert _ids(claimed.jobs) == ["c1"], "the others are claimed, and limited"
    assert first.hold_of("c2") == concurrency_tag("k")


@pytest.mark.parametrize("area", ["slots", "rates", "unique"])
def test_a_state_that_cannot_be_read_is_set_aside(first: FileJobQueue, area: str):
    key = {"slots": "k", "rates": LIMITED, "unique": "u"}[area]
    folder = first.root / area / file_flow.digest(key)
    folder.mkdir(parents=True)
    (folder / f"{1:020d}{file_flow.STATE_SUFFIX}").write_bytes(b"garbage")
    first.enqueue_many([_job("j0", conc=["k", 1], rate=[1.0, 1], unique=["u", 0.0]),
                        _job("j1", conc=["k", 1], rate=[1.0, 1])])  # fmt: skip

    assert _ids(_claim(first)) == ["j0"], "read as a new state, and limited from there"
    assert list(folder.glob("*.corrupt")) != []
    assert first.unique_holder("u") == "j0"


def test_a_hold_that_cannot_be_read_is_dropped(first: FileJobQueue, clock: FakeClock):
    first.enqueue_many([_job(f"r{i}", rate=[1.0, 1]) for i in range(2)])
    assert _ids(_claim(first)) == ["r0"]
    (hold,) = first.flow.holds_dir.rglob("*.hold")
    hold.write_bytes(b"garbage")
    assert first.hold_of("r1") is None
    assert first.queue_stats()[0].held == {}
    assert _flow_files(first) == [f"rates/{file_flow.digest(LIMITED)}/{1:020d}.state"], (
        "a hold is only a note: one that cannot be read goes"
    )
    clock.advance(1.0)
    assert _ids(_claim(first)) == ["r1"], "the job waits as it was held all the same"


# -- migration ----------------------------------------------------------------------------
def test_a_folder_of_the_previous_version_opens_and_keeps_limits(
    folder: Path, clock: FakeClock, results: FileResultBackend
):
    FileJobQueue(folder, clock=clock).enqueue_many([_job(f"c{i}", conc=["k", 1]) for i in range(2)])
    for name in file_flow.FOLDERS:
        shutil.rmtree(folder / name)
    looking = FileJobQueue(folder, clock=clock, read_only=True)
    assert looking.paused_queues() == []
    assert looking.hold_of("c1") is None
    assert looking.unique_holder("u") is None
    assert [row.pending for row in looking.queue_stats()] == [2]

    queue = FileJobQueue(folder, clock=clock)
    assert _ids(_claim(queue)) == ["c0"]
    assert queue.pause_queue("default") is True
    assert queue.submit([_job("u1", unique=["u", 0.0])], results) == {}
    assert looking.unique_holder("u") == "u1"
    assert looking.hold_of("c1") == concurrency_tag("k")


# -- real processes ------------------------------------------------------------------------
def claim_until_done(folder: str, rounds: int, go: Any, reports: Any, name: str) -> None:
    """A spawned process: claim one or two at a time, never settling; report the ids."""
    try:
        queue = FileJobQueue(folder)
        if not go.wait(WAIT_SECS):
            raise TimeoutError("the test never said go")
        got: list[str] = []
        for _ in range(rounds):
            got += [job.id for job in queue.pop_batch(2, worker_id=name, lease_secs=300.0)]
        queue.close()
    except BaseException as exc:
        reports.put((name, f"{type(exc).__name__}: {exc}"))
        raise
    reports.put((name, got))


def run_and_settle(folder: str, deadline: float, go: Any, reports: Any, name: str) -> None:
    """A spawned process: claim one job at a time, note when it held it, settle it."""
    try:
        queue = FileJobQueue(folder)
        if not go.wait(WAIT_SECS):
            raise TimeoutError("the test never said go")
        spans: list[tuple[str, float, float]] = []
        while time.time() < deadline and (queue.qsize() or _anyone_claimed(queue)):
            jobs = queue.pop_batch(1, worker_id=name, lease_secs=300.0)
            if not jobs:
                time.sleep(0.002)
                continue
            began = time.time()
            time.sleep(0.02)
            spans.append((jobs[0].id, began, time.time()))
            _done(queue, jobs[0])
        queue.close()
    except BaseException as exc:
        reports.put((name, f"{type(exc).__name__}: {exc}"))
        raise
    reports.put((name, spans))


def submit_one_key(folder: str, results_dir: str, go: Any, reports: Any, name: str) -> None:
    """A spawned process: submit ten jobs of one unique key; report those stored."""
    try:
        queue, results = FileJobQueue(folder), FileResultBackend(results_dir)
        if not go.wait(WAIT_SECS):
            raise TimeoutError("the test never said go")
        stored = []
        for i in range(10):
            job = _job(f"{name}-{i}", unique=["race", 0.0])
            if not queue.submit([job], results):
                stored.append(job.id)
        queue.close()
        results.close()
    except BaseException as exc:
        reports.put((name, f"{type(exc).__name__}: {exc}"))
        raise
    reports.put((name, stored))


def _anyone_claimed(queue: FileJobQueue) -> bool:
    return any(row.running or row.expired for row in queue.queue_stats())


def _race(target: Any, arguments: list[tuple[Any, ...]]) -> dict[str, Any]:
    """What each spawned process reported; none failed, every one reported."""
    outcomes = race_processes(target, arguments, WAIT_SECS)
    errors = {name: got for name, got in outcomes.items() if isinstance(got, str)}
    assert not errors, errors
    assert sorted(outcomes) == [f"proc-{n}" for n in range(len(arguments))]
    return outcomes


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_processes_claiming_at_once_never_exceed_a_concurrency_limit(folder: Path):
    FileJobQueue(folder).enqueue_many([_job(f"c{i:02d}", conc=["k", 3]) for i in range(40)])
    outcomes = _race(claim_until_done, [(str(folder), 6)] * SPAWNED)
    got = [job_id for ids in outcomes.values() for job_id in ids]
    assert len(got) == 3, got
    assert len(set(got)) == 3, "no job claimed twice"


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_processes_claiming_at_once_never_exceed_a_rate_limits_burst(folder: Path):
    jobs = [_job(f"r{i:02d}", rate=[0.001, 5]) for i in range(40)]  # a token per 1000 s
    FileJobQueue(folder).enqueue_many(jobs)
    outcomes = _race(claim_until_done, [(str(folder), 6)] * SPAWNED)
    got = [job_id for ids in outcomes.values() for job_id in ids]
    assert len(got) == 5, got
    assert len(set(got)) == 5, "no job claimed twice"


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_processes_settling_at_once_run_every_job_within_its_limit(folder: Path):
    FileJobQueue(folder).enqueue_many([_job(f"c{i:02d}", conc=["k", 2]) for i in range(30)])
    deadline = time.time() + WAIT_SECS
    outcomes = _race(run_and_settle, [(str(folder), deadline)] * SPAWNED)
    spans = [span for found in outcomes.values() for span in found]
    assert sorted(job_id for job_id, _, _ in spans) == [f"c{i:02d}" for i in range(30)]
    assert _most_at_once([(began, ended) for _, began, ended in spans]) <= 2


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_processes_submitting_one_unique_key_store_one_job(folder: Path, tmp_path: Path):
    FileJobQueue(folder).close()
    arguments = [(str(folder), str(tmp_path / "results"))] * SPAWNED
    outcomes = _race(submit_one_key, arguments)
    stored = [job_id for ids in outcomes.values() for job_id in ids]
    assert len(stored) == 1, stored
    queue = FileJobQueue(folder)
    assert [job.id for job in queue.waiting_jobs()] == stored
    assert queue.unique_holder("race") == stored[0]


# -- helpers ---------------------------------------------------------------------------------
def _age(folder: Path, secs: float) -> None:
    then = time.time() - secs
    for path in folder.rglob("*"):
        os.utime(path, (then, then))


def _holds(queue: FileJobQueue) -> list[Path]:
    return sorted(queue.flow.holds_dir.rglob("*.hold"))


def _most_at_once(spans: list[tuple[float, float]]) -> int:
    edges = sorted([(start, 1) for start, _ in spans] + [(end, -1) for _, end in spans])
    most = running = 0
    for _, step in edges:
        running += step
        most = max(most, running)
    return most


def _rewrite_origin(queue: FileJobQueue, job_id: str, origin: dict[str, Any]) -> None:
    """Give a waiting job's file another origin, as a hand edit or another program might."""
    (path,) = [p for p in queue.pending_dir.rglob("*.job") if p.name.endswith(f"_{job_id}.job")]
    body = file_store.unframe(path.read_bytes(), 1)
    _, _, offset = queue._header(body)
    payload = queue.codec.loads(body[offset:])
    payload[6] = origin
    path.write_bytes(file_store.frame(body[:offset] + queue.codec.dumps(payload), 1))
