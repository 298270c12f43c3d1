"""The Prometheus exporter's arithmetic, without HTTP: what an event adds to which sample."""

from __future__ import annotations

import sys

import pytest

from nuvom.errors import PluginError
from nuvom.job import Job
from nuvom.plugins.contracts import Extras, MetricsProvider
from nuvom.plugins.monitoring.prometheus import PrometheusPlugin, _GaugeCollector, _JobStats


def samples(collector: object) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    from prometheus_client import CollectorRegistry
    from prometheus_client.exposition import generate_latest
    from prometheus_client.parser import text_string_to_metric_families

    registry = CollectorRegistry()
    registry.register(collector)  # type: ignore[arg-type]
    text = generate_latest(registry).decode()
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def test_counts_retries_and_a_cumulative_histogram_with_le_bounds():
    stats = _JobStats(buckets=(0.1, 1.0))
    stats.record("add", "succeeded", 0.1)  # on a bound: counts in that bucket (le)
    stats.record("add", "succeeded", 0.5)
    stats.record("add", "failed", 7.0)
    stats.record("add", "retried", None)  # no timing known: counted, not observed

    got = samples(stats)

    assert got[("nuvom_jobs_total", (("status", "succeeded"), ("task", "add")))] == 2
    assert got[("nuvom_jobs_total", (("status", "failed"), ("task", "add")))] == 1
    assert got[("nuvom_jobs_total", (("status", "retried"), ("task", "add")))] == 1
    assert got[("nuvom_job_retries_total", (("task", "add"),))] == 1
    bucket = "nuvom_job_duration_seconds_bucket"
    assert got[(bucket, (("le", "0.1"), ("task", "add")))] == 1
    assert got[(bucket, (("le", "1.0"), ("task", "add")))] == 2
    assert got[(bucket, (("le", "+Inf"), ("task", "add")))] == 3
    assert got[("nuvom_job_duration_seconds_count", (("task", "add"),))] == 3
    assert got[("nuvom_job_duration_seconds_sum", (("task", "add"),))] == pytest.approx(7.6)


def test_gauges_read_the_metrics_provider_when_scraped():
    sizes = {"default": 3, "mail": 1}
    gauges = _GaugeCollector(
        MetricsProvider(queue_sizes=lambda: sizes, inflight=lambda: 2, worker_count=lambda: 8)
    )
    first = samples(gauges)
    sizes["mail"] = 5

    assert first[("nuvom_queue_size", (("queue", "default"),))] == 3
    assert first[("nuvom_inflight_jobs", ())] == 2
    assert first[("nuvom_worker_count", ())] == 8
    assert samples(gauges)[("nuvom_queue_size", (("queue", "mail"),))] == 5


def test_events_before_start_or_not_outcomes_are_ignored():
    from nuvom.events import JobEvent

    plugin = PrometheusPlugin()
    plugin.on_event(JobEvent("succeeded", Job("add"), 0.0))  # not started: nothing to count

    plugin._stats = stats = _JobStats()
    plugin.on_event(JobEvent("enqueued", Job("add"), 0.0))
    plugin.on_event(JobEvent("started", Job("add"), 0.0))

    assert not [k for k in samples(stats) if k[0] == "nuvom_jobs_total"]


def test_without_prometheus_client_start_says_what_to_install(monkeypatch):
    import nuvom

    monkeypatch.setitem(sys.modules, "prometheus_client", None)
    settings = nuvom.configure(prometheus_port=0).settings

    with pytest.raises(PluginError, match=r"pip install 'nuvom\[prometheus\]'"):
        PrometheusPlugin().start(settings, Extras(role="worker"))
