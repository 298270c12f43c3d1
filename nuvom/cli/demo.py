"""``nuvom demo``: sample jobs on the embedded store, a worker with a live progress bar, a summary."""

from __future__ import annotations

import threading
import time

from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from nuvom.cli.output import console


def run_demo(jobs: int, workers: int) -> None:
    from nuvom.demo import tasks
    from nuvom.job import JobStatus
    from nuvom.records import Outcome
    from nuvom.runtime import current
    from nuvom.worker import Worker

    runtime = current()
    settings = runtime.settings
    where = escape(  # shown inside markup below: a path may hold "[...]"
        str(
            settings.sqlite_db_path.resolve()
            if settings.result_backend == "sqlite"
            else settings.result_backend
        )
    )
    console.print(
        f"[bold]nuvom demo[/]: {jobs} jobs on the [cyan]{escape(settings.queue_backend)}[/] queue, results in [cyan]{where}[/]"
    )

    flaky = max(1, jobs // 20)
    hashing = jobs // 3
    adds = jobs - flaky - hashing
    started = time.perf_counter()
    enqueued = tasks.add.map([(i, i) for i in range(adds)])
    enqueued += tasks.checksum.map(range(hashing))
    enqueued += tasks.flaky.map(range(flaky))
    enqueue_secs = time.perf_counter() - started
    console.print(
        f"enqueued {len(enqueued)} jobs in {enqueue_secs * 1000:.1f} ms (one transaction per .map)"
    )

    done = threading.Semaphore(0)
    counts = {"SUCCESS": 0, "FAILED": 0, "RETRYING": 0}
    retried: list[str] = []  # ids of jobs that needed a retry: the ones worth inspecting

    def on_outcome(outcome: Outcome) -> None:
        counts[outcome.status.value] = counts.get(outcome.status.value, 0) + 1
        if outcome.status is JobStatus.RETRYING:
            retried.append(outcome.job.id)
        else:
            done.release()

    worker = Worker(workers=workers, on_outcome=on_outcome)
    thread = threading.Thread(target=worker.run, kwargs={"burst": True}, daemon=True)
    begin = time.perf_counter()
    thread.start()
    finished = 0
    with Progress(
        TextColumn("[bold]running"), BarColumn(), MofNCompleteColumn(), TextColumn("{task.fields[detail]}"),
        TimeElapsedColumn(), console=console, transient=False,
    ) as progress:  # fmt: skip
        bar = progress.add_task("jobs", total=len(enqueued), detail="")
        try:
            while finished < len(enqueued) and thread.is_alive():
                if done.acquire(timeout=0.1):
                    finished += 1
                    while done.acquire(blocking=False):
                        finished += 1
                detail = f"{counts['SUCCESS']} ok, {counts['RETRYING']} retried, {counts['FAILED']} failed"
                progress.update(bar, completed=finished, detail=detail)
        except KeyboardInterrupt:
            worker.stop()
        thread.join()
    elapsed = time.perf_counter() - begin
    console.print(
        f"[green]done[/]: {counts['SUCCESS']} succeeded, {counts['FAILED']} failed, "
        f"{counts['RETRYING']} retried, in {elapsed:.2f} s = [bold]{finished / elapsed:,.0f} jobs/s[/] "
        f"with {workers} threads"
    )
    if not runtime.results.shared_across_processes:
        console.print(f"results were kept in this process only ({where}); they are gone now")
        return
    # Each suggestion shows something once the demo has run. Every job ends SUCCESS (a
    # flaky one on its second attempt), so nothing is left RETRYING, FAILED or waiting:
    # the retried job's attempts are where the failure shows.
    retried_id = retried[0] if retried else enqueued[-1].id
    console.print(f"results are in [cyan]{where}[/]. Look around:")
    for command in (
        "nuvom history recent --limit 5",
        f"nuvom status {enqueued[0].id}",
        f"nuvom inspect job {retried_id}",
        "nuvom history recent --status SUCCESS --limit 3 --format json",
    ):
        console.print(f"  {command}", highlight=False)
