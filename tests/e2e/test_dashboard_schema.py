"""The dashboard's JSON API against its own OpenAPI document, by schemathesis: every
operation, with a few generated requests each, in process (ASGI, no server), on a SQLite
store of its own holding a few real jobs. No answer is a 5xx; each status, content type
and body is one the document describes. ``/api/events`` is read until its first events.
"""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import Iterator
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

TOKEN = "schema-test-token"  # with it, writes need no CSRF token (a script's way in)
EXAMPLES = 6  # generated requests per operation: the whole file stays well under 30 s
STREAM_SECS = 1.0  # how long a generated /api/events request is read before it is cut


def _fill(runtime: Any) -> dict[str, str]:
    """A few real jobs: done, failed, waiting, scheduled; a schedule; a paused queue."""
    from nuvom.job import Job, JobStatus
    from nuvom.records import ErrorInfo, Outcome

    queue, results = runtime.queue, runtime.results
    waiting = Job("tasks.add", args=(1, 2), queue="default", id="waiting-1")
    later = Job("tasks.add", args=(3, 4), queue="mail", id="later-1", due_at=4e9)
    done = Job("tasks.add", args=(5, 6), queue="default", id="done-1")
    failed = Job("tasks.explode", args=("x",), queue="default", id="failed-1")
    queue.submit([done, failed], results)
    claimed = queue.claim(2, worker_id="w", lease_secs=30, results=results, queues=["default"])
    now = runtime.clock.time()
    outcomes = [
        Outcome(job, JobStatus.SUCCESS, result=11, worker_id="w", started_at=now, finished_at=now)
        if job.id == "done-1"
        else Outcome(
            job,
            JobStatus.FAILED,
            error=ErrorInfo("ValueError", "no"),
            worker_id="w",
            started_at=now,
            finished_at=now,
        )
        for job in claimed
    ]
    queue.settle(outcomes, results)
    queue.submit([waiting, later], results)
    queue.pause_queue("mail", True)
    return {"done": "done-1", "failed": "failed-1", "waiting": "waiting-1"}


@pytest.fixture(scope="module")
def app(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    import nuvom
    from nuvom.dashboard.app import create_app
    from nuvom.runtime import current

    folder = tmp_path_factory.mktemp("dashboard-schema")
    with pytest.MonkeyPatch.context() as env:  # (module scope: before the per-test cleaning)
        for name in [n for n in os.environ if n.upper().startswith("NUVOM_")]:
            env.delenv(name)
        previous = current()
        runtime = nuvom.configure(sqlite_db_path=folder / "nuvom.db",
                                  manifest_path=folder / "manifest.json")  # fmt: skip
        _fill(runtime)
        # loopback=False: the test client's Host is "testserver"
        yield create_app(token=TOKEN, loopback=False)
        runtime.close()
        nuvom.configure(queue_backend=previous.queue, result_backend=previous.results)


@pytest.fixture(scope="module")
def api_schema(app: Any) -> Any:
    auth = {"Authorization": f"Bearer {TOKEN}"}
    return schemathesis.openapi.from_asgi("/api/openapi.json", app, headers=auth)


CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance,
          response_schema_conformance]  # fmt: skip


def test_every_operation_answers_as_documented(api_schema: Any) -> None:
    # Each operation by hand (schemathesis' pytest plugin does not load on this pytest).
    operations = [result.ok() for result in api_schema.get_all_operations()]
    assert len(operations) >= 25
    answers: list[int] = []
    for operation in operations:

        @given(case=operation.as_strategy())
        @settings(max_examples=EXAMPLES, deadline=None, derandomize=True, database=None,
                  suppress_health_check=list(HealthCheck), phases=[Phase.explicit,
                  Phase.generate])  # fmt: skip
        def answers_as_documented(case: Any) -> None:
            response = case.call(headers={"Authorization": f"Bearer {TOKEN}"},
                                 timeout=STREAM_SECS)  # fmt: skip
            case.validate_response(response, checks=CHECKS)
            answers.append(response.status_code)

        answers_as_documented()
    assert len(answers) >= 3 * len(operations)
    assert answers.count(200) >= len(operations), "most operations succeeded at least once"


def test_the_document_names_every_route(app: Any) -> None:
    from nuvom.dashboard.api import openapi_document

    document = openapi_document()
    paths = document["paths"]
    assert {"/api/dead", "/api/dead/{job_id}/reinject", "/api/dead/{job_id}", "/api/events"} <= set(
        paths
    )
    for path, methods in paths.items():
        for method, operation in methods.items():
            schema_of = operation["responses"]["200"]["content"]
            assert schema_of, (method, path)
            assert {"400", "401", "404"} <= set(operation["responses"]), (method, path)


# -- the event stream, read as a browser would --------------------------------------------------
async def _read_stream(app: Any, query: str, until: str, act: Any) -> tuple[int, list[str], bool]:
    """Open ``/api/events?QUERY``, run ``act`` once it is open, read until ``until`` shows up;
    then go away as a closed tab does. Its status, the chunks, and whether the app ended."""
    chunks: list[str] = []
    status = 0
    seen = asyncio.Event()
    gone = asyncio.Event()

    async def receive() -> dict[str, Any]:
        await gone.wait()
        return {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        nonlocal status
        if message["type"] == "http.response.start":
            status = message["status"]
        elif message["type"] == "http.response.body":
            chunks.append(message.get("body", b"").decode())
            if until in "".join(chunks):
                seen.set()

    scope = {"type": "http", "asgi": {"version": "3.0", "spec_version": "2.3"},
             "http_version": "1.1", "method": "GET", "scheme": "http", "path": "/api/events",
             "raw_path": b"/api/events", "query_string": query.encode(), "root_path": "",
             "headers": [(b"host", b"testserver"),
                         (b"authorization", f"Bearer {TOKEN}".encode())],
             "client": ("127.0.0.1", 5000), "server": ("testserver", 80)}  # fmt: skip
    served = asyncio.ensure_future(app(scope, receive, send))
    await asyncio.sleep(0.3)  # the stream is open, its poller reading
    await asyncio.to_thread(act)
    try:
        await asyncio.wait_for(seen.wait(), 5)
    finally:
        gone.set()
        await asyncio.wait_for(served, 5)  # ends once the client is gone: no hang
    return status, chunks, served.done()


def test_events_tell_a_jobs_change_to_the_stream_that_follows_it(app: Any) -> None:
    from nuvom.job import Job
    from nuvom.runtime import current
    from nuvom.store_view import cancel

    runtime = current()
    runtime.queue.submit([Job("tasks.add", args=(7, 8), id="followed-1")], runtime.results)
    runtime.queue.submit([Job("tasks.add", args=(9, 9), id="other-1")], runtime.results)

    def act() -> None:
        cancel("other-1")  # not the one followed: not told
        cancel("followed-1")

    status, chunks, ended = asyncio.run(_read_stream(app, "job=followed-1", '"CANCELLED"', act))
    assert (status, ended) == (200, True)
    text = "".join(chunks)
    assert text.startswith("retry:")
    events = [line for line in text.splitlines() if line.startswith("data: ")]
    data = [json.loads(line[len("data: ") :]) for line in events]
    assert {"id": "followed-1", "status": "CANCELLED", "queue": "default", "task": "tasks.add"} \
        .items() <= data[-1].items()  # fmt: skip
    assert {d["id"] for d in data if "id" in d} == {"followed-1"}  # its PENDING, then this


def test_events_end_when_the_server_stops(app: Any) -> None:
    hub = app.app.state.events

    async def run() -> bool:
        async def receive() -> dict[str, Any]:
            await asyncio.sleep(3600)  # the client never leaves
            return {"type": "http.disconnect"}

        async def send(message: dict[str, Any]) -> None:
            pass

        scope = {"type": "http", "asgi": {"version": "3.0", "spec_version": "2.3"},
                 "http_version": "1.1", "method": "GET", "scheme": "http",
                 "path": "/api/events", "raw_path": b"/api/events", "query_string": b"",
                 "root_path": "", "headers": [(b"host", b"testserver"),
                                              (b"authorization", f"Bearer {TOKEN}".encode())],
                 "client": ("127.0.0.1", 5000), "server": ("testserver", 80)}  # fmt: skip
        served = asyncio.ensure_future(app(scope, receive, send))
        await asyncio.sleep(0.3)
        hub.stop()
        await asyncio.wait_for(served, 3)
        return served.done()

    try:
        assert asyncio.run(run())
    finally:
        hub.stopping = False
