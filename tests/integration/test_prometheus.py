"""The Prometheus exporter, scraped over HTTP by a real client while a worker runs jobs.

In-process first (every metric's value checked), then the real ``nuvom runworker``
with the plugin enabled from ``.nuvom_plugins.toml``, and a port already in use.
"""

from __future__ import annotations

import re
import signal
import socket
import threading
import urllib.error
from pathlib import Path

import pytest

import nuvom
from nuvom.job import Job
from nuvom.plugins.loader import manager_for
from nuvom.plugins.monitoring.prometheus import PrometheusPlugin
from nuvom.queue import enqueue_many
from nuvom.registry import TaskRegistry
from nuvom.task import task
from nuvom.worker import Worker

from .helpers import TASKS, Project, posix_only, wait_for
from .plugin_helpers import PROMETHEUS_SPEC, fetch, scrape, value

EVENT_WAIT_SECS = 10.0  # upper bound for a worker thread to reach the held task
URL_LINE = re.compile(r"Prometheus metrics on (http://127\.0\.0\.1:\d+)/metrics")


def _enable_prometheus(folder: Path) -> None:
    (folder / ".nuvom_plugins.toml").write_text(
        f'[plugins]\nprometheus = ["{PROMETHEUS_SPEC}"]\n', encoding="utf-8"
    )


def _exporter(worker: Worker) -> PrometheusPlugin | None:
    manager = manager_for(worker.runtime)
    for record in list(manager.records):
        if isinstance(record.plugin, PrometheusPlugin) and record.plugin.port is not None:
            return record.plugin
    return None


@pytest.mark.timeout(60)
def test_metrics_follow_a_running_worker(tmp_path: Path) -> None:
    _enable_prometheus(tmp_path)
    nuvom.configure(
        queue_backend="memory",
        result_backend="memory",
        registry=TaskRegistry(),
        prometheus_port=0,  # any free port; the plugin says which
    )
    entered, release = threading.Event(), threading.Event()

    @task
    def add(x: int, y: int) -> int:
        return x + y

    @task(retries=1, retry_delay_secs=0)
    def flaky() -> None:
        raise RuntimeError("always")

    @task
    def hold() -> str:
        entered.set()
        release.wait(EVENT_WAIT_SECS)
        return "held"

    add.map([(n, n) for n in range(5)])
    flaky.delay()
    add.schedule(1, 1, in_=3600)
    add.schedule(2, 2, in_=3600)
    held = hold.delay()
    worker = Worker(workers=2)
    running = threading.Thread(target=worker.run, name="test-worker")
    running.start()
    try:
        exporter = wait_for(lambda: _exporter(worker), what="the exporter to listen")
        assert exporter.url is not None
        base = exporter.url
        assert entered.wait(EVENT_WAIT_SECS)

        def settled() -> dict | None:  # type: ignore[type-arg]
            samples = scrape(base)
            done = value(samples, "nuvom_jobs_total", task="add", status="succeeded") == 5
            failed = value(samples, "nuvom_jobs_total", task="flaky", status="failed") == 1
            return samples if done and failed else None

        samples = wait_for(settled, what="5 add successes and 1 flaky failure in /metrics")
        assert value(samples, "nuvom_worker_count") == 2
        assert value(samples, "nuvom_inflight_jobs") == 1  # hold is running
        assert value(samples, "nuvom_queue_size", queue="all") == 2  # the scheduled two
        assert value(samples, "nuvom_jobs_total", task="flaky", status="retried") == 1
        assert value(samples, "nuvom_job_retries_total", task="flaky") == 1
        assert value(samples, "nuvom_job_duration_seconds_count", task="add") == 5
        assert value(samples, "nuvom_job_duration_seconds_count", task="flaky") == 2
        assert value(samples, "nuvom_jobs_total", task="hold", status="succeeded") is None

        release.set()
        assert held.get(timeout=EVENT_WAIT_SECS) == "held"
        after = wait_for(
            lambda: (
                (s := scrape(base))
                and value(s, "nuvom_jobs_total", task="hold", status="succeeded") == 1
                and s
            ),
            what="hold's success in /metrics",
        )
        assert value(after, "nuvom_inflight_jobs") == 0

        status, content_type, page = fetch(f"{base}/")
        assert status == 200
        assert content_type.startswith("text/html")
        assert "/metrics" in page
        for name in ("nuvom_worker_count", "nuvom_queue_size", "nuvom_job_duration_seconds"):
            assert name in page
    finally:
        release.set()
        worker.stop()
        running.join(EVENT_WAIT_SECS)
    assert not running.is_alive()
    with pytest.raises(urllib.error.URLError):
        fetch(f"{base}/metrics")  # stopped with the worker


@pytest.mark.slow
@pytest.mark.timeout(90)
@posix_only
def test_runworker_serves_metrics_and_stops_them_on_sigterm(project: Project) -> None:
    project.write("tasks.py", TASKS)
    _enable_prometheus(project.root)
    worker = project.start_worker("-w", "3", NUVOM_PROMETHEUS_PORT="0")
    line = worker.wait_for_output("Prometheus metrics on")
    match = URL_LINE.search(line)
    assert match, line
    base = match.group(1)
    project.configure()
    jobs = enqueue_many([Job("add", args=[n, 1]) for n in range(4)])
    assert [job.get(timeout=30) for job in jobs] == [1, 2, 3, 4]

    samples = wait_for(
        lambda: (
            (s := scrape(base))
            and value(s, "nuvom_jobs_total", task="add", status="succeeded") == 4
            and s
        ),
        what="4 successes in /metrics",
    )
    assert value(samples, "nuvom_worker_count") == 3
    assert value(samples, "nuvom_queue_size", queue="all") == 0
    assert value(samples, "nuvom_job_duration_seconds_count", task="add") == 4

    worker.send(signal.SIGTERM)
    assert worker.wait() == 0, worker.describe()
    assert "plugin prometheus stopped" in worker.stderr
    with pytest.raises(urllib.error.URLError):
        fetch(f"{base}/metrics")


@pytest.mark.slow
@pytest.mark.timeout(90)
def test_a_port_in_use_is_one_clear_error_and_the_worker_still_works(project: Project) -> None:
    project.write("tasks.py", TASKS)
    _enable_prometheus(project.root)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        project.configure()
        job = enqueue_many([Job("add", args=[20, 22])])[0]

        worker = project.start_worker("--burst", wait=False, NUVOM_PROMETHEUS_PORT=str(port))
        assert worker.wait() == 0, worker.describe()

    assert job.get(timeout=10) == 42
    assert f"cannot listen on 127.0.0.1:{port}: the port is in use" in worker.stderr
    assert "Traceback" not in worker.stderr
    assert "processed 1: 1 ok" in worker.stderr
