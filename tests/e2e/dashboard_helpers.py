"""A project for the dashboard's browser tests: real jobs of every kind in a store, real
workers (one live, one lost), and ``nuvom dashboard`` serving it on a free port.

The store is filled by a producer process on a clock set back 56 minutes that catches up
five minutes at a time, so the overview's last hour has jobs all along it, each with its
real run time.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

try:
    from ..integration.helpers import Project, nuvom_command, wait_for
except ImportError:  # tests/ is not a package: pytest put tests/ itself on sys.path
    from integration.helpers import Project, nuvom_command, wait_for  # type: ignore[no-redef]

CHROMIUM = "/usr/bin/chromium"  # Debian's: Playwright cannot download a browser here
VIEWPORT = {"width": 1280, "height": 800}
SCREENSHOTS = Path(__file__).resolve().parents[2] / "docs" / "screenshots"
# Read when the tests are collected: each test then runs with no NUVOM_* variable at all.
SAVE_SCREENSHOTS = os.environ.get("NUVOM_SCREENSHOTS") == "1"
STARTED = re.compile(r"nuvom dashboard on (http://\S+/)")
START_SECS = 20.0  # the longest a dashboard or worker process may take to start
EXPECT_MS = 10_000  # Playwright's deadline for one expectation

TASKS = """
import time
from pathlib import Path

from nuvom import task

HERE = Path(__file__).parent
HOLD_CAP_SECS = 120  # a held job never outlives a broken test by much


@task(tags=["math"])
def add(x, y):
    return x + y


@task(queue="images", tags=["images"])
def resize(width):
    time.sleep(0.004 + (width % 7) * 0.004)
    return {"width": width, "height": width * 3 // 4}


@task(queue="images", tags=["images"])
def thumbnails(sizes):
    time.sleep(0.012)
    return len(sizes)


@task(queue="mail", tags=["notify"])
def send_email(to, subject="hello"):
    time.sleep(0.01)
    return f"sent to {to}"


@task(retries=1, retry_delay_secs=0, tags=["flaky"])
def flaky(n):
    marker = HERE / f"flaky-{n}.seen"
    if not marker.exists():
        marker.write_text("seen")
        raise ConnectionError(f"upstream timed out (call {n})")
    return n


@task(retries=1, retry_delay_secs=0)
def explode(reason):
    raise ValueError(f"cannot do it: {reason}")


@task(rate_limit="1/h", queue="partner", tags=["notify"])
def call_api(n):
    return n


@task(queue="reports")
def report(name):
    return name


@task
def echo(text):
    return text


@task
def digest(team):
    return f"digest for {team}"


@task(queue="slow", timeout_secs=600)
def hold(folder):
    go = Path(folder) / "go"
    deadline = time.monotonic() + HOLD_CAP_SECS
    while not go.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    return "done"
"""

# The producer: run in the project folder, it prints the ids the tests look for as JSON.
FILL = """
import json
import time

import nuvom
from nuvom.discovery import refresh_manifest
from nuvom.worker import Worker
from nuvom.workflow import chain, chord

import tasks


class Behind:
    \"\"\"The real time, ``behind`` seconds ago: jobs run now, with their real run times.\"\"\"

    def __init__(self, behind):
        self.behind = behind

    def time(self):
        return time.time() - self.behind


runtime = nuvom.configure(clock=Behind(56 * 60))
refresh_manifest(".", runtime.settings.manifest_path)
ids = {"failed": [], "succeeded": []}
ids["interval_schedule"] = tasks.digest.schedule("platform", interval=20 * 60).id
for step in range(12):
    for i in range(2 + step % 3):
        ids["succeeded"].append(tasks.add.delay(i, step).id)
    for i in range((step * 7) % 5 + 1):
        tasks.resize.delay(64 + 32 * i)
    tasks.send_email.delay(f"user{step}@example.com", subject=f"weekly #{step}")
    if step % 3 == 0:
        tasks.flaky.delay(step)
    if step % 4 == 1:
        ids["failed"].append(tasks.explode.delay(f"round {step}").id)
    Worker(workers=2).run(burst=True)
    runtime.clock.behind -= 5 * 60
runtime.clock.behind = 0

ids["held"] = [tasks.call_api.delay(n).id for n in range(4)]
runtime.queue.pause_queue("reports", True)
ids["paused"] = [tasks.report.delay(name).id for name in ("weekly", "monthly", "yearly")]
ids["scheduled"] = [tasks.add.schedule(10, 20, in_=3600).id, tasks.add.schedule(1, 1, in_=7200).id]
ids["xss"] = tasks.echo.delay("<script>alert(1)</script>").id
ids["chord"] = chord([tasks.resize.s(w) for w in (64, 128, 256, 512)], tasks.thumbnails.s()).delay().id
ids["chain"] = chain(tasks.add.s(2, 3), tasks.explode.si("in a chain"), tasks.add.s(1)).delay().id
cron = tasks.digest.schedule("sales", cron="0 9 * * 1")
runtime.queue.pause_schedule(cron.id, True)
ids["cron_schedule"] = cron.id
Worker(workers=2).run(burst=True)
ids["hold"] = tasks.hold.delay(".").id
print(json.dumps(ids))
"""


@dataclass
class Site:
    """A dashboard serving a filled project."""

    project: Project
    url: str
    ids: dict[str, Any] = field(default_factory=dict)

    def api(self, path: str, **kwargs: Any) -> Any:
        return request(self.url + path.lstrip("/"), **kwargs)[1]

    def csrf(self) -> str:
        return str(self.api("/api/csrf")["csrf_token"])

    def post(self, path: str, body: dict[str, Any] | None = None) -> tuple[int, Any]:
        return request(self.url + path.lstrip("/"), method="POST", body=body,
                       headers={"X-CSRF-Token": self.csrf()})  # fmt: skip

    def job(self, job_id: str) -> dict[str, Any]:
        return dict(self.api(f"/api/jobs/{job_id}"))


def request(
    url: str,
    *,
    method: str = "GET",
    body: dict[str, Any] | None = None,
    headers: dict[str, str] | None = None,
    form: dict[str, str] | None = None,
) -> tuple[int, Any]:
    """``(status, JSON or text)`` of one HTTP request; an error status is returned, not raised."""
    data = None
    sent = dict(headers or {})
    if body is not None:
        data = json.dumps(body).encode()
        sent["Content-Type"] = "application/json"
    elif form is not None:
        from urllib.parse import urlencode

        data = urlencode(form).encode()
        sent["Content-Type"] = "application/x-www-form-urlencoded"
    elif method != "GET":
        data = b""
    req = urllib.request.Request(url, data=data, method=method, headers=sent)
    try:
        with urllib.request.urlopen(req, timeout=10) as answer:
            return answer.status, _decoded(answer.headers, answer.read())
    except urllib.error.HTTPError as exc:
        with exc:
            return exc.code, _decoded(exc.headers, exc.read())


def _decoded(headers: Any, raw: bytes) -> Any:
    if "json" in (headers.get("content-type") or ""):
        return json.loads(raw)
    return raw.decode("utf-8", "replace")


def start_dashboard(project: Project, *args: str, **env: str) -> tuple[Any, str]:
    """``nuvom dashboard --port 0 ARGS`` in the project; its process and its address."""
    proc = project.start([*nuvom_command(), "dashboard", "--port", "0", *args], **env)
    line = proc.wait_for_output("nuvom dashboard on", timeout=START_SECS)
    match = STARTED.search(line)
    assert match, line
    url = match.group(1)
    wait_for(lambda: _answers(url), timeout=START_SECS, what=f"{url} to answer")
    return proc, url


def _answers(url: str) -> bool:
    try:
        request(url + "api/csrf")  # any answer will do (401 when it wants a token)
    except OSError:
        return False
    return True


def fill(project: Project) -> dict[str, Any]:
    """Write the tasks, run the producer; the ids it reports."""
    project.write("tasks.py", TASKS)
    done = project.python(FILL, timeout=120)
    assert done.returncode == 0, done.stderr
    return dict(json.loads(done.stdout.strip().splitlines()[-1]))


def build_site(project: Project) -> Site:
    """The filled project with a live worker running ``hold`` (its job RUNNING), a lost one
    (killed), and the dashboard."""
    ids = fill(project)
    live = project.start_worker("--queues", "slow", "--workers", "2", wait=False)
    lost = project.start_worker("--queues", "nothing", wait=False, NUVOM_LEASE_SECS="1")
    _, url = start_dashboard(project)
    site = Site(project, url, ids)
    pids = {live.pid, lost.pid}
    # A worker records itself just after it logs "started:": wait for both records.
    wait_for(lambda: pids <= {w["pid"] for w in site.api("/api/workers")}, timeout=START_SECS,
             what="both workers to register")  # fmt: skip
    lost.popen.kill()  # no goodbye: its record stays, its heartbeat goes stale
    wait_for(lambda: site.job(ids["hold"])["status"] == "RUNNING", timeout=START_SECS,
             what="the hold job to run")  # fmt: skip
    wait_for(lambda: [w["status"] for w in site.api("/api/workers")].count("lost") == 1,
             timeout=START_SECS, what="the killed worker to be lost")  # fmt: skip
    return site


@contextmanager
def browser() -> Iterator[Any]:
    """Debian's Chromium driven by Playwright (sync API)."""
    from playwright.sync_api import sync_playwright

    if not Path(CHROMIUM).exists() and shutil.which("chromium") is None:
        import os

        import pytest

        problem = f"no Chromium at {CHROMIUM} (apt-get install chromium)"
        if os.environ.get("CI"):
            pytest.fail(problem)
        pytest.skip(problem)
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=CHROMIUM)
        try:
            yield launched
        finally:
            launched.close()


def screenshot(page: Any, name: str) -> None:
    """Take the page's screenshot (the viewport: 1280x800); with ``NUVOM_SCREENSHOTS=1`` save
    it as docs/screenshots/NAME.png, and the page in its dark theme as NAME-dark.png (so a
    plain test run leaves the tree as it was)."""
    shot = page.screenshot()
    assert shot.startswith(b"\x89PNG"), "the browser drew the page"
    if not SAVE_SCREENSHOTS:
        return
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    (SCREENSHOTS / f"{name}.png").write_bytes(shot)
    page.emulate_media(color_scheme="dark")
    try:
        (SCREENSHOTS / f"{name}-dark.png").write_bytes(page.screenshot())
    finally:
        page.emulate_media(color_scheme="light")
