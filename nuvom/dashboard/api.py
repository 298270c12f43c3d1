"""The dashboard's JSON API under ``/api/``: the pages' data and every action, for scripts.

Filters and paging are the jobs page's (``?status=&queue=&task=&tag=&since=&until=&search=
&before=&limit=``); live changes stream from ``/api/events`` (``nuvom.dashboard.events``);
actions are ``nuvom.dashboard.actions``, the same the pages' forms run.
A write needs the CSRF token (``GET /api/csrf``; header ``X-CSRF-Token``) unless it carries
the dashboard's token as ``Authorization: Bearer``. ``/api/openapi.json`` describes it all.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass
from functools import partial
from typing import TYPE_CHECKING, Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from nuvom.dashboard import actions
from nuvom.dashboard.app import JSON
from nuvom.dashboard.events import events
from nuvom.dashboard.filters import FILTER_NAMES, MAX_PAGE_SIZE, JobFilter, page_of
from nuvom.job import JobStatus
from nuvom.store_view import (
    BULK_TAKES,
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
        "status_counts": request.app.state.counts.get(),
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


DEAD_LIMIT = 100  # dead letters one page of /api/dead lists unless ?limit= says


def dead(request: Request) -> Response:
    params = request.query_params
    try:
        limit = int(params.get("limit") or DEAD_LIMIT)
    except ValueError:
        raise Refused(f"limit={params.get('limit')!r} is not a number") from None
    if not 1 <= limit <= MAX_PAGE_SIZE:
        raise Refused(f"limit={limit}: between 1 and {MAX_PAGE_SIZE}")
    found = _runtime().queue.dead_letters(limit=limit + 1, after=params.get("after") or None)
    shown = found[:limit]
    after = shown[-1].id if len(found) > limit else None
    return JSON({"dead": [asdict(letter) for letter in shown], "after": after})


def csrf(request: Request) -> Response:
    return JSON({"csrf_token": request.app.state.options.csrf_token})


# -- actions --------------------------------------------------------------------------------------
Handler = Callable[[Request], Awaitable[Response]]


def acting_on(param: str, step: Callable[..., actions.Done]) -> Handler:
    """The handler of an action on one thing the path names: ``step(<path param>, who=...)``
    in a thread (backends block), its ``Done`` as JSON."""

    async def handler(request: Request) -> Response:
        value = request.path_params[param]
        return await _done(lambda: step(value, who=_who(request)))

    handler.__name__ = getattr(step, "__name__", "action")
    return handler


job_retry = acting_on("job_id", actions.retry_job)
job_cancel = acting_on("job_id", actions.cancel_job)
job_delete = acting_on("job_id", actions.delete_job)
queue_pause = acting_on("queue", partial(actions.pause_queue, paused=True))
queue_resume = acting_on("queue", partial(actions.pause_queue, paused=False))
schedule_pause = acting_on("schedule_id", partial(actions.pause_schedule, paused=True))
schedule_resume = acting_on("schedule_id", partial(actions.pause_schedule, paused=False))
schedule_trigger = acting_on("schedule_id", actions.trigger)
schedule_remove = acting_on("schedule_id", actions.remove_schedule)
dead_reinject = acting_on("job_id", actions.reinject_dead)
dead_delete = acting_on("job_id", actions.delete_dead)


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


async def queue_purge(request: Request) -> Response:
    name = request.path_params["queue"]
    confirm = str((await _body(request)).get("confirm", ""))
    return await _done(lambda: actions.purge_queue(name, confirm, who=_who(request)))


async def task_upgrade(request: Request) -> Response:
    task = request.path_params["task"]
    given = (await _body(request)).get("from")
    try:
        version = int(str(given))
    except ValueError:
        raise Refused('"from": the version the waiting jobs carry (a number)') from None
    return await _done(lambda: actions.upgrade_jobs(task, version, who=_who(request)))


# -- the description ------------------------------------------------------------------------------
def _nullable(kind: str) -> dict[str, Any]:
    return {"type": [kind, "null"]}


def _object(required: dict[str, Any], **optional: Any) -> dict[str, Any]:
    """A JSON object with these keys (others may follow: a newer engine may add facts)."""
    return {"type": "object", "required": list(required),
            "properties": {**required, **optional}}  # fmt: skip


_STATUSES = [s.value for s in JobStatus]
_COUNTS = {"type": "object", "additionalProperties": {"type": "integer"}}
_JOB = _object({
    "id": {"type": "string"}, "status": {"enum": _STATUSES}, "func_name": _nullable("string"),
    "args": {"type": "array"}, "kwargs": {"type": "object"}, "queue": _nullable("string"),
    "priority": {"type": "integer"}, "has_result": {"type": "boolean"},
    "error_type": _nullable("string"), "error_message": _nullable("string"),
    "attempts": {"type": "integer"}, "max_retries": _nullable("integer"),
    "created_at": _nullable("number"), "updated_at": _nullable("number"),
    "duration_secs": _nullable("number"), "worker_id": _nullable("string"),
}, result={}, origin={"type": ["object", "null"]})  # fmt: skip
_FULL_JOB = {**_JOB, "required": [*_JOB["required"], "history", "waiting_on", "workflow",
                                  "schedule"],
             "properties": {**_JOB["properties"], "history": {"type": "array",
                            "items": {"type": "object"}}, "waiting_on": _nullable("string"),
                            "workflow": _nullable("string"), "schedule": _nullable("string")}}  # fmt: skip
_QUEUES = _object({"queues": {"type": "array", "items": _object({
    "queue": {"type": "string"}, "pending": {"type": "integer"}, "running": {"type": "integer"},
    "quarantined": {"type": "integer"}, "paused": {"type": "boolean"}})},
    "totals": {"type": "object"}, "paused": {"type": "array", "items": {"type": "string"}}})  # fmt: skip
_DONE = _object({"message": {"type": "string"}})
_DEAD = _object({"id": {"type": "string"}, "queue": {"type": "string"},
                 "reason": {"type": "string"}, "quarantined_at": _nullable("number"),
                 "preview": {"type": "string"}})  # fmt: skip
_PLAN = _object({"dry_run": {"type": "boolean"}, "action": {"enum": list(BULK_TAKES)},
                 "matched": {"type": "integer"}, "would_take": {"type": "integer"},
                 "ids": {"type": "array", "items": {"type": "string"}},
                 "capped": {"type": "boolean"}}, message={"type": "string"})  # fmt: skip
_RESPONSES: dict[str, dict[str, Any]] = {
    "/api/stats": _object(
        {
            "queues": _QUEUES,
            "status_counts": _COUNTS,
            "workers": _object({"live": {"type": "integer"}, "lost": {"type": "integer"}}),
            "activity": _object(
                {
                    "since": {"type": "number"},
                    "bucket_secs": {"type": "number"},
                    "buckets": {"type": "array"},
                }
            ),
        }
    ),
    "/api/jobs": _object({"jobs": {"type": "array", "items": _JOB}, "older": _nullable("string")}),
    "/api/jobs/{job_id}": _FULL_JOB,
    "/api/jobs/bulk": _PLAN,
    "/api/queues": _QUEUES,
    "/api/workers": {
        "type": "array",
        "items": _object(
            {
                "id": {"type": "string"},
                "status": {"enum": ["live", "lost"]},
                "pool": {"type": "string"},
                "concurrency": {"type": "integer"},
                "heartbeat_at": {"type": "number"},
            }
        ),
    },
    "/api/schedules": {
        "type": "array",
        "items": _object(
            {
                "id": {"type": "string"},
                "func_name": {"type": "string"},
                "timetable": {"type": "string"},
                "paused": {"type": "boolean"},
            }
        ),
    },
    "/api/workflows/{workflow_id}": _object(
        {
            "id": {"type": "string"},
            "status": {"enum": _STATUSES},
            "nodes": {"type": "array", "items": _JOB},
        }
    ),
    "/api/tasks": {
        "type": "array",
        "items": _object(
            {"name": {"type": "string"}, "tags": {"type": "array", "items": {"type": "string"}}}
        ),
    },
    "/api/csrf": _object({"csrf_token": {"type": "string"}}),
    "/api/dead": _object({"dead": {"type": "array", "items": _DEAD}, "after": _nullable("string")}),
}
_PARAMS: dict[str, dict[str, Any]] = {
    "status": {"enum": _STATUSES}, "limit": {"type": "integer", "minimum": 1,
                                             "maximum": MAX_PAGE_SIZE},
    "before": {"type": "string", "description": "the previous page's `older`"},
    "since": {"type": "string", "description": "an age (15m, 24h, 7d) or an ISO date"},
    "until": {"type": "string", "description": "an age (15m, 24h, 7d) or an ISO date"},
}  # fmt: skip
_BODIES: dict[str, dict[str, Any]] = {
    "action": {"enum": list(BULK_TAKES)}, "ids": {"type": "array", "items": {"type": "string"}},
    "filter": {"type": "object", "properties": {n: {"type": "string"} for n in FILTER_NAMES}},
    "dry_run": {"type": "boolean"}, "older_than": {"type": "string"},
    "status": {"enum": ["SUCCESS", "FAILED", "CANCELLED"]}, "confirm": {"type": "string"},
    "from": {"type": "integer"},
}  # fmt: skip
_EVENTS_DOC = (
    "Server-Sent Events: `job` {id, status, queue, task, updated_at} for each changed job "
    "(`?job=` one job, `?queue=` one queue), `stats` {at, changed} every few seconds while "
    "jobs change, `resync` when changes came too fast to tell one by one; a comment line "
    "every 15 s. The stream ends when the server stops; browsers reconnect."
)


@dataclass(frozen=True, slots=True)
class Endpoint:
    method: str
    path: str
    handler: Callable[[Request], Any]
    summary: str
    query: tuple[str, ...] = ()
    body: tuple[str, ...] = ()


_JOB_FILTERS = (*FILTER_NAMES, "before", "limit")
ENDPOINTS: list[Endpoint] = [
    Endpoint("GET", "/api/stats", stats, "Queue counts, job counts, workers, the last hour's activity"),
    Endpoint("GET", "/api/jobs", jobs, "Jobs, newest first, filtered, a keyset page at a time", _JOB_FILTERS),
    Endpoint("GET", "/api/jobs/{job_id}", job, "One job: call, result or error, every attempt"),
    Endpoint("POST", "/api/jobs/{job_id}/retry", job_retry, "Enqueue a FAILED or CANCELLED job again"),
    Endpoint("POST", "/api/jobs/{job_id}/cancel", job_cancel, "Cancel a waiting job (a workflow's id: all of it)"),
    Endpoint("DELETE", "/api/jobs/{job_id}", job_delete, "Forget a finished job's record"),
    Endpoint("POST", "/api/jobs/bulk", jobs_bulk, "Retry, cancel or delete jobs by ids or by filter", body=("action", "ids", "filter", "dry_run")),
    Endpoint("POST", "/api/jobs/prune", jobs_prune, "Delete finished jobs older than an age", body=("older_than", "status")),
    Endpoint("GET", "/api/queues", queues, "Per queue: waiting, running, failed, held, paused"),
    Endpoint("POST", "/api/queues/{queue}/pause", queue_pause, "Pause claims from a queue"),
    Endpoint("POST", "/api/queues/{queue}/resume", queue_resume, "Resume claims from a queue"),
    Endpoint("POST", "/api/queues/{queue}/purge", queue_purge, "Cancel every waiting job of a queue", body=("confirm",)),
    Endpoint("GET", "/api/workers", workers, "Workers, live and lost"),
    Endpoint("GET", "/api/schedules", schedules, "Every schedule"),
    Endpoint("POST", "/api/schedules/{schedule_id}/pause", schedule_pause, "Pause a schedule"),
    Endpoint("POST", "/api/schedules/{schedule_id}/resume", schedule_resume, "Resume a schedule"),
    Endpoint("POST", "/api/schedules/{schedule_id}/trigger", schedule_trigger, "Run a schedule once now"),
    Endpoint("DELETE", "/api/schedules/{schedule_id}", schedule_remove, "Delete a schedule"),
    Endpoint("GET", "/api/workflows/{workflow_id}", workflow, "A workflow's members and their states"),
    Endpoint("GET", "/api/tasks", tasks, "The project's tasks (the manifest) and their tags"),
    Endpoint("POST", "/api/tasks/{task}/upgrade", task_upgrade, "Move waiting jobs of an old task version to the current one", body=("from",)),
    Endpoint("GET", "/api/dead", dead, "Dead letters: records claims quarantined, by id, a page at a time", ("after", "limit")),
    Endpoint("POST", "/api/dead/{job_id}/reinject", dead_reinject, "Put a dead letter's job back to wait, read with today's settings"),
    Endpoint("DELETE", "/api/dead/{job_id}", dead_delete, "Delete a dead letter"),
    Endpoint("GET", "/api/events", events, "Live job changes (Server-Sent Events)", ("job", "queue")),
    Endpoint("GET", "/api/csrf", csrf, "The CSRF token writes carry (X-CSRF-Token)"),
]  # fmt: skip

_REFUSALS = {
    "400": "refused: a parameter or the body is wrong (nothing was changed)",
    "401": "the dashboard needs its token",
    "403": "a write without the CSRF token, from another site, or in --read-only",
    "404": "no such job, queue, schedule, workflow or dead letter",
    "405": "this path does not take that method",
    "409": "the job is in a state the action does not take, or a dead letter still cannot be read",
    "501": "this engine cannot do that",
    "503": "the store cannot be reached",
}


def _operation(endpoint: Endpoint) -> dict[str, Any]:
    error = {"application/json": {"schema": _object({"error": {"type": "string"}})}}
    parameters = [{"name": name, "in": "path", "required": True, "schema": {"type": "string"}}
                  for name in _path_names(endpoint.path)]  # fmt: skip
    parameters += [{"name": name, "in": "query", "required": False,
                    "schema": _PARAMS.get(name, {"type": "string"})} for name in endpoint.query]  # fmt: skip
    if endpoint.path == "/api/events":
        ok = {"description": _EVENTS_DOC, "content": {"text/event-stream": {
            "schema": {"type": "string"}}}}  # fmt: skip
    else:
        schema = _RESPONSES.get(endpoint.path, _DONE) if endpoint.method == "GET" else _DONE
        if endpoint.path == "/api/jobs/bulk":
            schema = _PLAN
        ok = {"description": "done", "content": {"application/json": {"schema": schema}}}
    operation: dict[str, Any] = {
        "summary": endpoint.summary,
        "operationId": f"{endpoint.method.lower()}_" + endpoint.path.strip("/").replace(
            "/", "_").replace("{", "").replace("}", ""),
        "parameters": parameters,
        "responses": {"200": ok, **{code: {"description": text, "content": error}
                                    for code, text in _REFUSALS.items()}},
    }  # fmt: skip
    if endpoint.body:
        operation["requestBody"] = {"required": False, "content": {"application/json": {
            "schema": {"type": "object",
                       "properties": {n: _BODIES[n] for n in endpoint.body}}}}}  # fmt: skip
    return operation


def openapi_document() -> dict[str, Any]:
    """An OpenAPI 3.1 document of ``ENDPOINTS``."""
    paths: dict[str, dict[str, Any]] = {}
    for endpoint in ENDPOINTS:
        paths.setdefault(endpoint.path, {})[endpoint.method.lower()] = _operation(endpoint)
    return {
        "openapi": "3.1.0",
        "info": {"title": "nuvom dashboard API", "version": "1"},
        "components": {"securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}}},
        "security": [{"bearer": []}, {}],  # the token when the dashboard has one
        "paths": paths,
    }


def _path_names(path: str) -> list[str]:
    return [part[1:-1] for part in path.split("/") if part.startswith("{")]


def openapi(request: Request) -> Response:
    return JSON(openapi_document())


def routes() -> list[BaseRoute]:
    made: list[BaseRoute] = [Route("/api/openapi.json", openapi)]
    # /api/jobs/bulk and /prune before /api/jobs/{job_id}: the first route that matches wins.
    for endpoint in sorted(ENDPOINTS, key=lambda e: "{" in e.path):
        made.append(Route(endpoint.path, endpoint.handler, methods=[endpoint.method]))
    return made
