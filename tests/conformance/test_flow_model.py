"""Model-based test of flow control, on every engine: limits, unique keys, paused queues.

Hypothesis submits plain, concurrency-limited, rate-limited and unique jobs into two
queues, claims with two workers, settles (success, failure, retry), releases, pauses and
resumes queues, lets time pass and lets every lease run out. A small model predicts
which submits are duplicates and bounds what a claim may take. After every claim: no
paused queue gave a job, no concurrency key has more live holders than its limit, the
rate-limited task never started more than its bucket held, and a claim that came back
short left no claimable plain job behind and no free slot unused while a job of the key
waited (held jobs never block the others, and a freed slot wakes a held job).
"""

from __future__ import annotations

import math
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from nuvom.clock import FakeClock
from nuvom.job import Job, JobStatus
from nuvom.records import ErrorInfo, Outcome

from .conftest import BUILDERS, Backends

LEASE_SECS = 30.0
CONC_KEY, CONC_LIMIT = "model.conc", 2
RATE_TASK, PER_SEC, BURST = "model.rated", 1.0, 1
QUEUES = ("q1", "q2")
MACHINE_SETTINGS = settings(
    max_examples=60,
    stateful_step_count=40,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
)
SERVER_SETTINGS = settings(MACHINE_SETTINGS, max_examples=15)


@dataclass
class Member:
    kind: str  # plain | conc | rate | unique
    queue: str
    state: str = "waiting"  # waiting | claimed | done
    holder: str | None = None
    lease_until: float = 0.0
    key: str | None = None  # a unique job's key
    keep: float = 0.0
    finished_at: float = 0.0


class FlowMachine(RuleBasedStateMachine):
    kind = "memory"

    def __init__(self) -> None:
        super().__init__()
        self.clock = FakeClock()
        self.folder = Path(tempfile.mkdtemp(prefix="nuvom-flow-model-"))
        self.backends: Backends = BUILDERS[self.kind](self.folder, self.clock)
        self.model: dict[str, Member] = {}
        self.paused: set[str] = set()
        self.count = 0
        self.tokens = float(BURST)
        self.tokens_at = self.clock.time()

    def teardown(self) -> None:
        self.backends.close()
        shutil.rmtree(self.folder, ignore_errors=True)

    # -- the model -------------------------------------------------------------------
    def _now(self) -> float:
        return self.clock.time()

    def _live(self, member: Member) -> bool:
        return member.state == "claimed" and member.lease_until > self._now()

    def _ids(self, predicate: Any) -> list[str]:
        return sorted(i for i, m in self.model.items() if predicate(m))

    def _claimable(self, member: Member) -> bool:
        """Waiting, or claimed with its lease run out, in a queue not paused."""
        if member.queue in self.paused:
            return False
        return member.state == "waiting" or (member.state == "claimed" and not self._live(member))

    def _holder(self, key: str) -> str | None:
        for job_id, member in self.model.items():
            if member.key != key:
                continue
            if member.state != "done" or member.finished_at + member.keep > self._now():
                return job_id
        return None

    def _refill(self) -> float:
        now = self._now()
        self.tokens = min(float(BURST), self.tokens + (now - self.tokens_at) * PER_SEC)
        self.tokens_at = now
        return self.tokens

    def _job(self, job_id: str) -> Job:
        member = self.model[job_id]
        return Job(RATE_TASK if member.kind == "rate" else "model.task", id=job_id,
                   queue=member.queue, attempts=1, lease_owner=member.holder)  # fmt: skip

    # -- rules -----------------------------------------------------------------------
    @rule(queue=st.sampled_from(QUEUES))
    def submit_plain(self, queue: str) -> None:
        self._submit("plain", queue)

    @rule()
    def submit_limited(self) -> None:
        self._submit("conc", "q1")

    @rule(queue=st.sampled_from(QUEUES))
    def submit_rated(self, queue: str) -> None:
        self._submit("rate", queue)

    @rule(kinds=st.lists(st.sampled_from(["plain", "conc", "rate"]), min_size=2, max_size=5))
    def submit_several(self, kinds: list[str]) -> None:
        for kind in kinds:  # one by one: their order is the claim order
            self._submit(kind, "q1" if kind == "conc" else "q2")

    @rule(queue=st.sampled_from(QUEUES), key=st.sampled_from(["u0", "u1"]),
          keep=st.sampled_from([0.0, 5.0]))  # fmt: skip
    def submit_unique(self, queue: str, key: str, keep: float) -> None:
        self._submit("unique", queue, key, keep)

    def _submit(self, kind: str, queue: str, key: str = "", keep: float = 0.0) -> None:
        self.count += 1
        job_id = f"j{self.count:03d}"
        origin: dict[str, Any] | None = None
        func = "model.task"
        if kind == "conc":
            origin = {"conc": [CONC_KEY, CONC_LIMIT]}
        elif kind == "rate":
            origin, func = {"rate": [PER_SEC, BURST]}, RATE_TASK
        elif kind == "unique":
            origin = {"unique": [key, keep]}
        holder = self._holder(key) if kind == "unique" else None
        job = Job(func, id=job_id, queue=queue, origin=origin)
        duplicates = self.backends.queue.submit([job], self.backends.results)
        if holder is not None:
            assert duplicates == {job_id: holder}, f"{key} is held by {holder}"
            return
        assert duplicates == {}, f"{key} is free: {job_id} is stored"
        self.model[job_id] = Member(kind, queue, key=key if kind == "unique" else None, keep=keep)

    @rule(worker=st.sampled_from(["w1", "w2"]), n=st.integers(1, 4))
    def claim(self, worker: str, n: int) -> None:
        claimable = {i for i, m in self.model.items() if self._claimable(m)}
        tokens = self._refill()
        claimed = self.backends.queue.claim(
            n, worker_id=worker, lease_secs=LEASE_SECS, results=self.backends.results
        )
        ids = [job.id for job in claimed]
        assert len(ids) <= n
        assert len(set(ids)) == len(ids)
        assert set(ids) <= claimable, f"claimed {sorted(set(ids) - claimable)}: not claimable"
        rated = sum(1 for i in ids if self.model[i].kind == "rate")
        assert rated <= math.floor(tokens + 1e-9), f"{rated} rate-limited starts, {tokens} tokens"
        self.tokens -= rated
        for job_id in ids:
            member = self.model[job_id]
            member.state, member.holder = "claimed", worker
            member.lease_until = self._now() + LEASE_SECS
        live = sum(1 for m in self.model.values() if m.kind == "conc" and self._live(m))
        assert live <= CONC_LIMIT, f"{live} jobs of {CONC_KEY} held at once"
        if len(ids) < n:  # short: nothing else could be taken
            left = [i for i in claimable - set(ids) if self.model[i].kind in ("plain", "unique")]
            assert not left, f"a short claim left claimable jobs {sorted(left)}"
            waiting_conc = [i for i in claimable - set(ids) if self.model[i].kind == "conc"]
            assert live == CONC_LIMIT or not waiting_conc, (
                f"{live} of {CONC_LIMIT} slots used while {sorted(waiting_conc)} waited"
            )

    @precondition(lambda self: self._ids(lambda m: m.state == "claimed"))
    @rule(data=st.data(), how=st.sampled_from(["success", "failure", "retry", "release"]))
    def finish(self, data: st.DataObject, how: str) -> None:
        live = self._ids(self._live)
        if not live:
            return
        job_id = data.draw(st.sampled_from(live))
        member, job, now = self.model[job_id], self._job(job_id), self._now()
        if how == "release":
            self.backends.queue.release([job_id], worker_id=member.holder or "")
            member.state, member.holder = "waiting", None
            return
        status = {"success": JobStatus.SUCCESS, "failure": JobStatus.FAILED,
                  "retry": JobStatus.RETRYING}[how]  # fmt: skip
        error = None if how == "success" else ErrorInfo("ValueError", "no")
        outcome = Outcome(job, status, result=1, error=error, worker_id=member.holder,
                          finished_at=now, retry_at=now if how == "retry" else None)  # fmt: skip
        self.backends.queue.settle([outcome], self.backends.results)
        if how == "retry":
            member.state, member.holder = "waiting", None
        else:
            member.state, member.holder, member.finished_at = "done", None, now

    @rule(secs=st.sampled_from([0.3, 1.0, 2.5, 6.0]))
    def time_passes(self, secs: float) -> None:
        self.clock.advance(secs)

    @precondition(lambda self: self._ids(lambda m: m.state == "claimed"))
    @rule()
    def crash(self) -> None:
        """Every worker dies: the leases run out; their jobs and slots are free again."""
        self.clock.advance(LEASE_SECS + 1)

    @rule(queue=st.sampled_from(QUEUES), paused=st.booleans())
    def pause(self, queue: str, paused: bool) -> None:
        changed = self.backends.queue.pause_queue(queue, paused)
        assert changed is ((queue in self.paused) is not paused)
        if paused:
            self.paused.add(queue)
        else:
            self.paused.discard(queue)

    # -- invariants ----------------------------------------------------------------------
    @invariant()
    def paused_queues_and_unique_holders_are_the_models(self) -> None:
        assert self.backends.queue.paused_queues() == sorted(self.paused)
        for key in ("u0", "u1"):
            assert self.backends.queue.unique_holder(key) == self._holder(key), key


class FileMachine(FlowMachine):
    kind = "file"


class SQLiteMachine(FlowMachine):
    kind = "sqlite-shared"


class SQLiteTwoStepMachine(FlowMachine):
    kind = "sqlite"


class PostgresMachine(FlowMachine):
    kind = "postgres"


class RedisMachine(FlowMachine):
    kind = "redis"


TestMemoryFlowModel = FlowMachine.TestCase
TestMemoryFlowModel.settings = MACHINE_SETTINGS
TestFileFlowModel = FileMachine.TestCase
TestFileFlowModel.settings = MACHINE_SETTINGS
TestSQLiteFlowModel = SQLiteMachine.TestCase
TestSQLiteFlowModel.settings = MACHINE_SETTINGS
TestSQLiteTwoStepFlowModel = SQLiteTwoStepMachine.TestCase
TestSQLiteTwoStepFlowModel.settings = MACHINE_SETTINGS
TestPostgresFlowModel = PostgresMachine.TestCase
TestPostgresFlowModel.settings = SERVER_SETTINGS
TestRedisFlowModel = RedisMachine.TestCase
TestRedisFlowModel.settings = SERVER_SETTINGS
