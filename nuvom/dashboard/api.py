"""The dashboard's JSON API under ``/api/``: the pages' data and every action, for scripts.

Filters and paging are the jobs page's (``?status=&queue=&task=&tag=&since=&until=&search=
&before=&limit=``); actions are ``nuvom.dashboard.actions``, the same the pages' forms run.
A write needs the CSRF token (``GET /api/csrf``; header ``X-CSRF-Token``) unless it carries
the dashboard's token as ``Authorization: Bearer``. ``/api/openapi.json`` describes it all.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import asdict
from typing import TYPE_CHECKING, Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from nuvom.dashboard import actions
from nuvom.dashboard.app import JSON
from nuvom.dashboard.filters import FILTER_NAMES, JobFilter, page_of
from nuvom.store_view import (
    NotFound,
    Refused,
    collect_stats,
    known_tasks,
    last_hour,
    schedule_of,
    waiting_on,
    workflow_of,
)
from nuvom.wording import timetable

if TYPE_CHECKING:
    from nuvom.records import JobRecord
    from nuvom.runtime import Runtime


def _runtime() -> Runtime:
    from nuvom.runtime import current

    return current()


def _who(request: Request) -> str:
    return request.client.host if request.client else "?"


async def _body(request: Request) -> dict[str, Any]:
    """A JSON object body, or a form's fields; ``{}`` when there is none."""
    kind = request.headers.get("content-type", "")
    if kind.startswith("application/json"):
        raw = await request.body()
        if not raw.strip():
            return {}
        try:
            data = json.loads(raw)
        except ValueError:
            raise Refused("the body is not JSON") from None
        if not isinstance(data, dict):
            raise Refused("the body must be a JSON object")
        return data
    if kind.startswith(("application/x-www-form-urlencoded", "multipart/form-data")):
        form = await request.form()
        return {key: value for key, value in form.items() if isinstance(value, str)}
    return {}


async def _done(step: Callable[[], actions.Done]) -> Response:
    done = await run_in_threadpool(step)
    return JSON({"message": done.message, **done.data})


def listed(record: JobRecord) -> dict[str, Any]:
    """A record as listings show it: everything but the attempts (``/api/jobs/{id}``)."""
    data = record.to_dict()
    data.pop("history", None)
    return data


# -- reads ----------------------------------------------------------------------------------------
def stats(request: Request) -> Response:
    runtime = _runtime()
    now = runtime.clock.time()
    workers = runtime.queue.list_workers()
    activity = last_hour(runtime)
    return JSON({
        "queues": collect_stats(runtime),
        "status_counts": runtime.results.status_counts(),
        "workers": {"live": sum(1 for w in workers if not w.is_lost(now)),
                    "lost": sum(1 for w in workers if w.is_lost(now))},
        "activity": asdict(activity),
    })  # fmt: skip


def jobs(request: Request) -> Response:
    runtime = _runtime()
    flt = JobFilter.from_params(request.query_params)
    query = flt.query(known_tasks(runtime), runtime.clock.time(), limit=flt.limit + 1)
    page = page_of(runtime.results.find_jobs(query), flt.limit)
    return JSON({"jobs": [listed(r) for r in page.records], "older": page.older})


def job(request: Request) -> Response:
    runtime = _runtime()
    job_id = request.path_params["job_id"]
    record = runtime.results.get_full(job_id)
    if record is None:
        raise NotFound(f"no job with id {job_id!r}")
    return JSON({**record.to_dict(), "waiting_on": waiting_on(runtime, record),
                 "workflow": workflow_of(record), "schedule": schedule_of(record)})  # fmt: skip


def queues(request: Request) -> Response:
    return JSON(collect_stats(_runtime()))


def workers(request: Request) -> Response:
    runtime = _runtime()
    now = runtime.clock.time()
    return JSON([w.to_dict(now) for w in runtime.queue.list_workers()])


def schedules(request: Request) -> Response:
    return JSON([{**s.to_dict(), "timetable": timetable(s)}
                 for s in _runtime().queue.list_schedules()])  # fmt: skip


def workflow(request: Request) -> Response:
    from nuvom.workflow import walk

    workflow_id = request.path_params["workflow_id"]
    records = walk(workflow_id, _runtime().results)
    if not records or workflow_of(records[0]) != workflow_id:
        raise NotFound(f"no workflow with id {workflow_id!r}")
    nodes = [{**listed(r), "after": list((r.origin or {}).get("after", ()))} for r in records]
    return JSON({"id": workflow_id, "status": records[0].status.value, "nodes": nodes})


def tasks(request: Request) -> Response:
    return JSON([asdict(task) for task in known_tasks(_runtime())])


def csrf(request: Request) -> Response:
    return JSON({"csrf_token": request.app.state.options.csrf_token})


# -- actions --------------------------------------------------------------------------------------
async def job_retry(request: Request) -> Response:
    job_id = request.path_params["job_id"]
    return await _done(lambda: actions.retry_job(job_id, who=_who(request)))


async def job_cancel(request: Request) -> Response:
    job_id = request.path_params["job_id"]
    return await _done(lambda: actions.cancel_job(job_id, who=_who(request)))


async def job_delete(request: Request) -> Response:
    job_id = request.path_params["job_id"]
    return await _done(lambda: actions.delete_job(job_id, who=_who(request)))


async def jobs_bulk(request: Request) -> Response:
    """``{"action": "retry", "ids": [...]}`` or ``{"action": ..., "filter": {"status":
    "FAILED", ...}}``; ``"dry_run": true`` only counts."""
    body = await _body(request)
    action = str(body.get("action", ""))
    ids = body.get("ids") or []
    given = body.get("filter") or {}
    if not isinstance(ids, list) or not isinstance(given, dict):
        raise Refused('"ids" is a list of job ids, "filter" an object of the jobs filters')
    dry_run = body.get("dry_run") in (True, "true", "1", 1)

    def run() -> dict[str, Any]:
        runtime = _runtime()
        flt = JobFilter.from_params({k: str(v) for k, v in given.items() if k in FILTER_NAMES})
        query = flt.query(known_tasks(runtime), runtime.clock.time(), limit=1000)
        plan = actions.bulk_plan(action, query=query, ids=[str(i) for i in ids])
        if dry_run:
            return {"dry_run": True, **actions.plan_data(plan)}
        done = actions.bulk(plan, who=_who(request))
        return {"dry_run": False, "message": done.message, **actions.plan_data(plan), **done.data}

    return JSON(await run_in_threadpool(run))


async def jobs_prune(request: Request) -> Response:
    body = await _body(request)
    older, status = str(body.get("older_than", "7d")), body.get("status")
    return await _done(lambda: actions.prune(older, str(status) if status else None,
                                             who=_who(request)))  # fmt: skip


async def queue_pause(request: Request) -> Response:
    name = request.path_params["queue"]
    return await _done(lambda: actions.pause_queue(name, True, who=_who(request)))


async def queue_resume(request: Request) -> Response:
    name = request.path_params["queue"]
    return await _done(lambda: actions.pause_queue(name, False, who=_who(request)))


async def queue_purge(request: Request) -> Response:
    name = request.path_params["queue"]
    confirm = str((await _body(request)).get("confirm", ""))
    return await _done(lambda: actions.purge_queue(name, confirm, who=_who(request)))


async def schedule_pause(request: Request) -> Response:
    sid = request.path_params["schedule_id"]
    return await _done(lambda: actions.pause_schedule(sid, True, who=_who(request)))


async def schedule_resume(request: Request) -> Response:
    sid = request.path_params["schedule_id"]
    return await _done(lambda: actions.pause_schedule(sid, False, who=_who(request)))


async def schedule_trigger(request: Request) -> Response:
    sid = request.path_params["schedule_id"]
    return await _done(lambda: actions.trigger(sid, who=_who(request)))


async def schedule_remove(request: Request) -> Response:
    sid = request.path_params["schedule_id"]
    return await _done(lambda: actions.remove_schedule(sid, who=_who(request)))


async def task_upgrade(request: Request) -> Response:
    task = request.path_params["task"]
    given = (await _body(request)).get("from")
    try:
        version = int(str(given))
    except ValueError:
        raise Refused('"from": the version the waiting jobs carry (a number)') from None
    return await _done(lambda: actions.upgrade_jobs(task, version, who=_who(request)))


# -- the description ------------------------------------------------------------------------------
_JOB_FILTERS = [*FILTER_NAMES, "before", "limit"]
#: (method, path, handler, summary, query parameters, body fields)
ENDPOINTS: list[tuple[str, str, Callable[..., Any], str, list[str], list[str]]] = [
    ("GET", "/api/stats", stats, "Queue counts, job counts, workers, the last hour's activity", [], []),
    ("GET", "/api/jobs", jobs, "Jobs, newest first, filtered, a keyset page at a time", _JOB_FILTERS, []),
    ("GET", "/api/jobs/{job_id}", job, "One job: call, result or error, every attempt", [], []),
    ("POST", "/api/jobs/{job_id}/retry", job_retry, "Enqueue a FAILED or CANCELLED job again", [], []),
    ("POST", "/api/jobs/{job_id}/cancel", job_cancel, "Cancel a waiting job (a workflow's id: all of it)", [], []),
    ("DELETE", "/api/jobs/{job_id}", job_delete, "Forget a finished job's record", [], []),
    ("POST", "/api/jobs/bulk", jobs_bulk, "Retry, cancel or delete jobs by ids or by filter", [], ["action", "ids", "filter", "dry_run"]),
    ("POST", "/api/jobs/prune", jobs_prune, "Delete finished jobs older than an age", [], ["older_than", "status"]),
    ("GET", "/api/queues", queues, "Per queue: waiting, running, failed, held, paused", [], []),
    ("POST", "/api/queues/{queue}/pause", queue_pause, "Pause claims from a queue", [], []),
    ("POST", "/api/queues/{queue}/resume", queue_resume, "Resume claims from a queue", [], []),
    ("POST", "/api/queues/{queue}/purge", queue_purge, "Cancel every waiting job of a queue", [], ["confirm"]),
    ("GET", "/api/workers", workers, "Workers, live and lost", [], []),
    ("GET", "/api/schedules", schedules, "Every schedule", [], []),
    ("POST", "/api/schedules/{schedule_id}/pause", schedule_pause, "Pause a schedule", [], []),
    ("POST", "/api/schedules/{schedule_id}/resume", schedule_resume, "Resume a schedule", [], []),
    ("POST", "/api/schedules/{schedule_id}/trigger", schedule_trigger, "Run a schedule once now", [], []),
    ("DELETE", "/api/schedules/{schedule_id}", schedule_remove, "Delete a schedule", [], []),
    ("GET", "/api/workflows/{workflow_id}", workflow, "A workflow's members and their states", [], []),
    ("GET", "/api/tasks", tasks, "The project's tasks (the manifest) and their tags", [], []),
    ("POST", "/api/tasks/{task}/upgrade", task_upgrade, "Move waiting jobs of an old task version to the current one", [], ["from"]),
    ("GET", "/api/csrf", csrf, "The CSRF token writes carry (X-CSRF-Token)", [], []),
]  # fmt: skip


def openapi_document() -> dict[str, Any]:
    """An OpenAPI 3.1 document of ``ENDPOINTS``."""
    paths: dict[str, dict[str, Any]] = {}
    error = {"description": "refused", "content": {"application/json": {"schema": {
        "type": "object", "properties": {"error": {"type": "string"}}}}}}  # fmt: skip
    for method, path, _, summary, query, body in ENDPOINTS:
        parameters = [{"name": name, "in": "path", "required": True, "schema": {"type": "string"}}
                      for name in _path_names(path)]  # fmt: skip
        parameters += [{"name": name, "in": "query", "required": False,
                        "schema": {"type": "integer" if name == "limit" else "string"}}
                       for name in query]  # fmt: skip
        operation: dict[str, Any] = {
            "summary": summary,
            "operationId": f"{method.lower()}_{path.strip('/').replace('/', '_').replace('{', '').replace('}', '')}",
            "parameters": parameters,
            "responses": {"200": {"description": "done", "content": {"application/json": {}}},
                          "400": error, "401": error, "403": error, "404": error, "409": error},
        }  # fmt: skip
        if body:
            operation["requestBody"] = {"required": False, "content": {"application/json": {
                "schema": {"type": "object", "properties": {name: {} for name in body}}}}}  # fmt: skip
        paths.setdefault(path, {})[method.lower()] = operation
    return {
        "openapi": "3.1.0",
        "info": {"title": "nuvom dashboard API", "version": "1"},
        "components": {"securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}}},
        "paths": paths,
    }


def _path_names(path: str) -> list[str]:
    return [part[1:-1] for part in path.split("/") if part.startswith("{")]


def openapi(request: Request) -> Response:
    return JSON(openapi_document())


def routes() -> list[BaseRoute]:
    made: list[BaseRoute] = [Route("/api/openapi.json", openapi)]
    # /api/jobs/bulk and /prune before /api/jobs/{job_id}: the first route that matches wins.
    for method, path, handler, *_ in sorted(ENDPOINTS, key=lambda e: "{" in e[1]):
        made.append(Route(path, handler, methods=[method]))
    return made
