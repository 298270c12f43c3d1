"""``nuvom`` entry point: the Typer app and its commands, each importing what it needs lazily.

Any ``NuvomError`` becomes one line on stderr: exit 2 for bad settings or
input, 1 for everything else. A traceback means a bug.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from nuvom.cli.output import OutputFormat, print_error

app = typer.Typer(
    name="nuvom",
    help="nuvom: a background task queue that needs no broker.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode="rich",
)
inspect_app = typer.Typer(help="Look closely at one thing.", no_args_is_help=True)
history_app = typer.Typer(help="What ran lately.", no_args_is_help=True)
testworker_app = typer.Typer(help="Run a job synchronously, without a queue.", no_args_is_help=True)
app.add_typer(inspect_app, name="inspect")
app.add_typer(history_app, name="history")
app.add_typer(testworker_app, name="runtestworker")
queue_app = typer.Typer(help="What the queues hold.", no_args_is_help=True)
app.add_typer(queue_app, name="queue")
dead_app = typer.Typer(
    help="Dead letters: records a claim set aside as undecodable, kept until you act.",
    no_args_is_help=True,
)
app.add_typer(dead_app, name="dead")

FormatOption = Annotated[
    OutputFormat, typer.Option("--format", "-f", help="table for people, json for scripts")
]
JobId = Annotated[str, typer.Argument(help="the job id, as .delay() returned it")]


@app.callback()
def _setup(ctx: typer.Context) -> None:
    if ctx.invoked_subcommand in ("discover", "list", "tasks"):
        return  # they read only NUVOM_MANIFEST_PATH, and build settings only when any are set
    from nuvom.cli.output import setup_cli_logging
    from nuvom.runtime import current

    setup_cli_logging(current().settings.log_level)


@app.command()
def runworker(
    workers: Annotated[
        int | None,
        typer.Option(
            "--workers",
            "-w",
            min=1,
            metavar="N",
            help="threads, processes or concurrent async jobs",
            show_default="NUVOM_MAX_WORKERS",
        ),
    ] = None,
    batch_size: Annotated[
        int | None,
        typer.Option(
            "--batch-size",
            min=1,
            metavar="N",
            help="jobs claimed per round trip",
            show_default="NUVOM_BATCH_SIZE",
        ),
    ] = None,
    queues: Annotated[
        str | None,
        typer.Option(
            "--queues",
            "-Q",
            metavar="NAMES",
            help="comma-separated queue names",
            show_default="all of them",
        ),
    ] = None,
    burst: Annotated[
        bool, typer.Option("--burst", help="exit once nothing is due and nothing runs")
    ] = False,
    pool: Annotated[
        str | None,
        typer.Option(
            "--pool",
            metavar="POOL",
            help="thread, process (hard timeouts) or async",
            show_default="NUVOM_WORKER_POOL, else thread",
        ),
    ] = None,
    max_tasks_per_child: Annotated[
        int | None,
        typer.Option(
            "--max-tasks-per-child", min=1, metavar="N", help="process pool: recycle after N jobs"
        ),
    ] = None,
    max_memory_per_child: Annotated[
        float | None,
        typer.Option(
            "--max-memory-per-child",
            min=1,
            metavar="MB",
            help="process pool: recycle above this RSS, in MB",
        ),
    ] = None,
    grace_secs: Annotated[
        float | None,
        typer.Option(
            "--grace-secs",
            min=0,
            metavar="SECS",
            help="time in-flight jobs get on shutdown",
            show_default="NUVOM_SHUTDOWN_GRACE_SECS",
        ),
    ] = None,
    hostname: Annotated[
        str | None,
        typer.Option(
            "--hostname",
            metavar="NAME",
            help="host part of the worker id",
            show_default="this machine's name",
        ),
    ] = None,
    dev: Annotated[
        bool,
        typer.Option("--dev", help="reload tasks when project files change (needs watchfiles)"),
    ] = False,
) -> None:
    """Run a worker: claim jobs and run them until CTRL+C (or, with --burst, until the queue is empty)."""
    from nuvom.cli.worker_cmd import run_worker

    code = run_worker(
        dev=dev,
        workers=workers,
        batch_size=batch_size,
        queues=queues,
        burst=burst,
        pool=pool,
        max_tasks_per_child=max_tasks_per_child,
        max_memory_per_child=max_memory_per_child,
        grace_secs=grace_secs,
        hostname=hostname,
    )
    raise typer.Exit(code)


@app.command()
def status(job_id: JobId, fmt: FormatOption = OutputFormat.table) -> None:
    """Print a job's result if it succeeded, else its status (and error)."""
    from nuvom.cli.jobs_cmd import show_status

    raise typer.Exit(show_status(job_id, fmt))


@inspect_app.command("job")
def inspect_job(job_id: JobId, fmt: FormatOption = OutputFormat.table) -> None:
    """Status, arguments, result, attempts, timings and traceback of one job."""
    from nuvom.cli.jobs_cmd import show_job

    show_job(job_id, fmt)


@inspect_app.command("workflow")
def inspect_workflow(workflow_id: JobId, fmt: FormatOption = OutputFormat.table) -> None:
    """A workflow's graph: each job's status, id and timings (the id of its last job)."""
    from nuvom.cli.workflow_cmd import show_workflow

    show_workflow(workflow_id, fmt)


@history_app.command("recent")
def history_recent(
    limit: Annotated[int, typer.Option("--limit", "-n", min=1, help="how many jobs")] = 20,
    status: Annotated[
        str | None, typer.Option("--status", "-s", help="only jobs in this status")
    ] = None,
    fmt: FormatOption = OutputFormat.table,
) -> None:
    """The most recently updated jobs, newest first."""
    from nuvom.cli.jobs_cmd import show_history

    show_history(limit, status, fmt)


@app.command()
def retry(job_id: JobId) -> None:
    """Enqueue a FAILED or CANCELLED job again (same id; its history is kept)."""
    from nuvom.cli.jobs_cmd import retry_one

    retry_one(job_id)


@app.command()
def cancel(job_id: JobId) -> None:
    """Cancel a job that is still waiting; a workflow's id cancels every member still waiting."""
    from nuvom.cli.jobs_cmd import cancel_one

    cancel_one(job_id)


@queue_app.command("stats")
def queue_stats(fmt: FormatOption = OutputFormat.table) -> None:
    """Pending, scheduled, running (with lease owners), failed and quarantined jobs per queue;
    which queues are paused, and the jobs waiting on a rate or concurrency limit, per task."""
    from nuvom.cli.queue_cmd import show_queue_stats

    show_queue_stats(fmt)


QueueName = Annotated[str, typer.Argument(help="The queue's name, as @task(queue=...) gives it.")]


@queue_app.command("pause")
def queue_pause(name: QueueName) -> None:
    """Stop every worker claiming from a queue; its waiting jobs stay (kept in the store)."""
    from nuvom.cli.queue_cmd import pause_queue

    pause_queue(name, paused=True)


@queue_app.command("resume")
def queue_resume(name: QueueName) -> None:
    """Let workers claim from a paused queue again."""
    from nuvom.cli.queue_cmd import pause_queue

    pause_queue(name, paused=False)


@dead_app.command("list")
def dead_list(fmt: FormatOption = OutputFormat.table) -> None:
    """Each quarantined record: its job id, queue, why it was set aside, when."""
    from nuvom.cli.queue_cmd import show_dead_letters

    show_dead_letters(fmt)


@dead_app.command("reinject")
def dead_reinject(job_id: JobId) -> None:
    """Put a dead letter back to wait once its cause is fixed (a signing key, say): it is
    decoded with today's settings and runs again under its id."""
    from nuvom.cli.queue_cmd import act_on_dead

    act_on_dead(job_id, reinject=True)


@dead_app.command("delete")
def dead_delete(job_id: JobId) -> None:
    """Delete a dead letter (the job's FAILED record stays in its history)."""
    from nuvom.cli.queue_cmd import act_on_dead

    act_on_dead(job_id, reinject=False)


@app.command()
def prune(
    older_than: Annotated[
        str, typer.Option("--older-than", help="age such as 30m, 12h, 7d")
    ] = "7d",
    status: Annotated[
        str | None, typer.Option("--status", "-s", help="only this final status")
    ] = None,
) -> None:
    """Delete finished jobs (and their attempts) last updated longer ago than --older-than."""
    from nuvom.cli.jobs_cmd import prune_jobs

    prune_jobs(older_than, status)


@app.command()
def workers(fmt: FormatOption = OutputFormat.table) -> None:
    """Workers the backend has heard from: live, or lost once their heartbeat is stale."""
    from nuvom.cli.workers_cmd import show_workers

    show_workers(fmt)


@app.command()
def config(fmt: FormatOption = OutputFormat.table) -> None:
    """The effective settings and where each came from."""
    from nuvom.cli.config_cmd import show_config

    show_config(fmt)


@testworker_app.command("run")
def runtestworker_run(
    job_file: Annotated[
        Path, typer.Argument(help='JSON such as {"func_name": "add", "args": [2, 3]}')
    ],
    fmt: FormatOption = OutputFormat.table,
) -> None:
    """Run one job from a JSON file in this process; exit 0 on success, 1 on failure."""
    from nuvom.cli.testworker import run_job_file

    raise typer.Exit(run_job_file(job_file, fmt))


@app.command()
def demo(
    jobs: Annotated[int, typer.Option("--jobs", "-n", min=1, help="sample jobs to enqueue")] = 300,
    workers: Annotated[int, typer.Option("--workers", "-w", min=1, help="worker threads")] = 4,
) -> None:
    """Enqueue sample jobs on the embedded store, run a worker on them, and show what happened."""
    from nuvom.cli.demo import run_demo

    run_demo(jobs, workers)


@app.command()
def dashboard(
    host: Annotated[
        str,
        typer.Option(
            "--host", metavar="ADDRESS", help="where to listen; off loopback a token is required"
        ),
    ] = "127.0.0.1",
    port: Annotated[
        int,
        typer.Option("--port", min=0, max=65535, metavar="PORT", help="TCP port (0: any free one)"),
    ] = 8181,
    token: Annotated[
        str | None,
        typer.Option(
            "--token",
            metavar="TOKEN",
            help="every request must carry it (cookie or Authorization: Bearer)",
            show_default="NUVOM_DASHBOARD_TOKEN",
        ),
    ] = None,
    read_only: Annotated[
        bool, typer.Option("--read-only", help="show everything, allow no action")
    ] = False,
) -> None:
    """Serve the web dashboard: queues, jobs, workers, schedules, workflows, and actions."""
    from nuvom.dashboard.run import run_dashboard

    raise typer.Exit(run_dashboard(host=host, port=port, token=token, read_only=read_only))


discover_app = typer.Typer(help="Find tasks by reading source (nothing is imported).", no_args_is_help=True)  # fmt: skip
list_app = typer.Typer(help="What the project declares.", no_args_is_help=True)
app.add_typer(discover_app, name="discover")
app.add_typer(list_app, name="list")
GlobOption = Annotated[list[str] | None, typer.Option(help="gitignore-style pattern; repeatable")]


@discover_app.command("tasks")
def discover_tasks(
    path: Annotated[
        Path | None,
        typer.Argument(help="project folder", show_default="the current one"),
    ] = None,
    include: GlobOption = None,
    exclude: GlobOption = None,
    check: Annotated[
        bool,
        typer.Option(
            "--check",
            help="for CI: exit 1 listing each task whose parameters changed against the "
            "manifest without a version bump (the manifest is not written)",
        ),
    ] = False,
    export: Annotated[
        Path | None,
        typer.Option(
            "--export",
            help="also write the task list (signatures, versions, options, schedules) here, "
            "for a worker to start from (NUVOM_MANIFEST_PATH) with no imports",
        ),
    ] = None,
    fmt: FormatOption = OutputFormat.table,
) -> None:
    """Scan the project with ast, update the manifest (NUVOM_MANIFEST_PATH), show what changed."""
    from nuvom.cli.discover_cmd import check_tasks
    from nuvom.cli.discover_cmd import discover_tasks as run

    if check:
        raise typer.Exit(check_tasks(path, include or [], exclude or [], fmt))
    raise typer.Exit(run(path, include or [], exclude or [], fmt, export))


@list_app.command("tasks")
def list_tasks(
    tag: Annotated[
        list[str] | None, typer.Option("--tag", "-t", help="only tasks with this tag; repeatable")
    ] = None,
    refresh: Annotated[bool, typer.Option("--refresh", help="re-scan changed files first")] = False,
    fmt: FormatOption = OutputFormat.table,
) -> None:
    """Tasks from the manifest alone: name, module, tags, description, options."""
    from nuvom.cli.discover_cmd import list_tasks as run

    raise typer.Exit(run(tag or [], fmt, refresh))


# `nuvom tasks list`, the spelling of the 0.5 release notes, still works; the help shows one.
tasks_app = typer.Typer(help="Same as `nuvom list tasks`.", no_args_is_help=True)
app.add_typer(tasks_app, name="tasks", hidden=True)
tasks_app.command("list", help="Same as `nuvom list tasks`.")(list_tasks)


schedules_app = typer.Typer(help="Periodic jobs: list, pause, resume, remove, trigger.", no_args_is_help=True)  # fmt: skip
app.add_typer(schedules_app, name="schedules")
ScheduleId = Annotated[str, typer.Argument(help="the schedule's id, as schedules list shows it")]


@schedules_app.command("list")
def schedules_list(fmt: FormatOption = OutputFormat.table) -> None:
    """Every schedule: task, args, cron or interval, zone, next run, last run and its job."""
    from nuvom.cli.schedules_cmd import list_schedules

    list_schedules(fmt)


@schedules_app.command("pause")
def schedules_pause(schedule_id: ScheduleId) -> None:
    """Stop firing a schedule's ticks until it is resumed."""
    from nuvom.cli.schedules_cmd import pause_schedule

    pause_schedule(schedule_id, True)


@schedules_app.command("resume")
def schedules_resume(schedule_id: ScheduleId) -> None:
    """Fire a paused schedule's ticks again (missed ones by its catchup policy)."""
    from nuvom.cli.schedules_cmd import pause_schedule

    pause_schedule(schedule_id, False)


@schedules_app.command("remove")
def schedules_remove(schedule_id: ScheduleId) -> None:
    """Delete a schedule; the jobs it fired are kept."""
    from nuvom.cli.schedules_cmd import remove_schedule

    remove_schedule(schedule_id)


@schedules_app.command("trigger")
def schedules_trigger(schedule_id: ScheduleId) -> None:
    """Enqueue one run of a schedule now, outside its timetable; prints the job id."""
    from nuvom.cli.schedules_cmd import trigger_schedule

    trigger_schedule(schedule_id)


@app.command()
def runscheduler() -> None:
    """Fire due schedule ticks as jobs until CTRL+C, running none (every worker fires them too)."""
    from nuvom.cli.schedules_cmd import run_scheduler

    raise typer.Exit(run_scheduler())


jobs_app = typer.Typer(help="Waiting jobs, in bulk.", no_args_is_help=True)
app.add_typer(jobs_app, name="jobs")


@jobs_app.command("upgrade")
def jobs_upgrade(
    task_name: Annotated[str, typer.Argument(metavar="TASK", help="the task's name")],
    from_version: Annotated[
        int, typer.Option("--from", min=1, help="the version the waiting jobs carry")
    ],
) -> None:
    """Move a task's waiting jobs of an old version to its current one (those whose
    arguments no longer fit its signature are listed and left as they are)."""
    from nuvom.cli.jobs_cmd import upgrade

    raise typer.Exit(upgrade(task_name, from_version))


db_app = typer.Typer(help="nuvom's tables on PostgreSQL.", no_args_is_help=True)
app.add_typer(db_app, name="db")


@db_app.command("migrate")
def db_migrate() -> None:
    """Create or upgrade nuvom's schema (NUVOM_POSTGRES_DSN, NUVOM_POSTGRES_SCHEMA)."""
    from nuvom.cli.db_cmd import migrate_schema

    migrate_schema()


@app.command("migrate-queue")
def migrate_queue(
    source: Annotated[
        str,
        typer.Option("--from", help="backend the jobs wait in now: sqlite, file, postgres, redis"),
    ],
    destination: Annotated[str, typer.Option("--to", help="backend to move them to")],
) -> None:
    """Move pending and scheduled jobs to another backend, without losing or duplicating any."""
    from nuvom.cli.db_cmd import migrate_queue as move

    move(source.strip().lower(), destination.strip().lower())


plugin_app = typer.Typer(help="Configured plugins; test or start one.", no_args_is_help=True)
app.add_typer(plugin_app, name="plugin")


@plugin_app.command("status")
def plugin_status(fmt: FormatOption = OutputFormat.table) -> None:
    """Every configured plugin: where it comes from, version, what it provides, loaded or why not."""
    from nuvom.cli.plugin_cmd import show_status

    raise typer.Exit(show_status(fmt))


@plugin_app.command("test")
def plugin_test(
    spec: Annotated[str, typer.Argument(help='the plugin, as "module:Class"')],
    fmt: FormatOption = OutputFormat.table,
) -> None:
    """Import a plugin, check its contract, start and stop it, and run the backend checks on
    every backend it registers. Exit 0 when all pass, 1 otherwise."""
    from nuvom.cli.plugin_cmd import run_plugin_test

    raise typer.Exit(run_plugin_test(spec, fmt))


@plugin_app.command("scaffold")
def plugin_scaffold(
    name: Annotated[str, typer.Argument(help="the plugin's name (a Python module name)")],
    kind: Annotated[
        str, typer.Option("--kind", help="result_backend, queue_backend or monitoring")
    ] = "result_backend",
    directory: Annotated[Path, typer.Option("--dir", help="where to write the files")] = Path(),
    force: Annotated[bool, typer.Option("--force", help="overwrite existing files")] = False,
) -> None:
    """Write a working plugin module and its test; `nuvom plugin test` passes on it as written."""
    from nuvom.cli.plugin_cmd import scaffold

    scaffold(name, kind, directory, force)


def main() -> None:
    from nuvom.errors import ConfigError, NuvomError, SerializationError

    try:
        app(prog_name="nuvom")
    except (ConfigError, SerializationError) as exc:
        print_error(str(exc))
        sys.exit(2)
    except NuvomError as exc:
        print_error(str(exc))
        sys.exit(1)
