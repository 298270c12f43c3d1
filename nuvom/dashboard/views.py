"""The dashboard's pages: each a URL a person can bookmark (filters in the query string),
its live part re-read from the same URL (``HX-Request``: the part alone) when the page's
event stream (``/api/events``, ``nuvom.dashboard.events``) tells of a change.

Reads go through ``nuvom.store_view``, actions through ``nuvom.dashboard.actions``
(the JSON API calls the same ones); a form's POST answers with a redirect back and a
sentence saying what it did.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, urlencode

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import BaseRoute, Route

from nuvom.dashboard import actions
from nuvom.dashboard.app import error_page, redirect, render
from nuvom.dashboard.charts import activity_chart, depth_bars, run_times, workflow_graph
from nuvom.dashboard.filters import JobFilter, JobPage, page_of
from nuvom.errors import NuvomError
from nuvom.job import JobStatus
from nuvom.limits import VERSION_TAG
from nuvom.store_view import (
    RETRYABLE_STATUSES,
    WAITING_STATUSES,
    NotFound,
    Refused,
    collect_stats,
    hold_text,
    known_tasks,
    last_hour,
    schedule_of,
    waiting_on,
    workflow_of,
)
from nuvom.wording import timetable

if TYPE_CHECKING:
    from nuvom.backends.contract import Activity
    from nuvom.records import JobRecord, WorkerInfo
    from nuvom.runtime import Runtime

DEPENDENCIES_SHOWN = 20  # of the jobs one job waits for, on its page
WORKFLOWS_SCANNED = 500  # recent job records /workflows looks through for workflows


def _runtime() -> Runtime:
    from nuvom.runtime import current

    return current()


def _who(request: Request) -> str:
    return request.client.host if request.client else "?"


def _live(request: Request) -> bool:
    return bool(request.headers.get("hx-request"))


def _page(request: Request, name: str, context: dict[str, Any]) -> Response:
    """The page ``name``, or for htmx's re-read its live part (``_<name>``) alone."""
    return render(request, f"_{name}" if _live(request) else name, context)


async def _act(
    request: Request,
    back: str,
    step: Callable[[dict[str, str]], actions.Done],
    *,
    refused: str | None = None,
) -> Response:
    """Run an action from a form (in a thread: backends block) and go back with its sentence:
    to the form's ``next``, else ``back`` (``refused`` when it was refused, if given)."""
    form = await request.form()
    fields = {key: value for key, value in form.items() if isinstance(value, str)}
    try:
        done = await run_in_threadpool(step, fields)
    except NuvomError as exc:
        return redirect(_local(fields.get("next")) or refused or back, str(exc), "error")
    return redirect(_local(fields.get("next")) or back, done.message)


def _local(target: str | None) -> str | None:
    """A ``next`` address only if it stays on this dashboard (no open redirect)."""
    if target and target.startswith("/") and not target.startswith("//"):
        return target
    return None


# -- overview -------------------------------------------------------------------------------------
def overview(request: Request) -> Response:
    runtime = _runtime()
    now = runtime.clock.time()
    stats = collect_stats(runtime)
    problems = []
    try:
        activity: Activity | None = last_hour(runtime)
    except NuvomError as exc:  # a plugin's result backend that keeps no history
        activity, problems = None, [str(exc)]
    workers = runtime.queue.list_workers()
    context = {
        "nav": "overview",
        "stats": stats,
        "counts": request.app.state.counts.get(),
        "chart": activity_chart(activity) if activity is not None else None,
        "run_times": run_times(activity) if activity is not None else [],
        "depth": depth_bars(stats["queues"]),
        "live_workers": sum(1 for w in workers if not w.is_lost(now)),
        "lost_workers": sum(1 for w in workers if w.is_lost(now)),
        "records_workers": runtime.queue.records_workers,
        "problems": problems,
        "statuses": [s.value for s in JobStatus],
    }
    return _page(request, "overview.html", context)


# -- jobs ---------------------------------------------------------------------------------------
def _job_filters(request: Request) -> tuple[JobFilter, str | None]:
    try:
        return JobFilter.from_params(request.query_params), None
    except Refused as exc:
        return JobFilter(), str(exc)


def jobs(request: Request) -> Response:
    flt, problem = _job_filters(request)
    if problem is None and any(not value for _, value in request.query_params.multi_items()):
        # The filter form sends its empty fields too: the address to bookmark has none.
        return RedirectResponse(_jobs_url(flt), status_code=303)
    runtime = _runtime()
    tasks = known_tasks(runtime)
    page = None
    if problem is None:
        try:
            query = flt.query(tasks, runtime.clock.time(), limit=flt.limit + 1)
            page = page_of(runtime.results.find_jobs(query), flt.limit)
        except NuvomError as exc:
            problem = str(exc)
    queues = sorted({row.queue for row in runtime.queue.queue_stats()} - {"*"})
    context = {
        "nav": "jobs",
        "filter": flt,
        "page": page,
        "problem": problem,
        "tasks": tasks,
        "tags": sorted({tag for task in tasks for tag in task.tags}),
        "queues": queues,
        "statuses": [s.value for s in JobStatus],
        "older_url": _jobs_url(flt, before=page.older) if page and page.older else None,
        "newest_url": _jobs_url(flt, before="") if flt.before else None,
        "filter_fields": flt.params(before=""),
    }
    if page is not None and not flt.before:  # the first page tells how many jobs changed since
        context["new_url"] = _new_url(flt, page, runtime.clock.time())
        context["events_url"] = "/api/events" + (f"?{urlencode({'queue': flt.queue})}"
                                                  if flt.queue else "")  # fmt: skip
    return render(request, "jobs.html", context, 400 if problem and page is None else 200)


NEW_COUNTED = 1000  # most changed jobs the jobs page's notice counts ("1,000+ new")


def _new_url(flt: JobFilter, page: JobPage, now: float) -> str:
    """Where the first page's notice asks how many jobs matching its filter changed since
    it was drawn: after its newest row (or, with none, since now)."""
    top = page.records[0] if page.records else None
    mark = f"{top.updated_at or 0.0!r}:{top.id}" if top else f"{now!r}:"
    return "/jobs/new?" + urlencode({**flt.params(before=""), "after": mark})


def jobs_new(request: Request) -> Response:
    """The jobs page's notice: "N new — show", N the jobs matching its filter that changed
    after the row it was drawn with (``after=UPDATED_AT:ID``); empty when none did."""
    from dataclasses import replace

    runtime = _runtime()
    params = {k: v for k, v in request.query_params.items() if k != "after"}
    at, _, top_id = request.query_params.get("after", "").partition(":")
    try:
        flt = JobFilter.from_params(params)
        mark = (float(at), top_id)
    except (Refused, ValueError):
        return render(request, "_jobs_new.html", {"count": 0, "show_url": "/jobs"})
    query = flt.query(known_tasks(runtime), runtime.clock.time(), limit=NEW_COUNTED + 1)
    query = replace(query, since=max(query.since or mark[0], mark[0]))
    try:
        found = runtime.results.find_jobs(query)
    except NuvomError:
        found = []
    count = sum(1 for r in found if ((r.updated_at or 0.0), r.id) > mark)
    context = {"count": count, "capped": count > NEW_COUNTED, "limit": NEW_COUNTED,
               "show_url": _jobs_url(flt, before="")}  # fmt: skip
    return render(request, "_jobs_new.html", context)


def _jobs_url(flt: JobFilter, **changes: Any) -> str:
    params = flt.params(**changes)
    return "/jobs" + (f"?{urlencode(params)}" if params else "")


def _bulk_plan(request: Request, params: Any) -> tuple[JobFilter, list[str], Any]:
    flt = JobFilter.from_params(params)
    ids = [v for v in params.getlist("id") if v] if hasattr(params, "getlist") else []
    action = params.get("action", "")
    runtime = _runtime()
    query = flt.query(known_tasks(runtime), runtime.clock.time(), limit=1000)
    plan = actions.bulk_plan(action, query=query, ids=ids)
    return flt, ids, plan


def bulk_review(request: Request) -> Response:
    """The dry run of a bulk action: how many jobs it would take, and a button to do it."""
    try:
        flt, ids, plan = _bulk_plan(request, request.query_params)
    except NuvomError as exc:
        return error_page(request, exc)
    context = {"nav": "jobs", "filter": flt, "ids": ids, "plan": plan,
               "back": _jobs_url(flt, before=""), "limit": actions.BULK_LIMIT,
               "filter_fields": flt.params(before="")}  # fmt: skip
    return render(request, "bulk.html", context)


async def bulk_run(request: Request) -> Response:
    form = await request.form()

    def run() -> tuple[str, actions.Done]:
        flt, _, plan = _bulk_plan(request, form)
        return _jobs_url(flt, before=""), actions.bulk(plan, who=_who(request))

    try:
        back, done = await run_in_threadpool(run)
    except NuvomError as exc:
        return redirect("/jobs", str(exc), "error")
    return redirect(back, done.message)


def job(request: Request) -> Response:
    runtime = _runtime()
    job_id = request.path_params["job_id"]
    record = runtime.results.get_full(job_id)
    if record is None:
        return error_page(request, NotFound(f"no job with id {job_id!r}"))
    facts = job_facts(runtime, record)
    return _page(request, "job.html", {"nav": "jobs", **facts})


def job_facts(runtime: Runtime, record: JobRecord) -> dict[str, Any]:
    """What the job page shows besides the record: why it waits, what it waits for, what
    it belongs to, what may be done to it."""
    origin = record.origin or {}
    after = [dep for dep in origin.get("after", ()) if isinstance(dep, str)]
    waits_for = [(dep, runtime.results.get_status(dep)) for dep in after[:DEPENDENCIES_SHOWN]]
    workflow = workflow_of(record)
    return {
        "job": record,
        "waiting_on": waiting_on(runtime, record),
        "waits_for": waits_for,
        "waits_for_more": max(0, len(after) - DEPENDENCIES_SHOWN),
        "workflow": workflow,
        "schedule": schedule_of(record),
        "tick": origin.get("tick"),
        "can_retry": record.status in RETRYABLE_STATUSES,
        # a workflow's last job waits too while members wait: cancelling it cancels them all
        "can_cancel": record.status in WAITING_STATUSES,
        "can_delete": record.status.is_final,
        "final": record.status.is_final,
    }


async def job_retry(request: Request) -> Response:
    job_id = request.path_params["job_id"]
    return await _act(request, f"/jobs/{quote(job_id)}",
                      lambda f: actions.retry_job(job_id, who=_who(request)))  # fmt: skip


async def job_cancel(request: Request) -> Response:
    job_id = request.path_params["job_id"]
    return await _act(request, f"/jobs/{quote(job_id)}",
                      lambda f: actions.cancel_job(job_id, who=_who(request)))  # fmt: skip


async def job_delete(request: Request) -> Response:
    job_id = request.path_params["job_id"]
    return await _act(request, "/jobs", lambda f: actions.delete_job(job_id, who=_who(request)),
                      refused=f"/jobs/{quote(job_id)}")  # fmt: skip


async def jobs_prune(request: Request) -> Response:
    return await _act(request, "/jobs", lambda f: actions.prune(
        f.get("older_than", ""), f.get("status") or None, who=_who(request)))  # fmt: skip


# -- queues ---------------------------------------------------------------------------------------
def queues(request: Request) -> Response:
    runtime = _runtime()
    stats = collect_stats(runtime)
    listed = {row["queue"] for row in stats["queues"]}
    for name in stats["paused"]:  # a queue paused before any job was in it
        if name not in listed:
            stats["queues"].append(_empty_row(name))
    stats["queues"].sort(key=lambda row: row["queue"])
    tasks = known_tasks(runtime)
    holds = []
    for task, tags in stats["held_by_task"].items():
        for tag, count in tags.items():
            version = None
            if tag.startswith(VERSION_TAG):
                version = tag.rpartition(":")[2]
            holds.append({"task": task, "tag": tag, "count": count,
                          "what": hold_text(tag, tasks), "version": version})  # fmt: skip
    context = {"nav": "queues", "stats": stats, "holds": holds,
               "keeps_limits": runtime.queue.keeps_limits,
               "describe_hold": lambda tag: hold_text(tag, tasks)}  # fmt: skip
    return _page(request, "queues.html", context)


def _empty_row(name: str) -> dict[str, Any]:
    return {"queue": name, "pending": 0, "scheduled": 0, "parked": 0, "running": 0,
            "expired": 0, "failed": None, "quarantined": 0, "held": 0, "held_by": {},
            "paused": True, "lease_owners": {}}  # fmt: skip


async def queue_pause(request: Request) -> Response:
    name = request.path_params["queue"]
    return await _act(
        request, "/queues", lambda f: actions.pause_queue(name, True, who=_who(request))
    )


async def queue_pause_named(request: Request) -> Response:
    """Pause a queue by a typed name (one no job is in yet, say)."""
    return await _act(request, "/queues", lambda f: actions.pause_queue(
        _required(f, "queue"), True, who=_who(request)))  # fmt: skip


async def queue_resume(request: Request) -> Response:
    name = request.path_params["queue"]
    return await _act(
        request, "/queues", lambda f: actions.pause_queue(name, False, who=_who(request))
    )


def purge_review(request: Request) -> Response:
    """The page that asks for the queue's name before purging it."""
    runtime = _runtime()
    name = request.path_params["queue"]
    row = next((r for r in collect_stats(runtime)["queues"] if r["queue"] == name), None)
    if row is None:
        return error_page(request, NotFound(f"no queue named {name!r} holds jobs"))
    return render(request, "purge.html", {"nav": "queues", "row": row,
                                          "pattern": _pattern_of(name)})  # fmt: skip


async def queue_purge(request: Request) -> Response:
    name = request.path_params["queue"]
    back = f"/queues/{quote(name, safe='')}/purge"
    form = await request.form()
    confirm = form.get("confirm", "")
    try:
        done = await run_in_threadpool(
            actions.purge_queue,
            name,
            confirm if isinstance(confirm, str) else "",
            who=_who(request),
        )
    except NuvomError as exc:
        return redirect(back, str(exc), "error")
    return redirect("/queues", done.message)


def _pattern_of(text: str) -> str:
    """An HTML ``pattern`` matching ``text`` exactly (the browser's own check, before ours)."""
    return "".join("\\" + c if c in "^$\\.*+?()[]{}|/" else c for c in text)


def _required(fields: dict[str, str], name: str) -> str:
    value = fields.get(name, "").strip()
    if not value:
        raise Refused(f"{name} is required")
    return value


async def task_upgrade(request: Request) -> Response:
    task = request.path_params["task"]

    def step(fields: dict[str, str]) -> actions.Done:
        try:
            version = int(fields.get("from", ""))
        except ValueError:
            raise Refused("from: the version the waiting jobs carry (a number)") from None
        return actions.upgrade_jobs(task, version, who=_who(request))

    return await _act(request, "/queues", step)


@dataclass(frozen=True, slots=True)
class WorkerRow:
    info: WorkerInfo
    lost: bool
    age: float  # seconds since its last heartbeat
    running: int  # jobs it holds a lease on now


# -- workers, schedules ---------------------------------------------------------------------------
def workers(request: Request) -> Response:
    runtime = _runtime()
    now = runtime.clock.time()
    found = runtime.queue.list_workers()
    running: dict[str, int] = {}
    for row in collect_stats(runtime)["queues"]:
        for owner, count in row["lease_owners"].items():
            running[owner] = running.get(owner, 0) + count
    rows = sorted(
        (WorkerRow(w, w.is_lost(now), now - w.heartbeat_at, running.get(w.id, 0)) for w in found),
        key=lambda row: (row.lost, row.info.started_at),
    )
    context = {"nav": "workers", "rows": rows, "records_workers": runtime.queue.records_workers,
               "live_count": sum(1 for r in rows if not r.lost),
               "lost_count": sum(1 for r in rows if r.lost), "queue_name": runtime.queue.name}  # fmt: skip
    return _page(request, "workers.html", context)


def schedules(request: Request) -> Response:
    runtime = _runtime()
    problem = None
    try:
        found = runtime.queue.list_schedules()
    except NuvomError as exc:
        found, problem = [], str(exc)
    rows = [{"s": s, "timetable": timetable(s),
             "call": ", ".join([repr(a) for a in s.args] + [f"{k}={v!r}" for k, v in s.kwargs.items()])}
            for s in found]  # fmt: skip
    return _page(request, "schedules.html", {"nav": "schedules", "rows": rows, "problem": problem})


async def schedule_pause(request: Request) -> Response:
    sid = request.path_params["schedule_id"]
    return await _act(
        request, "/schedules", lambda f: actions.pause_schedule(sid, True, who=_who(request))
    )


async def schedule_resume(request: Request) -> Response:
    sid = request.path_params["schedule_id"]
    return await _act(
        request, "/schedules", lambda f: actions.pause_schedule(sid, False, who=_who(request))
    )


async def schedule_trigger(request: Request) -> Response:
    sid = request.path_params["schedule_id"]
    return await _act(request, "/schedules", lambda f: actions.trigger(sid, who=_who(request)))


def schedule_remove_review(request: Request) -> Response:
    from nuvom.store_view import find_schedule

    sid = request.path_params["schedule_id"]
    schedule = find_schedule(_runtime(), sid)
    if schedule is None:
        return error_page(request, NotFound(f"no schedule with id {sid!r}"))
    return render(request, "remove_schedule.html", {"nav": "schedules", "s": schedule,
                                                    "timetable": timetable(schedule)})  # fmt: skip


async def schedule_remove(request: Request) -> Response:
    sid = request.path_params["schedule_id"]
    return await _act(
        request, "/schedules", lambda f: actions.remove_schedule(sid, who=_who(request))
    )


# -- workflows ------------------------------------------------------------------------------------
def workflows(request: Request) -> Response:
    """Recent workflows (their last jobs among the latest records), and a box for an id."""
    from nuvom.backends.contract import JobQuery

    wanted = request.query_params.get("id", "").strip()
    if wanted:
        return RedirectResponse(f"/workflows/{quote(wanted, safe='')}", status_code=303)
    runtime = _runtime()
    problem = None
    try:
        recent = runtime.results.find_jobs(JobQuery(limit=WORKFLOWS_SCANNED))
    except NuvomError as exc:
        recent, problem = [], str(exc)
    found = [r for r in recent if workflow_of(r) == r.id]
    return render(request, "workflows.html", {"nav": "workflows", "found": found,
                                              "problem": problem, "scanned": WORKFLOWS_SCANNED})  # fmt: skip


def workflow(request: Request) -> Response:
    from nuvom.workflow import walk

    runtime = _runtime()
    workflow_id = request.path_params["workflow_id"]
    records = walk(workflow_id, runtime.results)
    if not records or workflow_of(records[0]) != workflow_id:
        return error_page(request, NotFound(
            f"no workflow with id {workflow_id!r} (a workflow's id is the id of its last job, "
            "what chain(...).delay() returned)"))  # fmt: skip
    counts: dict[str, int] = {}
    for record in records:
        counts[record.status.value] = counts.get(record.status.value, 0) + 1
    waiting = any(not r.status.is_final and r.status is not JobStatus.RUNNING for r in records)
    context = {"nav": "workflows", "id": workflow_id, "records": records, "head": records[0],
               "layout": workflow_graph(records, workflow_id), "counts": dict(sorted(counts.items())),
               "can_cancel": waiting}  # fmt: skip
    return _page(request, "workflow.html", context)


# -- dead letters ---------------------------------------------------------------------------------
DEAD_PAGE = 50  # dead letters one page shows


def dead(request: Request) -> Response:
    """The records claims quarantined, by id, a page at a time (``?after=`` the last id)."""
    runtime = _runtime()
    after = request.query_params.get("after") or None
    problem = None
    try:
        found = runtime.queue.dead_letters(limit=DEAD_PAGE + 1, after=after)
    except NuvomError as exc:
        found, problem = [], str(exc)
    letters = found[:DEAD_PAGE]
    older = letters[-1].id if len(found) > DEAD_PAGE else None
    here = "/dead" + (f"?{urlencode({'after': after})}" if after else "")
    context = {"nav": "dead", "letters": letters, "problem": problem, "after": after, "here": here,
               "next_url": f"/dead?{urlencode({'after': older})}" if older else None,
               "queue_name": runtime.queue.name}  # fmt: skip
    return _page(request, "dead.html", context)


async def dead_reinject(request: Request) -> Response:
    job_id = request.path_params["job_id"]
    return await _act(request, "/dead", lambda f: actions.reinject_dead(job_id, who=_who(request)))


async def dead_delete(request: Request) -> Response:
    job_id = request.path_params["job_id"]
    return await _act(request, "/dead", lambda f: actions.delete_dead(job_id, who=_who(request)))


def routes() -> list[BaseRoute]:
    return [
        Route("/", overview),
        Route("/jobs", jobs),
        Route("/jobs/bulk", bulk_review),
        Route("/jobs/new", jobs_new),
        Route("/jobs/bulk", bulk_run, methods=["POST"]),
        Route("/jobs/prune", jobs_prune, methods=["POST"]),
        Route("/jobs/{job_id}", job),
        Route("/jobs/{job_id}/retry", job_retry, methods=["POST"]),
        Route("/jobs/{job_id}/cancel", job_cancel, methods=["POST"]),
        Route("/jobs/{job_id}/delete", job_delete, methods=["POST"]),
        Route("/queues", queues),
        Route("/queues/pause", queue_pause_named, methods=["POST"]),
        Route("/queues/{queue}/pause", queue_pause, methods=["POST"]),
        Route("/queues/{queue}/resume", queue_resume, methods=["POST"]),
        Route("/queues/{queue}/purge", purge_review),
        Route("/queues/{queue}/purge", queue_purge, methods=["POST"]),
        Route("/tasks/{task}/upgrade", task_upgrade, methods=["POST"]),
        Route("/workers", workers),
        Route("/schedules", schedules),
        Route("/schedules/{schedule_id}/pause", schedule_pause, methods=["POST"]),
        Route("/schedules/{schedule_id}/resume", schedule_resume, methods=["POST"]),
        Route("/schedules/{schedule_id}/trigger", schedule_trigger, methods=["POST"]),
        Route("/schedules/{schedule_id}/remove", schedule_remove_review),
        Route("/schedules/{schedule_id}/remove", schedule_remove, methods=["POST"]),
        Route("/workflows", workflows),
        Route("/workflows/{workflow_id}", workflow),
        Route("/dead", dead),
        Route("/dead/{job_id}/reinject", dead_reinject, methods=["POST"]),
        Route("/dead/{job_id}/delete", dead_delete, methods=["POST"]),
    ]
