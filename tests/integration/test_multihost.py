"""Many worker hosts on one queue: three workers with their own host names share one server.

A worker killed mid-run loses nothing: every job ends SUCCESS, each ran exactly
once, except the one the killed worker was running, which ran again elsewhere.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import threading
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from nuvom.job import Job, JobStatus
from nuvom.queue import enqueue_many

from .helpers import Project, posix_only, wait_for
from .servers import ServerBackend, server_backend

__all__ = ["server_backend"]  # the fixture, imported so pytest finds it here

JOBS = 2000
LEASE_SECS = 2.0  # the killed worker's job is claimed again this soon after it dies
HOSTS = ("host-a", "host-b", "host-c")
CLAIMERS = 4  # processes racing for the same jobs
CLAIM_RACE_JOBS = 2000
BARRIER_SECS = 80.0  # spawned claimers on a loaded 2-core machine may take this long to start

MULTIHOST_TASKS = """
import os
import time
from pathlib import Path

from nuvom import task

HOLD_CAP_SECS = 60


@task
def record(folder, n):
    with open(Path(folder) / "runs", "a", encoding="utf-8") as runs:
        runs.write(f"{n} {os.getpid()}\\n")
    return n


@task
def block(folder):
    \"\"\"Marks who runs it, then waits for <folder>/go.\"\"\"
    with open(Path(folder) / "runs", "a", encoding="utf-8") as runs:
        runs.write(f"block {os.getpid()}\\n")
    deadline = time.monotonic() + HOLD_CAP_SECS
    while not (Path(folder) / "go").exists():
        if time.monotonic() > deadline:
            raise TimeoutError("the test never created the go marker")
        time.sleep(0.01)
    return "unblocked"
"""


def _runs(folder: Path) -> list[tuple[str, int]]:
    path = folder / "runs"
    if not path.exists():
        return []
    lines = path.read_text().splitlines()
    return [(name, int(pid)) for name, pid in (line.split() for line in lines if line)]


@posix_only
@pytest.mark.slow
@pytest.mark.timeout(120)
def test_three_hosts_share_one_queue_and_survive_a_sigkill(
    project: Project, server_backend: ServerBackend
) -> None:
    project.write("tasks.py", MULTIHOST_TASKS)
    runtime = project.configure(**server_backend.settings)
    env = dict(project.env, **server_backend.env)
    workers = [
        project.start_worker(
            "--hostname", host, "--workers", "1", "--batch-size", "8",
            env=env, NUVOM_LEASE_SECS=str(LEASE_SECS),
        )
        for host in HOSTS
    ]  # fmt: skip
    by_pid = {worker.pid: host for worker, host in zip(workers, HOSTS, strict=True)}
    folder = str(project.root)
    jobs = [Job("record", args=[folder, n]) for n in range(JOBS - 1)]
    blocker = Job("block", args=[folder])
    jobs.insert(JOBS // 3, blocker)  # claimed mid-run
    enqueue_many(jobs)

    victim_pid = wait_for(
        lambda: next((pid for name, pid in _runs(project.root) if name == "block"), None),
        what="a worker to start the blocking job",
    )
    victim = next(w for w in workers if w.pid == victim_pid)
    # Let the victim store what it finished before: only the blocking job is in flight.
    done_by_victim = [
        int(n) for n, pid in _runs(project.root) if pid == victim_pid and n != "block"
    ]
    by_n = {n: job for n, job in enumerate(j for j in jobs if j is not blocker)}
    wait_for(
        lambda: all(
            runtime.results.get_status(by_n[n].id) is JobStatus.SUCCESS for n in done_by_victim
        ),
        what="the victim's finished jobs to be stored",
    )
    os.kill(victim_pid, signal.SIGKILL)
    victim.wait()
    (project.root / "go").touch()

    def all_done() -> bool:
        return runtime.queue.qsize() == 0 and all(
            runtime.results.get_status(job.id) is JobStatus.SUCCESS for job in (blocker, *jobs[-5:])
        )

    wait_for(all_done, timeout=90, what="every job to finish")
    wait_for(
        lambda: len(runtime.results.list_jobs(status=JobStatus.SUCCESS, limit=JOBS + 1)) == JOBS,
        timeout=30,
        what="every job to be SUCCESS",
    )

    runs = Counter(name for name, _ in _runs(project.root))
    assert runs["block"] == 2, "the killed worker's job ran again"
    assert {n for n, count in runs.items() if count != 1} == {"block"}
    assert len(runs) == JOBS, "every job ran"
    record = runtime.results.get_full(blocker.id)
    assert record is not None
    assert [a.status for a in record.history] == ["LOST", "SUCCESS"]
    first, second = (a.worker_id or "" for a in record.history)
    assert first.startswith(f"{by_pid[victim_pid]}:")
    assert second.split(":")[0] in set(HOSTS) - {by_pid[victim_pid]}
    hosts_seen = {pid for _, pid in _runs(project.root)}
    assert hosts_seen == set(by_pid), "all three hosts took part"
    for worker in workers:
        if worker is not victim:
            worker.send(signal.SIGTERM)
            assert worker.wait() == 0, worker.describe()


def _claimer(settings: dict[str, Any], start: Any, out: Any, name: str) -> None:
    """A spawned process claiming in small batches until the queue is empty."""
    import nuvom

    try:
        runtime = nuvom.configure(**settings)
        runtime.queue.qsize()  # connected before the start line
        start.wait(BARRIER_SECS)  # every claimer and the test: all begin together
        claimed: list[str] = []
        while True:
            batch = runtime.queue.pop_batch(2, worker_id=name, lease_secs=300)
            if not batch:
                break
            claimed.extend(job.id for job in batch)
        nuvom.reset()
        out.put((name, claimed))
    except BaseException as exc:
        out.put((name, f"{type(exc).__name__}: {exc}"))
        raise


@pytest.mark.slow
@pytest.mark.timeout(150)
def test_processes_racing_to_claim_get_every_job_exactly_once(
    project: Project, server_backend: ServerBackend
) -> None:
    runtime = project.configure(**server_backend.settings)
    jobs = [Job("race.task", args=[n]) for n in range(CLAIM_RACE_JOBS)]
    runtime.queue.enqueue_many(jobs)
    ctx = multiprocessing.get_context("spawn")
    start, out = ctx.Barrier(CLAIMERS + 1), ctx.Queue()
    procs = [
        ctx.Process(target=_claimer, args=(server_backend.settings, start, out, f"claimer-{i}"))
        for i in range(CLAIMERS)
    ]
    for proc in procs:
        proc.start()
    try:
        start.wait(BARRIER_SECS)
    except threading.BrokenBarrierError:
        early = [out.get(timeout=5) for _ in procs if not out.empty()]
        pytest.fail(f"the claimers did not all start: {early}")
    reports = dict(out.get(timeout=60) for _ in procs)
    for proc in procs:
        proc.join(timeout=30)
        assert proc.exitcode == 0

    errors = {name: r for name, r in reports.items() if isinstance(r, str)}
    assert errors == {}
    every = [job_id for claimed in reports.values() for job_id in claimed]
    assert [i for i, c in Counter(every).items() if c > 1] == []
    assert sorted(every) == sorted(job.id for job in jobs)
    assert sum(1 for claimed in reports.values() if claimed) >= 2, "the claimers overlapped"
