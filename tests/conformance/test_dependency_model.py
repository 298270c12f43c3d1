"""Model-based test of the workflow primitive (jobs that wait for others), on every engine.

Hypothesis submits jobs with and without dependencies (on jobs waiting, parked, running
or finished; errbacks too), claims, completes members with success or failure, resolves
a finished member again (a duplicate completion), lets every lease run out (a crashed
worker: the members are delivered again) and cancels waiting or parked jobs. A small
model predicts each step. After every step: the parked jobs, what waits and what a claim
takes are the model's — so a callback is enqueued once, and only when all it waits for
succeeded (an errback: when one failed) — and every record's status is the model's.
"""

from __future__ import annotations

import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from nuvom.clock import FakeClock
from nuvom.job import Job, JobStatus
from nuvom.records import ErrorInfo, Outcome

from .conftest import BUILDERS, Backends

LEASE_SECS = 30.0
MACHINE_SETTINGS = settings(
    max_examples=60,
    stateful_step_count=30,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
)
SERVER_SETTINGS = settings(MACHINE_SETTINGS, max_examples=15)

RECORDED = {
    "waiting": JobStatus.PENDING,
    "parked": JobStatus.PENDING,
    "claimed": JobStatus.RUNNING,
    "expired": JobStatus.RUNNING,  # its worker died: the record says so until it is claimed
    "done": JobStatus.SUCCESS,
    "failed": JobStatus.FAILED,
    "cancelled": JobStatus.CANCELLED,
}


@dataclass
class Member:
    deps: list[str]
    errback: bool
    state: str  # waiting | parked | claimed | expired | done | failed | cancelled
    pending: set[str] = field(default_factory=set)
    holder: str | None = None


class DependencyMachine(RuleBasedStateMachine):
    kind = "memory"

    def __init__(self) -> None:
        super().__init__()
        self.clock = FakeClock()
        self.folder = Path(tempfile.mkdtemp(prefix="nuvom-dependency-model-"))
        self.backends: Backends = BUILDERS[self.kind](self.folder, self.clock)
        self.model: dict[str, Member] = {}
        self.count = 0
        self.claims = 0

    def teardown(self) -> None:
        self.backends.close()
        shutil.rmtree(self.folder, ignore_errors=True)

    # -- the model ---------------------------------------------------------------
    def _ids(self, *states: str) -> list[str]:
        return sorted(i for i, m in self.model.items() if m.state in states)

    def _resolve(self, dep: str, succeeded: bool) -> None:
        todo = [(dep, succeeded)]
        while todo:
            done, ok = todo.pop(0)
            for job_id in self._ids("parked"):
                member = self.model[job_id]
                if done not in member.pending:
                    continue  # counted already, or it does not wait for it
                member.pending.discard(done)
                if ok and member.pending:
                    continue
                if ok is member.errback:
                    member.state = "cancelled"
                    todo.append((job_id, False))
                else:
                    member.state = "waiting"

    def _new_id(self) -> str:
        self.count += 1
        return f"j{self.count:03d}"

    # -- rules -------------------------------------------------------------------
    @rule(n=st.integers(1, 3))
    def submit_roots(self, n: int) -> None:
        jobs = [Job("model.task", id=self._new_id()) for _ in range(n)]
        self.backends.queue.submit(jobs, self.backends.results)
        for job in jobs:
            self.model[job.id] = Member([], False, "waiting")

    @precondition(lambda self: self.model)
    @rule(data=st.data(), errback=st.booleans())
    def submit_dependent(self, data: st.DataObject, errback: bool) -> None:
        known = sorted(self.model)
        deps = data.draw(st.lists(st.sampled_from(known), min_size=1, max_size=3, unique=True))
        origin = {"workflow": "wf", "after": deps, "feed": "failure" if errback else "list"}
        job = Job("model.task", id=self._new_id(), origin=origin)
        self.backends.queue.submit([job], self.backends.results)
        self.model[job.id] = Member(deps, errback, "parked", set(deps))
        for dep in deps:  # finished before it was submitted: resolved in the submit
            state = self.model[dep].state
            if state in ("done", "failed", "cancelled") and self.model[job.id].state == "parked":
                self._resolve_one(job.id, dep, state == "done")

    def _resolve_one(self, job_id: str, dep: str, ok: bool) -> None:
        member = self.model[job_id]
        member.pending.discard(dep)
        if ok and member.pending:
            return
        if ok is member.errback:
            member.state = "cancelled"
            self._resolve(job_id, False)
        else:
            member.state = "waiting"

    @rule(worker=st.sampled_from(["w1", "w2"]))
    def claim(self, worker: str) -> None:
        claimed = self.backends.queue.claim(
            100, worker_id=worker, lease_secs=LEASE_SECS, results=self.backends.results
        )
        expected = self._ids("waiting", "expired")
        assert sorted(job.id for job in claimed) == expected, "a claim takes what waits, only"
        for job in claimed:
            member = self.model[job.id]
            if member.deps and not member.errback:
                assert all(self.model[d].state == "done" for d in member.deps), (
                    f"{job.id} released before all it waits for succeeded"
                )
            member.state, member.holder = "claimed", worker
        self.claims += len(claimed)

    @precondition(lambda self: self._ids("claimed"))
    @rule(data=st.data(), ok=st.booleans())
    def finish(self, data: st.DataObject, ok: bool) -> None:
        job_id = data.draw(st.sampled_from(self._ids("claimed")))
        member = self.model[job_id]
        job = Job("model.task", id=job_id, attempts=1)
        status = JobStatus.SUCCESS if ok else JobStatus.FAILED
        error = None if ok else ErrorInfo("ValueError", "no")
        outcome = Outcome(job, status, result=job_id, error=error, worker_id=member.holder,
                          finished_at=self.clock.time())  # fmt: skip
        self.backends.queue.settle([outcome], self.backends.results)
        member.state, member.holder = ("done" if ok else "failed"), None
        self._resolve(job_id, ok)

    @precondition(lambda self: self._ids("done", "failed"))
    @rule(data=st.data())
    def duplicate_completion(self, data: st.DataObject) -> None:
        job_id = data.draw(st.sampled_from(self._ids("done", "failed")))
        self.backends.queue.resolve([(job_id, self.model[job_id].state == "done")])

    @precondition(lambda self: self._ids("claimed"))
    @rule()
    def crash(self) -> None:
        """Every worker dies: the leases run out and the members are delivered again."""
        self.clock.advance(LEASE_SECS + 1)
        for job_id in self._ids("claimed"):
            self.model[job_id].state, self.model[job_id].holder = "expired", None

    @precondition(lambda self: self._ids("waiting", "parked"))
    @rule(data=st.data())
    def cancel(self, data: st.DataObject) -> None:
        job_id = data.draw(st.sampled_from(self._ids("waiting", "parked")))
        assert self.backends.queue.cancel_job(job_id, self.backends.results) is True
        self.model[job_id].state = "cancelled"
        self._resolve(job_id, False)

    # -- invariants ----------------------------------------------------------------
    @invariant()
    def parked_and_waiting_are_the_models(self) -> None:
        parked = [job.id for job in self.backends.queue.parked_jobs()]
        assert parked == self._ids("parked")
        assert self.backends.queue.qsize() == len(self._ids("waiting"))

    @invariant()
    def every_record_tells_the_models_story(self) -> None:
        for job_id, member in self.model.items():
            status = self.backends.results.get_status(job_id)
            assert status is RECORDED[member.state], f"{job_id} is {status}, model: {member}"


class FileMachine(DependencyMachine):
    kind = "file"


class SQLiteMachine(DependencyMachine):
    kind = "sqlite-shared"


class SQLiteTwoStepMachine(DependencyMachine):
    kind = "sqlite"


class PostgresMachine(DependencyMachine):
    kind = "postgres"


class RedisMachine(DependencyMachine):
    kind = "redis"


TestMemoryDependencyModel = DependencyMachine.TestCase
TestMemoryDependencyModel.settings = MACHINE_SETTINGS
TestFileDependencyModel = FileMachine.TestCase
TestFileDependencyModel.settings = MACHINE_SETTINGS
TestSQLiteDependencyModel = SQLiteMachine.TestCase
TestSQLiteDependencyModel.settings = MACHINE_SETTINGS
TestSQLiteTwoStepDependencyModel = SQLiteTwoStepMachine.TestCase
TestSQLiteTwoStepDependencyModel.settings = MACHINE_SETTINGS
TestPostgresDependencyModel = PostgresMachine.TestCase
TestPostgresDependencyModel.settings = SERVER_SETTINGS
TestRedisDependencyModel = RedisMachine.TestCase
TestRedisDependencyModel.settings = SERVER_SETTINGS
