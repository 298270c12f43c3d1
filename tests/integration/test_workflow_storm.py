"""A chord under a kill storm: 1,000 members, 5% failing once then succeeding on retry,
three workers with one SIGKILLed every 1-3 s and replaced while the members run.

The body is enqueued by the settle of the last member, in the same atomic step, so
however often members are delivered again it runs once, with all 1,000 results in
member order. ``NUVOM_STORM_RUNS=10`` repeats it (the closing note's 10 of 10).
"""

from __future__ import annotations

import os
import random
import signal
import time
from collections.abc import Iterator

import pytest

from nuvom.errors import JobFailed
from nuvom.job import FINAL_STATUSES, JobStatus

from .helpers import STARTED_TEXT, Proc, Project, posix_only, wait_for
from .servers import engine_env

MEMBERS = 1_000
WORKERS = 3
LEASE_SECS = 3.0
KILL_EVERY_SECS = (1.0, 3.0)
STORM_LIMIT_SECS = 40.0  # kills stop once every member ended, or after this
SETTLE_WITHIN_SECS = 90.0
RUNS = int(os.environ.get("NUVOM_STORM_RUNS", "1"))

TASKS = """
import os
import time

from nuvom import task


# Lost deliveries use up retries like failures do (nuvom/execution/policies.py): a
# member prefetched by three workers killed in turn, then failing once, would fail for
# good with retries=3. The storm tests delivery, not that policy: retries to spare.
@task(retries=8, retry_delay_secs=0)
def member(i, folder):
    if i % 20 == 0:  # 5% fail their first execution, then succeed on a retry
        try:
            os.close(os.open(os.path.join(folder, f"failed-{i}"), os.O_CREAT | os.O_EXCL))
        except FileExistsError:
            pass
        else:
            raise RuntimeError(f"member {i} fails once")
    time.sleep(0.08)
    return i


@task
def body(results, folder):
    fd = os.open(os.path.join(folder, "body-ran"), os.O_WRONLY | os.O_APPEND | os.O_CREAT)
    try:
        os.write(fd, b"ran\\n")
    finally:
        os.close(fd)
    return [len(results), sum(results), results == list(range(len(results)))]
"""


@pytest.fixture(params=["sqlite", "file", "postgres", "redis"])
def engine(request: pytest.FixtureRequest) -> Iterator[dict[str, str]]:
    """The settings of one engine (queue and results on it), as environment variables."""
    with engine_env(request.param) as env:
        yield env


@posix_only
@pytest.mark.slow
@pytest.mark.timeout(300 * RUNS)
@pytest.mark.parametrize("run", range(RUNS))
def test_a_chords_body_runs_once_with_every_result_through_a_kill_storm(
    project: Project, engine: dict[str, str], run: int
) -> None:
    project.write("tasks.py", TASKS)
    settings = {name.removeprefix("NUVOM_").lower(): value for name, value in engine.items()}
    runtime = project.configure(**settings)
    env = dict(project.env, **engine, NUVOM_LEASE_SECS=str(LEASE_SECS))
    folder = str(project.root)
    from nuvom.workflow import chord, signature

    handle = chord(
        [signature("member", i, folder) for i in range(MEMBERS)], signature("body", folder)
    ).delay()
    members = list((handle.job.origin or {})["after"])
    workers: list[Proc] = [project.start_worker(env=env) for _ in range(WORKERS)]
    rng = random.Random(run)
    killed = 0
    left = set(members)

    def members_done() -> bool:
        for job_id in list(left):
            if runtime.results.get_status(job_id) in FINAL_STATUSES:
                left.discard(job_id)
        return not left

    storm_ends = time.monotonic() + STORM_LIMIT_SECS
    while not members_done() and time.monotonic() < storm_ends:
        time.sleep(rng.uniform(*KILL_EVERY_SECS))  # the storm's pace, not a sync
        victim = workers.pop(rng.randrange(len(workers)))
        victim.send(signal.SIGKILL)
        victim.wait()
        killed += 1
        workers.append(project.start_worker(env=env, wait=False))

    try:
        outcome = handle.get(timeout=SETTLE_WITHIN_SECS)
    except JobFailed:
        failed = handle.failed_member()
        attempts = None if failed is None else failed.attempts
        pytest.fail(f"a member failed for good after {attempts} attempts: {failed}")
    assert outcome == [MEMBERS, sum(range(MEMBERS)), True]
    for worker in workers:
        worker.wait_for_output(STARTED_TEXT)
        worker.send(signal.SIGTERM)
    for worker in workers:
        assert worker.wait() == 0, worker.describe()

    assert killed >= 2, "the storm killed workers while members ran"
    assert (project.root / "body-ran").read_text().count("ran") == 1, "the body ran once"
    statuses = {runtime.results.get_status(job_id) for job_id in members}
    assert statuses == {JobStatus.SUCCESS}
    retried = sum(1 for name in os.listdir(project.root) if name.startswith("failed-"))
    assert retried == MEMBERS // 20
    wait_for(lambda: runtime.queue.qsize() == 0, timeout=10, what="the queue to drain")
