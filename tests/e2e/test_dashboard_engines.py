"""The dashboard's views on the other engines: the same pages, read through the same
contract, on PostgreSQL, Redis and the file backends (the servers' tests skip locally
without them and fail in CI, as every server test does)."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
from playwright.sync_api import Browser, Page, expect

from .dashboard_helpers import EXPECT_MS, VIEWPORT, browser, request, start_dashboard
from .helpers import Project

try:
    from ..integration.servers import engine_env
except ImportError:  # tests/ is not a package
    from integration.servers import engine_env  # type: ignore[no-redef]

expect.set_options(timeout=EXPECT_MS)

TASKS = """
from nuvom import task


@task(tags=["math"])
def add(x, y):
    return x + y


@task(retries=1, retry_delay_secs=0)
def explode(reason):
    raise ValueError(f"cannot do it: {reason}")


@task
def total(values):
    return sum(values)


@task(queue="reports")
def report(name):
    return name
"""

PRODUCER = """
import json

import nuvom
from nuvom.discovery import refresh_manifest
from nuvom.worker import Worker
from nuvom.workflow import chord

import tasks

runtime = nuvom.configure()
refresh_manifest(".", runtime.settings.manifest_path)
ids = {"added": [tasks.add.delay(i, i).id for i in range(5)]}
ids["failed"] = tasks.explode.delay("on another engine").id
ids["chord"] = chord([tasks.add.s(i, 1) for i in range(3)], tasks.total.s()).delay().id
ids["schedule"] = tasks.add.schedule(1, 2, interval=3600).id
Worker(workers=2).run(burst=True)
runtime.queue.pause_queue("reports", True)
ids["paused"] = tasks.report.delay("weekly").id
print(json.dumps(ids))
"""


@pytest.fixture(scope="module")
def chromium() -> Iterator[Browser]:
    with browser() as launched:
        yield launched


@pytest.mark.parametrize("kind", ["postgres", "redis", "file"])
def test_every_view_on_another_engine(kind: str, project: Project, chromium: Browser) -> None:
    with engine_env(kind) as env:
        project.write("tasks.py", TASKS)
        made = project.python(PRODUCER, **env)
        assert made.returncode == 0, made.stderr
        ids = json.loads(made.stdout.strip().splitlines()[-1])
        _, url = start_dashboard(project, **env)
        context = chromium.new_context(viewport=VIEWPORT)
        try:
            _check_views(context.new_page(), url, ids, kind)
        finally:
            context.close()
        # and an action, through the same contract
        csrf = request(url + "api/csrf")[1]["csrf_token"]
        retried = request(url + f"api/jobs/{ids['failed']}/retry", method="POST",
                          headers={"X-CSRF-Token": csrf})  # fmt: skip
        assert retried[0] == 200, retried
        assert request(url + f"api/jobs/{ids['failed']}")[1]["status"] == "PENDING"


def _check_views(page: Page, url: str, ids: dict[str, object], kind: str) -> None:
    page.goto(url)
    expect(page.locator(".store")).to_contain_text(kind)
    expect(page.locator('[data-status="FAILED"]')).to_have_text("1")
    expect(page.locator("svg.chart rect.ok").first).to_be_visible()

    page.goto(url + "jobs?tag=math&status=SUCCESS")
    expect(page.locator("tbody tr[data-job]")).to_have_count(5 + 3)  # alone, and in the chord

    page.goto(url + f"jobs/{ids['failed']}")
    expect(page.locator("tr[data-attempt]")).to_have_count(2)
    expect(page.locator("[data-traceback]")).to_contain_text("ValueError: cannot do it")

    page.goto(url + "queues")
    expect(page.locator('tr[data-queue="reports"] .badge')).to_have_text("paused")
    expect(page.locator('tr[data-queue="reports"] [data-count="pending"]')).to_have_text("1")

    page.goto(url + "schedules")
    expect(page.locator(f'tr[data-schedule="{ids["schedule"]}"]')).to_contain_text("every 1h")

    page.goto(url + "workers")
    expect(page.locator("h1")).to_have_text("Workers")

    page.goto(url + f"workflows/{ids['chord']}")
    expect(page.locator("svg.graph g.node.s-success")).to_have_count(4)
