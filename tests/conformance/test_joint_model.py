"""Model-based test of the joint path: submit, claim, settle and cancel with a result backend.

On every engine pair that commits each step at once (the result backend's
``joint_writer``), Hypothesis drives the four steps, clock moves, and crashes
at either side of a step's commit (the "worker" dies: the step's exception
reaches nobody, and its jobs wait for their leases to run out). After every
step a job's record and its queue state tell the same story as the model:
waiting and PENDING/SCHEDULED/RETRYING, held and RUNNING, gone and final,
or, for a job whose submit crashed before its commit, nowhere at all.

The memory pair runs without crash rules: a crash of its process loses the
queue and the records together.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from nuvom.clock import FakeClock
from nuvom.job import FINAL_STATUSES, Job, JobStatus
from nuvom.records import ErrorInfo, Outcome

from .conftest import BUILDERS, Backends

LEASE_SECS = 10.0
WORKERS = ("w1", "w2")
STEPS = ("submit", "claim", "settle", "cancel")
WAITING_STATUSES = {JobStatus.PENDING, JobStatus.SCHEDULED, JobStatus.RETRYING}
MACHINE_SETTINGS = settings(
    max_examples=40,
    stateful_step_count=30,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
)


class Crash(BaseException):
    """The worker process dies here (no ``except Exception`` catches it)."""


class Injector:
    """Makes the next write of a step die before its commit (rolled back) or after it."""

    def __init__(self) -> None:
        self.when: str | None = None

    def take(self) -> str | None:
        when, self.when = self.when, None
        return when

    @contextmanager
    def around(self, commit: Callable[[], Any]) -> Iterator[Any]:
        when = self.take()
        with commit() as handle:
            yield handle
            if when == "before":
                raise Crash("before commit")
        if when == "after":
            raise Crash("after commit")

    def call(self, run: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        when = self.take()
        if when == "before":
            raise Crash("before commit")
        result = run(*args, **kwargs)
        if when == "after":
            raise Crash("after commit")
        return result


def _inject(b: Backends, injector: Injector) -> None:
    """Route the store's one commit primitive of each engine through ``injector``."""
    if b.kind == "sqlite-shared":
        store = b.queue.store  # type: ignore[attr-defined]
        write = store.transaction
        store.transaction = lambda: injector.around(write)
    elif b.kind == "postgres":
        store = b.queue.store  # type: ignore[attr-defined]
        transaction, alone = store.transaction, store.execute_alone
        store.transaction = lambda **kw: injector.around(lambda: transaction(**kw))
        store.execute_alone = lambda *a, **kw: injector.call(alone, *a, **kw)
    elif b.kind == "redis":
        client = b.queue.client  # type: ignore[attr-defined]
        pipeline = client.pipeline

        def crashing_pipeline(**kw: Any) -> Any:
            pipe = pipeline(**kw)
            execute = pipe.execute
            pipe.execute = lambda *a, **k: injector.call(execute, *a, **k)
            return pipe

        client.pipeline = crashing_pipeline
        joint = b.queue._writer_for(b.results)
        for name in ("_claim_and_start", "_cancel_and_record"):
            script = getattr(joint, name)
            setattr(joint, name, lambda *a, _s=script, **kw: injector.call(_s, *a, **kw))


@dataclass
class ModelJob:
    id: str
    state: str = "waiting"  # waiting | held | gone | never (its submit died before committing)
    holder: str | None = None
    lease_until: float = 0.0
    orphaned: bool = False


class JointMachine(RuleBasedStateMachine):
    kind = ""

    def __init__(self) -> None:
        super().__init__()
        self.folder = Path(tempfile.mkdtemp(prefix="nuvom-joint-"))
        self.clock = FakeClock()
        self.b = BUILDERS[self.kind](self.folder, self.clock)
        self.injector = Injector()
        _inject(self.b, self.injector)
        self.jobs: dict[str, ModelJob] = {}
        self.counter = 0

    def teardown(self) -> None:
        self.b.close()
        shutil.rmtree(self.folder, ignore_errors=True)

    # -- helpers -------------------------------------------------------------
    def _live(self) -> list[ModelJob]:
        now = self.clock.time()
        return [
            j
            for j in self.jobs.values()
            if j.state == "held" and not j.orphaned and j.lease_until > now
        ]

    def _waiting(self) -> list[ModelJob]:
        return [j for j in self.jobs.values() if j.state == "waiting"]

    def _orphan(self, worker: str) -> None:
        for job in self.jobs.values():
            if job.state == "held" and job.holder == worker:
                job.orphaned = True

    def _took(self, worker: str, claimed_ids: list[str] | None) -> None:
        """Jobs a claim by ``worker`` took: those it returned, or, when it died after its
        commit, those whose record says this worker started them just now."""
        if claimed_ids is None:
            claimed_ids = [
                job.id
                for job in self.jobs.values()
                if job.state in ("waiting", "held")
                and (record := self.b.results.get_full(job.id)) is not None
                and record.status is JobStatus.RUNNING
                and record.worker_id == worker
                and record.started_at == self.clock.time()
                and (job.state == "waiting" or job.holder != worker or job.orphaned)
            ]
        for job_id in claimed_ids:
            job = self.jobs[job_id]
            job.state, job.holder = "held", worker
            job.lease_until, job.orphaned = self.clock.time() + LEASE_SECS, False

    # -- the steps -------------------------------------------------------------
    def _submit(self, delay: float | None) -> ModelJob:
        self.counter += 1
        due = None if delay is None else self.clock.time() + delay
        job = Job("joint.task", args=(self.counter,), due_at=due)
        model = self.jobs[job.id] = ModelJob(job.id, state="never")
        self.b.queue.submit([job], self.b.results)
        model.state = "waiting"
        return model

    def _claim(self, worker: str, n: int) -> list[str]:
        jobs = self.b.queue.claim(
            n, worker_id=worker, lease_secs=LEASE_SECS, results=self.b.results
        )
        return [job.id for job in jobs]

    def _settle(self, job: ModelJob, kind: str) -> None:
        assert job.holder is not None
        now = self.clock.time()
        stored = Job("joint.task", id=job.id, attempts=1)
        if kind == "success":
            outcome = Outcome(stored, JobStatus.SUCCESS, result=job.id, worker_id=job.holder)
        elif kind == "failure":
            error = ErrorInfo("ValueError", "no")
            outcome = Outcome(stored, JobStatus.FAILED, error=error, worker_id=job.holder)
        else:
            error = ErrorInfo("ValueError", "again")
            outcome = Outcome(stored, JobStatus.RETRYING, error=error, worker_id=job.holder,
                              retry_at=now + 2.0, finished_at=now)  # fmt: skip
        self.b.queue.settle([outcome], self.b.results)

    # -- rules -----------------------------------------------------------------
    @rule(delay=st.sampled_from([None, 0.0, 5.0]))
    def submit(self, delay: float | None) -> None:
        self._submit(delay)

    @rule(worker=st.sampled_from(WORKERS), n=st.integers(1, 3))
    def claim(self, worker: str, n: int) -> None:
        self._took(worker, self._claim(worker, n))

    @precondition(lambda self: self._live())
    @rule(data=st.data(), kind=st.sampled_from(["success", "failure", "retry"]))
    def settle(self, data: st.DataObject, kind: str) -> None:
        job = data.draw(st.sampled_from(self._live()))
        self._settle(job, kind)
        job.state, job.holder = ("waiting", None) if kind == "retry" else ("gone", None)

    @precondition(lambda self: self.jobs)
    @rule(data=st.data())
    def cancel(self, data: st.DataObject) -> None:
        job = data.draw(st.sampled_from(list(self.jobs.values())))
        cancelled = self.b.queue.cancel_job(job.id, self.b.results)
        expired = job.state == "held" and job.lease_until <= self.clock.time()
        if not expired:  # an expired claim may or may not have been put back yet
            assert cancelled is (job.state == "waiting"), f"cancel of {job} said {cancelled}"
        if cancelled:
            job.state = "gone"

    @rule(secs=st.sampled_from([1.0, 6.0, 11.0]))
    def advance(self, secs: float) -> None:
        self.clock.advance(secs)

    # -- invariants --------------------------------------------------------------
    @invariant()
    def record_and_queue_agree(self) -> None:
        waiting = {job.id for job in self.b.queue.waiting_jobs()}
        assert waiting <= set(self.jobs), "the queue holds a job nobody submitted"
        now = self.clock.time()
        for job in self.jobs.values():
            status = self.b.results.get_status(job.id)
            story = f"{job} is {status} and {'' if job.id in waiting else 'not '}waiting"
            if job.state == "never":
                assert status is None, story
                assert job.id not in waiting, story
            elif job.state == "waiting":
                assert status in WAITING_STATUSES, story
                assert job.id in waiting, story
            elif job.state == "held":
                assert status is JobStatus.RUNNING, story
                if job.lease_until > now:
                    assert job.id not in waiting, story
            else:
                assert status in FINAL_STATUSES, story
                assert job.id not in waiting, story


class CrashingJointMachine(JointMachine):
    """The same, plus a worker dying on either side of a step's commit."""

    def _dies(self, when: str, step: Callable[[], object]) -> None:
        self.injector.when = when
        with pytest.raises(Crash):  # every step writes, so every armed step dies
            step()

    @rule(
        when=st.sampled_from(["before", "after"]),
        worker=st.sampled_from(WORKERS),
        n=st.integers(1, 3),
    )
    def claim_dies(self, when: str, worker: str, n: int) -> None:
        self._dies(when, lambda: self._claim(worker, n))
        self._orphan(worker)
        if when == "after":
            self._took(worker, None)
            self._orphan(worker)

    @rule(when=st.sampled_from(["before", "after"]), delay=st.sampled_from([None, 5.0]))
    def submit_dies(self, when: str, delay: float | None) -> None:
        before = set(self.jobs)
        self._dies(when, lambda: self._submit(delay))
        (job_id,) = set(self.jobs) - before
        self.jobs[job_id].state = "waiting" if when == "after" else "never"

    @precondition(lambda self: self._live())
    @rule(data=st.data(), when=st.sampled_from(["before", "after"]),
          kind=st.sampled_from(["success", "failure", "retry"]))  # fmt: skip
    def settle_dies(self, data: st.DataObject, when: str, kind: str) -> None:
        job = data.draw(st.sampled_from(self._live()))
        holder = job.holder
        assert holder is not None
        self._dies(when, lambda: self._settle(job, kind))
        if when == "after":
            job.state, job.holder = ("waiting", None) if kind == "retry" else ("gone", None)
        self._orphan(holder)

    @precondition(lambda self: self.jobs)
    @rule(data=st.data(), when=st.sampled_from(["before", "after"]))
    def cancel_dies(self, data: st.DataObject, when: str) -> None:
        job = data.draw(st.sampled_from(list(self.jobs.values())))
        self._dies(when, lambda: self.b.queue.cancel_job(job.id, self.b.results))
        if when != "after":
            return
        expired = job.state == "held" and job.lease_until <= self.clock.time()
        if job.state == "waiting" or (
            expired and self.b.results.get_status(job.id) is JobStatus.CANCELLED
        ):
            job.state = "gone"  # committed: the invariant checks record and queue both say so


class MemoryJoint(JointMachine):
    kind = "memory"


class SQLiteJoint(CrashingJointMachine):
    kind = "sqlite-shared"


class PostgresJoint(CrashingJointMachine):
    kind = "postgres"


class RedisJoint(CrashingJointMachine):
    kind = "redis"


SERVER_SETTINGS = settings(MACHINE_SETTINGS, max_examples=15)  # a round trip per step

TestMemoryJointModel = MemoryJoint.TestCase
TestMemoryJointModel.settings = MACHINE_SETTINGS
TestSQLiteJointModel = SQLiteJoint.TestCase
TestSQLiteJointModel.settings = MACHINE_SETTINGS
TestPostgresJointModel = PostgresJoint.TestCase
TestPostgresJointModel.settings = SERVER_SETTINGS
TestRedisJointModel = RedisJoint.TestCase
TestRedisJointModel.settings = SERVER_SETTINGS
