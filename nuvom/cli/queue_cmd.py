"""``nuvom queue stats|pause|resume``: what each queue holds, per backend, for people and for
scripts; and pausing a queue for every worker. ``nuvom dead list|reinject|delete``: the
records claims quarantined."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from rich.markup import escape

from nuvom.cli.jobs_cmd import reading, store_place
from nuvom.cli.output import Col, OutputFormat, console, fail, fit_table, print_json
from nuvom.limits import VERSION_TAG
from nuvom.store_view import TaskInfo, hold_text, known_tasks
from nuvom.store_view import collect_stats as stats_of

if TYPE_CHECKING:
    from nuvom.runtime import Runtime

_COUNTS = ("pending", "scheduled", "held", "parked", "running", "expired", "failed",
           "quarantined")  # fmt: skip
# At 80 columns "expired" (leases run out, reclaimed soon) gives way first, then "parked"
# (jobs of a workflow waiting for others to succeed), then "held" (by a limit).
_DROPS = {"expired": 1, "parked": 2, "held": 3}
_COLUMNS = (
    Col("queue", fit="cut"),
    *(Col(key, justify="right", drop=_DROPS.get(key, 0)) for key in _COUNTS),
    Col("leased by", fit="cut"),
)


def collect_stats(runtime: Runtime | None = None) -> dict[str, Any]:
    """The counts ``nuvom queue stats`` shows, as plain data (``nuvom.store_view``, which
    the dashboard shows too); with no ``runtime``, read from the configured backends opened
    read-only (nothing is created where there is no store)."""
    if runtime is None:
        with reading() as looking:
            return stats_of(looking)
    return stats_of(runtime)


def _owners_text(owners: dict[str, int]) -> str:
    return ", ".join(f"{escape(owner)} ({count})" for owner, count in owners.items()) or "-"


def show_queue_stats(fmt: OutputFormat) -> None:
    with reading() as runtime:
        data = collect_stats(runtime)
        tasks = known_tasks(runtime)  # to say which limit holds a job back ("rate limit 2/m")
        queue_place = store_place(runtime.settings, "queue")
        result_place = store_place(runtime.settings, "result")
    if fmt is OutputFormat.json:
        print_json(data)
        return
    if queue_place.missing and result_place.missing:
        console.print(escape(f"no jobs yet {queue_place.note()}"), highlight=False)
        return
    title = f"queues on {data['queue_backend']} in {queue_place.label}"
    if result_place.label != queue_place.label:
        title += f" (results: {data['result_backend']} in {result_place.label})"
    rows = [
        [
            escape(row["queue"]) + (" [yellow](paused)[/]" if row["paused"] else ""),
            *("-" if row[key] is None else str(row[key]) for key in _COUNTS),
            _owners_text(row["lease_owners"]),
        ]
        for row in data["queues"]
    ]
    totals = data["totals"]
    rows.append(
        [
            "[bold]total[/]",
            *("-" if totals[key] is None else str(totals[key]) for key in _COUNTS),
            "",
        ]
    )
    console.print(fit_table(escape(title), _COLUMNS, rows, title_justify="left"))
    for task, tags in data["held_by_task"].items():
        waits = "; ".join(_held_text(tag, count, tasks) for tag, count in tags.items())
        console.print(escape(f"held back: {task}: {waits}"), highlight=False)


def _held_text(tag: str, count: int, tasks: list[TaskInfo]) -> str:
    what = hold_text(tag, tasks)
    return f"{count} {what}" if tag.startswith(VERSION_TAG) else f"{count} held by its {what}"


def pause_queue(name: str, *, paused: bool) -> None:
    """Pause or resume ``name`` in the store every worker claims from."""
    from nuvom.errors import BackendError
    from nuvom.runtime import current

    queue = current().queue
    try:
        changed = queue.pause_queue(name, paused)
    except BackendError as exc:
        raise fail(str(exc)) from None
    waiting = queue.qsize(name)
    if paused:
        what = "paused: workers claim nothing from it" if changed else "was already paused"
        note = f"; its {waiting} waiting job(s) stay" if waiting else ""
    else:
        what = "resumed: workers claim from it again" if changed else "was not paused"
        note = f" ({waiting} job(s) waiting)" if waiting and changed else ""
    console.print(escape(f"queue {name} {what}{note}"), highlight=False)


_DEAD_COLUMNS = (
    Col("job id", fit="keep"),
    Col("queue", fit="cut"),
    Col("quarantined", drop=1),
    Col("reason", fit="cut"),
)


def show_dead_letters(fmt: OutputFormat) -> None:
    import time

    from nuvom.wording import relative

    with reading() as runtime:
        letters = runtime.queue.dead_letters(limit=1000)
    now = time.time()
    if fmt is OutputFormat.json:
        print_json([{"id": d.id, "queue": d.queue, "reason": d.reason,
                     "quarantined_at": d.quarantined_at, "preview": d.preview}
                    for d in letters])  # fmt: skip
        return
    if not letters:
        console.print("no dead letters: no claim has set a record aside", highlight=False)
        return
    rows = [
        [escape(d.id), escape(d.queue), relative(d.quarantined_at, now), escape(d.reason)]
        for d in letters
    ]
    console.print(fit_table(f"{len(letters)} dead letter(s)", _DEAD_COLUMNS, rows,
                            title_justify="left"))  # fmt: skip


def act_on_dead(job_id: str, *, reinject: bool) -> None:
    """Re-inject or delete one dead letter, saying what happened or why not."""
    from nuvom.errors import NuvomError
    from nuvom.runtime import current
    from nuvom.store_view import forget_dead
    from nuvom.store_view import reinject as put_back

    runtime = current()
    try:
        if reinject:
            job = put_back(runtime, job_id)
        else:
            forget_dead(runtime, job_id)
    except NuvomError as exc:
        raise fail(str(exc)) from None
    what = f"re-injected: {job.func_name} waits in {job.queue} again" if reinject else "deleted"
    console.print(escape(f"dead letter {job_id} {what}"), highlight=False)
