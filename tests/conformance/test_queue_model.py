"""Model-based test of the queue state machine, on all five engines.

Hypothesis drives enqueue, claim, ack, nack (fail/retry), release, heartbeat,
crash (a claimer vanishes without acking), cancel, a job given back with a hold tag and
a claimer refusing that tag (``BaseJobQueue.refuse``), clock moves, a poison record
(a stored job spoilt behind the queue's back) and a backend error injected
mid-claim against each backend and against a tiny in-memory model, and checks
after every step: no job lost, none held by two claimers, attempts never go
down, order kept, and a good job behind a poison one still comes out.
Time is a ``FakeClock``; nothing sleeps.
"""

from __future__ import annotations

import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from nuvom.clock import FakeClock
from nuvom.errors import BackendUnavailable, CorruptJob
from nuvom.job import Job
from nuvom.queue_backends.base import BaseJobQueue, QueueStats
from nuvom.queue_backends.file_queue import FileJobQueue
from nuvom.queue_backends.memory_queue import MemoryJobQueue
from nuvom.queue_backends.sqlite_queue import SQLiteJobQueue

from .test_poison import spoil

LEASE_SECS = 10.0  # every claim in the model lasts this long
WORKERS = ("w1", "w2", "w3")
TAGS = ("version:model.task:2", "version:model.task:3")
MACHINE_SETTINGS = settings(
    max_examples=100,
    stateful_step_count=40,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
)


@dataclass
class ModelJob:
    id: str
    priority: int
    due: float
    attempts: int = 0
    state: str = "waiting"  # waiting | held | gone (acked or cancelled) | dead (quarantined)
    holder: str | None = None
    lease_until: float = 0.0
    orphaned: bool = False  # its claimer crashed: only the lease can bring it back
    spoilt: bool = False  # its stored copy went bad: it must be quarantined, never run
    tag: str | None = None  # the hold tag it was given back with, until it is claimed

    @property
    def order(self) -> tuple[int, float]:
        return (-self.priority, self.due)


class QueueMachine(RuleBasedStateMachine):
    """The model; subclasses say which backend it is checked against."""

    def __init__(self) -> None:
        super().__init__()
        self.clock = FakeClock()
        self.folder = Path(tempfile.mkdtemp(prefix="nuvom-model-"))
        self.queue = self.build(self.folder, self.clock)
        self.jobs: dict[str, ModelJob] = {}
        self.built: dict[str, Job] = {}
        self.counter = 0
        self.refused: dict[str, set[str]] = {w: set() for w in WORKERS}

    kind = ""  # the conformance kind, for ``spoil``

    def build(self, folder: Path, clock: FakeClock) -> BaseJobQueue:
        raise NotImplementedError

    def teardown(self) -> None:
        self.queue.close()
        shutil.rmtree(self.folder, ignore_errors=True)

    # -- helpers -------------------------------------------------------------
    def _live_held(self, worker: str | None = None) -> list[ModelJob]:
        now = self.clock.time()
        return [
            j
            for j in self.jobs.values()
            if j.state == "held"
            and not j.orphaned
            and j.lease_until > now
            and worker in (None, j.holder)
        ]

    def _claimable(self, job: ModelJob, now: float, worker: str | None = None) -> bool:
        return not job.spoilt and self._due(job, now) and not self._refused(job, worker)

    def _refused(self, job: ModelJob, worker: str | None) -> bool:
        """A waiting job given back with a tag ``worker`` refused: its claims pass over it."""
        refused = self.refused.get(worker or "", set())
        return job.state == "waiting" and job.tag is not None and job.tag in refused

    def _due(self, job: ModelJob, now: float) -> bool:
        """Due to come out of a claim (as a job, or as a poison to quarantine)."""
        if job.state == "waiting":
            return job.due <= now
        return job.state == "held" and job.lease_until <= now

    def _expired(self) -> list[ModelJob]:
        now = self.clock.time()
        return [j for j in self.jobs.values() if j.state == "held" and j.lease_until <= now]

    # -- rules ---------------------------------------------------------------
    @rule(priority=st.integers(0, 3), delay=st.sampled_from([None, 0.0, 5.0, 20.0]))
    def enqueue(self, priority: int, delay: float | None) -> None:
        self.counter += 1
        now = self.clock.time()
        due_at = None if delay is None else now + delay
        job = Job("model.task", args=(self.counter,), priority=priority, due_at=due_at)
        self.queue.enqueue(job)
        self.jobs[job.id] = ModelJob(job.id, priority, now if due_at is None else due_at)
        self.built[job.id] = job

    @rule(worker=st.sampled_from(WORKERS), n=st.integers(1, 4))
    def claim(self, worker: str, n: int) -> None:
        """Due jobs and jobs whose lease ran out are claimable; live claims are not."""
        now = self.clock.time()
        batch = self.queue.claim_batch(n, worker_id=worker, lease_secs=LEASE_SECS)
        claimed = batch.jobs
        for job_id, reason in batch.quarantined:
            model = self.jobs.get(job_id)
            assert model is not None, f"quarantined a job never enqueued: {job_id}"
            assert model.spoilt, f"a good job quarantined: {reason}"
            model.state, model.holder = "dead", None
        eligible = [j for j in self.jobs.values() if self._claimable(j, now, worker)]
        poisons = [j for j in self.jobs.values() if j.spoilt and self._due(j, now)]
        assert len(claimed) <= min(n, len(eligible)), (claimed, eligible)
        if len(claimed) + len(batch.quarantined) < n and not poisons:
            assert len(claimed) == min(n, len(eligible)), "a good job was left behind a poison"
        keys = []
        for job in claimed:
            model = self.jobs.get(job.id)
            assert model is not None, f"claimed a job never enqueued: {job.id}"
            assert self._claimable(model, now, worker), f"{job.id} is {model}, yet claimed"
            assert job.attempts == model.attempts + 1, "attempts must count every claim"
            assert job.lease_owner == worker
            keys.append(model.order)
            model.state, model.holder, model.lease_until = "held", worker, now + LEASE_SECS
            model.attempts += 1
            model.orphaned, model.tag = False, None
        assert keys == sorted(keys), "claims come out by priority, then due time"
        if claimed:
            worst = max(keys)
            left = [j.order for j in self.jobs.values() if self._claimable(j, now, worker)]
            assert all(key >= worst for key in left), "a better job was left waiting"

    @precondition(lambda self: self._live_held())
    @rule(data=st.data(), by_holder=st.booleans())
    def ack(self, data: st.DataObject, by_holder: bool) -> None:
        job = data.draw(st.sampled_from(self._live_held()))
        assert job.holder is not None
        worker = job.holder if by_holder else next(w for w in WORKERS if w != job.holder)
        self.queue.ack(job.id, worker_id=worker)
        if by_holder:
            job.state, job.holder = "gone", None

    @precondition(lambda self: self._live_held())
    @rule(data=st.data(), delay=st.sampled_from([0.0, 3.0]))
    def nack(self, data: st.DataObject, delay: float) -> None:
        """The job failed and will be retried after ``delay``."""
        job = data.draw(st.sampled_from(self._live_held()))
        retry_at = self.clock.time() + delay
        self.queue.nack(job.id, retry_at=retry_at, worker_id=job.holder)
        job.state, job.holder, job.due = "waiting", None, retry_at

    @precondition(lambda self: self._live_held())
    @rule(data=st.data())
    def release(self, data: st.DataObject) -> None:
        """Graceful shutdown gives the job back without counting the attempt."""
        job = data.draw(st.sampled_from(self._live_held()))
        assert job.holder is not None
        self.queue.release([job.id], worker_id=job.holder)
        job.state, job.holder = "waiting", None
        job.attempts = max(0, job.attempts - 1)

    @precondition(lambda self: self._live_held())
    @rule(data=st.data(), tag=st.sampled_from(TAGS), delay=st.sampled_from([0.0, 3.0]))
    def give_back(self, data: st.DataObject, tag: str, delay: float) -> None:
        """A worker gives a job back (``hold``): waiting with ``tag``, its attempt refunded."""
        from nuvom.backends.contract import Hold

        job = data.draw(st.sampled_from(self._live_held()))
        assert job.holder is not None
        due = self.clock.time() + delay
        assert self.queue.hold([Hold(job.id, tag, due)], worker_id=job.holder) == [job.id]
        assert self.queue.hold_of(job.id) == tag
        job.state, job.holder, job.due, job.tag = "waiting", None, due, tag
        job.attempts = max(0, job.attempts - 1)

    @rule(worker=st.sampled_from(WORKERS), tag=st.sampled_from(TAGS))
    def refuse(self, worker: str, tag: str) -> None:
        """From now on ``worker`` leaves the jobs held with ``tag`` to the others."""
        self.queue.refuse([tag], worker_id=worker)
        self.refused[worker].add(tag)
        assert self.queue.refused_by(worker) == frozenset(self.refused[worker])

    @rule(worker=st.sampled_from(WORKERS))
    def heartbeat(self, worker: str) -> None:
        mine = self._live_held(worker)
        others = [j.id for j in self._live_held() if j.holder != worker]
        asked = [j.id for j in mine] + others[:1]
        kept = self.queue.heartbeat(asked, worker_id=worker, lease_secs=LEASE_SECS)
        assert sorted(kept) == sorted(j.id for j in mine)
        for job in mine:
            job.lease_until = self.clock.time() + LEASE_SECS

    @precondition(lambda self: self._live_held())
    @rule(data=st.data(), delta=st.sampled_from([-1, 1]), by_holder=st.booleans())
    def adjust_attempts(self, data: st.DataObject, delta: int, by_holder: bool) -> None:
        """A worker refunds a prefetched job's attempt, or counts it again as it starts."""
        job = data.draw(st.sampled_from(self._live_held()))
        assert job.holder is not None
        worker = job.holder if by_holder else next(w for w in WORKERS if w != job.holder)
        changed = self.queue.adjust_attempts({job.id: delta}, worker_id=worker)
        assert changed == ([job.id] if by_holder else []), "only the holder changes its jobs"
        if by_holder:
            job.attempts = max(0, job.attempts + delta)

    @rule(worker=st.sampled_from(WORKERS))
    def crash(self, worker: str) -> None:
        """The claimer vanishes without a word: its jobs wait for their leases to run out."""
        for job in self._live_held(worker):
            job.orphaned = True

    def _spoilable(self) -> list[ModelJob]:
        return [j for j in self.jobs.values() if j.state == "waiting" and not j.spoilt]

    @precondition(lambda self: self._spoilable())
    @rule(data=st.data())
    def poison(self, data: st.DataObject) -> None:
        """A waiting job's stored copy goes bad: it must be quarantined, never run or block."""
        job = data.draw(st.sampled_from(self._spoilable()))
        spoil(SimpleNamespace(kind=self.kind, queue=self.queue), self.built[job.id], "payload")  # type: ignore[arg-type]
        job.spoilt = True

    @rule(n=st.integers(1, 4), at=st.integers(0, 2))
    def claim_fails(self, n: int, at: int) -> None:
        """The backend fails part-way through a claim (the reply is lost, the connection drops).

        The claimer gets a ``BackendError``; each job the backend claimed anyway is held
        by nobody who knows it, so it must come back when its lease runs out. The claimer
        is a worker of its own (it crashed), so asking which jobs it holds is unambiguous.
        """
        self.counter += 1
        worker = f"failed-claimer-{self.counter}"
        now = self.clock.time()
        codec: Any = getattr(self.queue, "payloads", None)
        if codec is None or any(j.spoilt and self._due(j, now) for j in self.jobs.values()):
            return  # a poison's quarantine lost with the error is not what this rule is about
        real, calls = codec.decode, []

        def decode(*args: Any, **kwargs: Any) -> Any:
            calls.append(1)
            if len(calls) > at:
                raise BackendUnavailable("injected: connection lost mid-claim", backend="model")
            return real(*args, **kwargs)

        codec.decode = decode
        try:
            self.queue.claim_batch(n, worker_id=worker, lease_secs=LEASE_SECS)
        except BackendUnavailable:
            pass  # some engines decode nothing in a claim (memory): then it just succeeds
        finally:
            del codec.decode  # the instance attribute goes; the class's method shows again
        candidates = [j for j in self.jobs.values() if self._due(j, now)]
        taken = set(
            self.queue.heartbeat(
                [j.id for j in candidates], worker_id=worker, lease_secs=LEASE_SECS
            )
        )  # same clock: renewing a lease the failed claim just took changes nothing
        for model in candidates:
            if model.id in taken:
                model.state, model.holder, model.lease_until = "held", worker, now + LEASE_SECS
                model.attempts += 1
                model.orphaned = True

    def _dead(self) -> list[ModelJob]:
        return [j for j in self.jobs.values() if j.state == "dead"]

    @precondition(lambda self: self._dead())
    @rule(data=st.data())
    def forget_dead(self, data: st.DataObject) -> None:
        """A person deletes a dead letter: it still cannot be revived; once deleted it is gone."""
        job = data.draw(st.sampled_from(self._dead()))
        try:
            self.queue.revive_dead(job.id)
        except CorruptJob:
            pass
        else:
            raise AssertionError(f"a spoilt record revived: {job.id}")
        assert self.queue.forget_dead(job.id)
        assert not self.queue.forget_dead(job.id), "a dead letter is deleted once"
        job.state = "gone"

    @rule(secs=st.sampled_from([1.0, 5.0, 11.0]))
    def advance(self, secs: float) -> None:
        self.clock.advance(secs)

    @precondition(lambda self: any(j.state not in ("gone", "dead") for j in self.jobs.values()))
    @rule(data=st.data())
    def cancel(self, data: st.DataObject) -> None:
        live = [j for j in self.jobs.values() if j.state not in ("gone", "dead")]
        job = data.draw(st.sampled_from(live))
        cancelled = self.queue.cancel(job.id)
        if job.state == "waiting":
            assert cancelled or job.spoilt, "a waiting job can be cancelled"
        elif job.lease_until > self.clock.time():
            assert not cancelled, "a job under a live lease cannot be cancelled"
        # else: an expired claim may or may not have been moved back yet; either is right.
        if cancelled:
            job.state, job.holder = "gone", None

    # -- invariants ------------------------------------------------------------
    @invariant()
    def nothing_is_lost(self) -> None:
        totals = QueueStats.totals(self.queue.queue_stats())
        waiting = sum(1 for j in self.jobs.values() if j.state == "waiting")
        dead = sum(1 for j in self.jobs.values() if j.state == "dead")
        assert totals["quarantined"] == dead, "every quarantined job is counted, none else"
        listed = [letter.id for letter in self.queue.dead_letters(limit=1000)]
        assert listed == sorted(j.id for j in self._dead()), "dead letters: each, by id"
        held = sum(1 for j in self.jobs.values() if j.state == "held")
        size = self.queue.qsize()
        assert waiting <= size <= waiting + len(self._expired())
        assert totals["pending"] + totals["scheduled"] == size
        assert size + totals["running"] + totals["expired"] == waiting + held, "a job was lost"
        assert totals["running"] == len([j for j in self.jobs.values() if j.state == "held"]) - len(
            self._expired()
        ), "a live claim must count as running"


class MemoryMachine(QueueMachine):
    kind = "memory"

    def build(self, folder: Path, clock: FakeClock) -> BaseJobQueue:
        return MemoryJobQueue(clock=clock)


class FileMachine(QueueMachine):
    kind = "file"

    def build(self, folder: Path, clock: FakeClock) -> BaseJobQueue:
        return FileJobQueue(folder / "queue", clock=clock)


class SQLiteMachine(QueueMachine):
    kind = "sqlite"

    def build(self, folder: Path, clock: FakeClock) -> BaseJobQueue:
        return SQLiteJobQueue(folder / "queue.db", clock=clock, synchronous="normal")


TestMemoryQueueModel = MemoryMachine.TestCase
TestMemoryQueueModel.settings = MACHINE_SETTINGS
TestFileQueueModel = FileMachine.TestCase
TestFileQueueModel.settings = MACHINE_SETTINGS
TestSQLiteQueueModel = SQLiteMachine.TestCase
TestSQLiteQueueModel.settings = MACHINE_SETTINGS


# -- the server backends (issue 7): each example gets its own schema / key prefix ---------
SERVER_MACHINE_SETTINGS = settings(MACHINE_SETTINGS, max_examples=25)  # a round trip per step


class PostgresMachine(QueueMachine):
    kind = "postgres"

    def build(self, folder: Path, clock: FakeClock) -> BaseJobQueue:
        from nuvom.queue_backends.postgres_queue import PostgresJobQueue

        from .server_builders import hold_server_lock, require_postgres, unique_name

        self.release = hold_server_lock()
        dsn = require_postgres()
        self.schema = unique_name("nuvom_test")
        return PostgresJobQueue(dsn, schema=self.schema, clock=clock)

    def teardown(self) -> None:
        from .server_builders import drop_postgres_schema

        super().teardown()
        drop_postgres_schema(self.schema)
        self.release()


class RedisMachine(QueueMachine):
    kind = "redis"

    def build(self, folder: Path, clock: FakeClock) -> BaseJobQueue:
        from nuvom.queue_backends.redis_queue import RedisJobQueue

        from .server_builders import hold_server_lock, require_redis, unique_name

        self.release = hold_server_lock()
        url = require_redis()
        self.prefix = unique_name("nuvom-test")
        return RedisJobQueue(url, prefix=self.prefix, clock=clock)

    def teardown(self) -> None:
        from .server_builders import drop_redis_prefix

        super().teardown()
        drop_redis_prefix(self.prefix)
        self.release()


TestPostgresQueueModel = PostgresMachine.TestCase
TestPostgresQueueModel.settings = SERVER_MACHINE_SETTINGS
TestRedisQueueModel = RedisMachine.TestCase
TestRedisQueueModel.settings = SERVER_MACHINE_SETTINGS
