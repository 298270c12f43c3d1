"""The Prometheus exporter: job counters and durations from the event bus, worker gauges read
at scrape time, served on ``NUVOM_PROMETHEUS_HOST:NUVOM_PROMETHEUS_PORT`` (/metrics, and / for people).

Enable it in ``.nuvom_plugins.toml``:
``prometheus = ["nuvom.plugins.monitoring.prometheus:PrometheusPlugin"]``.
"""

from __future__ import annotations

import errno
import html
import logging
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, Any

from nuvom.errors import PluginError
from nuvom.plugins.contracts import API_VERSION, Extras, MetricsProvider, Plugin

if TYPE_CHECKING:
    from nuvom.config import Settings
    from nuvom.events import JobEvent

log = logging.getLogger("nuvom.plugins.prometheus")

INSTALL_HINT = "the Prometheus exporter needs prometheus_client: pip install 'nuvom[prometheus]'"
SERVER_STOP_SECS = 5.0  # how long stop() waits for the HTTP thread to end
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
        self.server: ThreadingHTTPServer | None = None
        self.host: str | None = None
        self.port: int | None = None
        self._thread: threading.Thread | None = None
        self._collector: _GaugeCollector | None = None
        self._jobs: Any = None
        self._durations: Any = None
        self._retries: Any = None

    @property
    def url(self) -> str | None:
        return f"http://{self.host}:{self.port}" if self.port is not None else None

    def start(self, settings: Settings, extras: Extras | None = None) -> None:
        client = _client()
        self.registry = client.CollectorRegistry(auto_describe=True)
        self._jobs = client.Counter(
            "nuvom_jobs", METRICS_HELP["nuvom_jobs_total"], ["task", "status"],
            registry=self.registry,
        )  # fmt: skip
        self._durations = client.Histogram(
            "nuvom_job_duration_seconds", METRICS_HELP["nuvom_job_duration_seconds"], ["task"],
            buckets=DURATION_BUCKETS_SECS, registry=self.registry,
        )  # fmt: skip
        self._retries = client.Counter(
            "nuvom_job_retries", METRICS_HELP["nuvom_job_retries_total"], ["task"],
            registry=self.registry,
        )  # fmt: skip
        self._collector = _GaugeCollector(extras.metrics if extras else MetricsProvider())
        self.registry.register(self._collector)
        self._serve(settings.prometheus_host, settings.prometheus_port)

    def _serve(self, host: str, port: int) -> None:
        try:
            server = ThreadingHTTPServer((host, port), _handler(self.registry, b""))
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE or getattr(exc, "winerror", None) == 10048:
                raise PluginError(
                    f"the Prometheus exporter cannot listen on {host}:{port}: the port is in use "
                    "(set NUVOM_PROMETHEUS_PORT to a free port, or 0 for any)"
                ) from None
            raise PluginError(
                f"the Prometheus exporter cannot listen on {host}:{port}: {exc.strerror or exc}"
            ) from None
        server.daemon_threads = True
        self.server = server
        self.host, self.port = host, int(server.server_address[1])
        server.RequestHandlerClass = _handler(self.registry, _page(self.host, self.port))
        self._thread = threading.Thread(
            target=server.serve_forever, name="nuvom-prometheus", daemon=True
        )
        self._thread.start()
        log.info("Prometheus metrics on %s/metrics", self.url)

    def update_runtime(self, extras: Extras) -> None:
        if self._collector is not None:
            self._collector.metrics = extras.metrics

    def on_event(self, event: JobEvent) -> None:
        if event.name not in OUTCOME_STATUSES or self._jobs is None:
            return
        task = event.job.func_name
        self._jobs.labels(task, event.name).inc()
        if event.name == "retried":
            self._retries.labels(task).inc()
        duration = event.duration_secs
        if duration is not None:
            self._durations.labels(task).observe(max(0.0, duration))

    def stop(self) -> None:
        server, self.server = self.server, None
        if server is not None:
            server.shutdown()
            server.server_close()
        if self._thread is not None:
            self._thread.join(SERVER_STOP_SECS)
            self._thread = None
        self.port = None
