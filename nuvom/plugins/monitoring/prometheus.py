"""The Prometheus exporter: job counters and durations from the event bus, worker gauges read
at scrape time, served on ``NUVOM_PROMETHEUS_HOST:NUVOM_PROMETHEUS_PORT`` (/metrics, and / for people).

Enable it in ``.nuvom_plugins.toml``:
``prometheus = ["nuvom.plugins.monitoring.prometheus:PrometheusPlugin"]``.
"""

from __future__ import annotations

import bisect
import errno
import html
import itertools
import logging
import sys
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, Any, cast

from nuvom.errors import PluginError
from nuvom.plugins.contracts import API_VERSION, Extras, MetricsProvider, Plugin

if TYPE_CHECKING:
    from nuvom.config import Settings
    from nuvom.events import JobEvent

log = logging.getLogger("nuvom.plugins.prometheus")

INSTALL_HINT = "the Prometheus exporter needs prometheus_client: pip install 'nuvom[prometheus]'"
SERVER_STOP_SECS = 5.0  # how long stop() waits for the HTTP thread to end
SERVER_POLL_SECS = 0.1  # the HTTP loop notices shutdown this often (bounds the worker's exit delay)
# Job durations, in seconds: from a millisecond job to a long batch step.
DURATION_BUCKETS_SECS = (0.001, 0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300)
OUTCOME_STATUSES = {"succeeded", "failed", "retried"}

METRICS_HELP = {
    "nuvom_worker_count": "Threads (or processes) this worker runs jobs on",
    "nuvom_inflight_jobs": "Jobs this worker holds: running or claimed and waiting for a thread",
    "nuvom_queue_size": "Jobs waiting in the queue (due or scheduled), per queue",
    "nuvom_jobs_total": "Attempts that ended, by task and status (succeeded, failed, retried)",
    "nuvom_job_duration_seconds": "How long attempts ran, by task",
    "nuvom_job_retries_total": "Attempts that ended in a retry, by task",
}


def _client() -> Any:
    try:
        import prometheus_client
    except ImportError:
        raise PluginError(INSTALL_HINT, spec=f"{__name__}:PrometheusPlugin") from None
    return prometheus_client


class _GaugeCollector:
    """Worker gauges, read from the metrics provider each time Prometheus scrapes."""

    def __init__(self, metrics: MetricsProvider) -> None:
        self.metrics = metrics

    def collect(self) -> Iterator[Any]:
        from prometheus_client.core import GaugeMetricFamily

        workers = GaugeMetricFamily("nuvom_worker_count", METRICS_HELP["nuvom_worker_count"])
        workers.add_metric([], self.metrics.worker_count())
        inflight = GaugeMetricFamily("nuvom_inflight_jobs", METRICS_HELP["nuvom_inflight_jobs"])
        inflight.add_metric([], self.metrics.inflight())
        sizes = GaugeMetricFamily(
            "nuvom_queue_size", METRICS_HELP["nuvom_queue_size"], labels=["queue"]
        )
        try:
            for queue, size in sorted(self.metrics.queue_sizes().items()):
                sizes.add_metric([queue], size)
        except Exception as exc:  # the backend may be briefly unreachable; the rest still scrapes
            log.warning("reading queue sizes for Prometheus failed: %s", exc)
        yield from (workers, inflight, sizes)


class _JobStats:
    """Job counters and durations, kept as plain numbers and turned into metrics when scraped.

    An event costs one lock and a few dict updates, where prometheus_client's own
    Counter and Histogram would take several locks per job on the worker's hot path.
    """

    def __init__(self, buckets: tuple[float, ...] = DURATION_BUCKETS_SECS) -> None:
        self.buckets = buckets
        self._lock = threading.Lock()
        self._jobs: dict[tuple[str, str], int] = {}
        self._retries: dict[str, int] = {}
        # per task: a count per bucket (not cumulative), then +Inf's, and the sum of durations
        self._durations: dict[str, tuple[list[int], list[float]]] = {}

    def record(self, task: str, status: str, duration: float | None) -> None:
        with self._lock:
            key = (task, status)
            self._jobs[key] = self._jobs.get(key, 0) + 1
            if status == "retried":
                self._retries[task] = self._retries.get(task, 0) + 1
            if duration is not None:
                counts, total = self._durations.get(task) or self._durations.setdefault(
                    task, ([0] * (len(self.buckets) + 1), [0.0])
                )
                counts[bisect.bisect_left(self.buckets, duration)] += 1
                total[0] += duration

    def collect(self) -> Iterator[Any]:
        from prometheus_client import utils
        from prometheus_client.core import CounterMetricFamily, HistogramMetricFamily

        go_float = cast(Callable[[float], str], utils.floatToGoString)  # as Prometheus writes le

        with self._lock:
            jobs = dict(self._jobs)
            retries = dict(self._retries)
            durations = {t: (list(c), s[0]) for t, (c, s) in self._durations.items()}
        counts = CounterMetricFamily(
            "nuvom_jobs", METRICS_HELP["nuvom_jobs_total"], labels=["task", "status"]
        )
        for (task, status), value in sorted(jobs.items()):
            counts.add_metric([task, status], value)
        retried = CounterMetricFamily(
            "nuvom_job_retries", METRICS_HELP["nuvom_job_retries_total"], labels=["task"]
        )
        for task, value in sorted(retries.items()):
            retried.add_metric([task], value)
        histogram = HistogramMetricFamily(
            "nuvom_job_duration_seconds",
            METRICS_HELP["nuvom_job_duration_seconds"],
            labels=["task"],
        )
        bounds = [go_float(b) for b in self.buckets] + ["+Inf"]
        for task, (per_bucket, total) in sorted(durations.items()):
            cumulative = list(itertools.accumulate(per_bucket))
            histogram.add_metric([task], list(zip(bounds, cumulative, strict=True)), total)
        yield from (counts, retried, histogram)


class _Server(ThreadingHTTPServer):
    # On Windows SO_REUSEADDR lets a second server take a port in use; the clear
    # "port in use" error needs exclusive binding there.
    allow_reuse_address = sys.platform != "win32"
    daemon_threads = True


def _page(url_host: str, port: int) -> bytes:
    rows = "".join(
        f"<li><code>{html.escape(name)}</code>: {html.escape(text)}</li>"
        for name, text in METRICS_HELP.items()
    )
    body = (
        "<!doctype html><html><head><meta charset='utf-8'><title>nuvom metrics</title></head>"
        f"<body><h1>nuvom Prometheus exporter</h1><p>Running on {html.escape(url_host)}:{port}. "
        "Prometheus scrapes <a href='/metrics'>/metrics</a>.</p>"
        f"<h2>Metrics</h2><ul>{rows}</ul></body></html>"
    )
    return body.encode("utf-8")


def _handler(registry: Any, page: bytes) -> type[BaseHTTPRequestHandler]:
    from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            path = self.path.split("?", 1)[0]
            if path == "/metrics":
                self._send(200, CONTENT_TYPE_LATEST, generate_latest(registry))
            elif path == "/":
                self._send(200, "text/html; charset=utf-8", page)
            else:
                self._send(404, "text/plain; charset=utf-8", b"not found: try /metrics\n")

        def _send(self, code: int, content_type: str, body: bytes) -> None:
            self.send_response(code)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            log.debug("%s %s", self.address_string(), format % args)

    return Handler


class PrometheusPlugin(Plugin):
    """Serves nuvom's metrics for Prometheus while a worker runs."""

    api_version = API_VERSION
    name = "prometheus"
    provides = ("monitoring", "lifecycle")

    def __init__(self) -> None:
        self.registry: Any = None
        self.server: _Server | None = None
        self.host: str | None = None
        self.port: int | None = None
        self._thread: threading.Thread | None = None
        self._gauges: _GaugeCollector | None = None
        self._stats: _JobStats | None = None

    @property
    def url(self) -> str | None:
        return f"http://{self.host}:{self.port}" if self.port is not None else None

    def start(self, settings: Settings, extras: Extras | None = None) -> None:
        client = _client()
        self.registry = client.CollectorRegistry(auto_describe=True)
        self._stats = _JobStats()
        self._gauges = _GaugeCollector(extras.metrics if extras else MetricsProvider())
        self.registry.register(self._stats)
        self.registry.register(self._gauges)
        self._serve(settings.prometheus_host, settings.prometheus_port)

    def _serve(self, host: str, port: int) -> None:
        try:
            server = _Server((host, port), _handler(self.registry, b""))
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE or getattr(exc, "winerror", None) == 10048:
                raise PluginError(
                    f"the Prometheus exporter cannot listen on {host}:{port}: the port is in use "
                    "(set NUVOM_PROMETHEUS_PORT to a free port, or 0 for any)"
                ) from None
            raise PluginError(
                f"the Prometheus exporter cannot listen on {host}:{port}: {exc.strerror or exc}"
            ) from None
        self.server = server
        self.host, self.port = host, int(server.server_address[1])
        server.RequestHandlerClass = _handler(self.registry, _page(self.host, self.port))
        self._thread = threading.Thread(
            target=server.serve_forever,
            args=(SERVER_POLL_SECS,),
            name="nuvom-prometheus",
            daemon=True,
        )
        self._thread.start()
        log.info("Prometheus metrics on %s/metrics", self.url)

    def update_runtime(self, extras: Extras) -> None:
        if self._gauges is not None:
            self._gauges.metrics = extras.metrics

    def on_event(self, event: JobEvent) -> None:
        stats = self._stats
        if stats is not None and event.name in OUTCOME_STATUSES:
            duration = event.duration_secs
            seconds = None if duration is None else max(0.0, duration)
            stats.record(event.job.func_name, event.name, seconds)

    def stop(self) -> None:
        server, self.server = self.server, None
        if server is not None:
            server.shutdown()
            server.server_close()
        if self._thread is not None:
            self._thread.join(SERVER_STOP_SECS)
            self._thread = None
        self.port = None
