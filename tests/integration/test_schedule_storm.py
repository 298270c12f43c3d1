"""Many schedulers, one timetable: an ``interval=1`` task fires once a second, whichever
of three workers and two ``runscheduler`` processes wins each tick, even while a
scheduler is SIGKILLed again and again.
"""

from __future__ import annotations

import itertools
import random
import signal
import threading
import time
from collections.abc import Iterator

import pytest

from nuvom.job import JobStatus

from .helpers import STARTED_TEXT, Proc, Project, nuvom_command, posix_only
from .servers import engine_env

WINDOW_SECS = 20.0
WORKERS = 3
SCHEDULERS = 2
KILLS = 7

BEAT_TASKS = """
import os
import time

from nuvom import task


@task(interval=1)
def beat():
    fd = os.open("beats", os.O_WRONLY | os.O_APPEND | os.O_CREAT)
    try:
        os.write(fd, f"{time.time()!r}\\n".encode())
    finally:
        os.close(fd)
"""


@pytest.fixture(params=["sqlite", "postgres", "redis"])
def engine(request: pytest.FixtureRequest) -> Iterator[dict[str, str]]:
    """The settings of one engine (queue and results on it), as environment variables."""
    with engine_env(request.param) as env:
        yield env


def _beats(project: Project) -> list[float]:
    path = project.root / "beats"
    return sorted(float(line) for line in path.read_text().split()) if path.exists() else []


def _scheduler(project: Project, env: dict[str, str]) -> Proc:
    return project.start([*nuvom_command(), "runscheduler"], env=env)


@posix_only
@pytest.mark.slow
@pytest.mark.timeout(180)
def test_each_tick_fires_once_however_many_schedulers_race(
    project: Project, engine: dict[str, str]
) -> None:
    """One 20 s run of an ``interval=1`` schedule, its schedulers SIGKILLed seven times meanwhile
    (a run without kills checks nothing this one does not: 20 s of the suite's budget)."""
    project.write("tasks.py", BEAT_TASKS)
    env = dict(project.env, **engine)
    assert project.nuvom("discover", "tasks", env=env).returncode == 0
    began = time.monotonic()  # ticks may fire from here until every process has stopped:
    # a worker schedules once it is up, and each start_worker waits for that
    workers = [project.start_worker(env=env) for _ in range(WORKERS)]
    schedulers = [_scheduler(project, env) for _ in range(SCHEDULERS)]
    rng, kills = random.Random(3), 0
    ends = time.monotonic() + WINDOW_SECS
    pace = WINDOW_SECS / (KILLS + 1)
    while kills < KILLS:
        threading.Event().wait(max(0.0, min(pace, ends - time.monotonic())))  # pacing
        victim = schedulers.pop(rng.randrange(len(schedulers)))
        victim.send(signal.SIGKILL)
        victim.wait()
        kills += 1
        schedulers.append(_scheduler(project, env))
    threading.Event().wait(max(0.0, ends - time.monotonic()))  # the rest of the window
    for proc in [*workers, *schedulers]:
        proc.wait_for_output(STARTED_TEXT)  # its signal handlers are in: SIGTERM is a stop
    for proc in [*workers, *schedulers]:
        proc.send(signal.SIGTERM)
    for proc in [*workers, *schedulers]:
        assert proc.wait() == 0, proc.describe()
    ran_secs = time.monotonic() - began  # the window, and the stop a loaded machine drags out

    beats = _beats(project)
    settings = {name.removeprefix("NUVOM_").lower(): value for name, value in engine.items()}
    runtime = project.configure(**settings)
    jobs = [r for r in runtime.results.list_jobs(limit=1000) if r.func_name == "beat"]
    ticks = sorted(r.origin["tick"] for r in jobs if r.origin)
    ran = [r for r in jobs if r.status is JobStatus.SUCCESS]
    assert len(ticks) == len(set(ticks)) == len(jobs), "one job per tick, each naming it"
    assert len(beats) == len(ran), "no tick's job ran twice"
    assert WINDOW_SECS - 3 <= len(jobs) <= ran_secs + 2, f"{len(jobs)} runs in {ran_secs:.1f} s"
    assert {b - a for a, b in itertools.pairwise(ticks)} == {1.0}, "no tick missed, none drifts"
    assert kills == KILLS


SLOW_TASKS = """
import os
import time

from nuvom import task


@task(interval=1, overlap="skip")
def slow():
    began = time.time()
    time.sleep(3)
    fd = os.open("runs", os.O_WRONLY | os.O_APPEND | os.O_CREAT)
    try:
        os.write(fd, f"{began!r} {time.time()!r}\\n".encode())
    finally:
        os.close(fd)
"""


@posix_only
@pytest.mark.slow
@pytest.mark.timeout(120)
def test_overlap_skip_never_runs_two_at_once(project: Project) -> None:
    project.write("tasks.py", SLOW_TASKS)
    assert project.nuvom("discover", "tasks").returncode == 0
    workers = [project.start_worker("--workers", "4") for _ in range(2)]
    threading.Event().wait(12.0)  # the window the runs are looked at in, not a sync
    for proc in workers:
        proc.send(signal.SIGTERM)
    for proc in workers:
        assert proc.wait() == 0, proc.describe()

    runs = sorted(
        tuple(map(float, line.split())) for line in (project.root / "runs").read_text().splitlines()
    )
    assert len(runs) >= 2, "a 3 s task on a 1 s interval still runs, one after another"
    for (_, ended), (began, _) in itertools.pairwise(runs):
        assert began >= ended, "a tick ran while the previous tick's job still ran"
