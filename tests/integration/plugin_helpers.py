"""Plugins the integration tests install, and a Prometheus scrape through a real HTTP client."""

from __future__ import annotations

import textwrap
import urllib.request
from pathlib import Path

PROMETHEUS_SPEC = "nuvom.plugins.monitoring.prometheus:PrometheusPlugin"
SCRAPE_TIMEOUT_SECS = 5.0

# A result backend kept as one JSON file per job under .jsonresults/ in the working
# directory, so a producer process and a worker process share it.
JSON_RESULTS_PLUGIN = """
import json
import os
from pathlib import Path

from nuvom.plugins.contracts import API_VERSION, Plugin
from nuvom.plugins.registry import register_result_backend
from nuvom.result_backends.base import BaseResultBackend

FOLDER = Path(".jsonresults")


class JsonFileResults(BaseResultBackend):
    name = "jsonfiles"
    shared_across_processes = True

    def _write(self, job_id, data):
        FOLDER.mkdir(exist_ok=True)
        path = FOLDER / f"{job_id}.json"
        scratch = path.with_suffix(".tmp")
        scratch.write_text(json.dumps(data), encoding="utf-8")
        os.replace(scratch, path)

    def _read(self, job_id):
        path = FOLDER / f"{job_id}.json"
        return json.loads(path.read_text(encoding="utf-8")) if path.exists() else {}

    def set_result(self, job_id, result):
        self._write(job_id, {"result": result})

    def get_result(self, job_id):
        return self._read(job_id).get("result")

    def set_error(self, job_id, error):
        info = self.describe_error(error)
        self._write(job_id, {"error": f"{info.type}: {info.message}"})

    def get_error(self, job_id):
        return self._read(job_id).get("error")


class JsonFilePlugin(Plugin):
    api_version = API_VERSION
    name = "jsonfiles"
    provides = ["result_backend"]

    def start(self, settings, extras=None):
        register_result_backend("jsonfiles", JsonFileResults)

    def stop(self):
        pass
"""

BROKEN_PLUGIN = """
raise ImportError("this plugin needs a driver that is not installed")
"""


def install_distribution(site: Path, module: str, text: str, version: str = "0.3.1") -> None:
    """What pip leaves for a distribution with a ``nuvom.plugins`` entry point."""
    (site / f"{module}.py").parent.mkdir(parents=True, exist_ok=True)
    (site / f"{module}.py").write_text(textwrap.dedent(text), encoding="utf-8")
    info = site / f"nuvom_jsonfiles-{version}.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(
        f"Metadata-Version: 2.1\nName: nuvom-jsonfiles\nVersion: {version}\n", encoding="utf-8"
    )
    (info / "entry_points.txt").write_text(
        f"[nuvom.plugins]\njsonfiles = {module}:JsonFilePlugin\n", encoding="utf-8"
    )


def fetch(url: str) -> tuple[int, str, str]:
    """GET ``url``: status, content type, body."""
    with urllib.request.urlopen(url, timeout=SCRAPE_TIMEOUT_SECS) as response:
        body = response.read().decode("utf-8")
        return response.status, response.headers.get("Content-Type", ""), body


def scrape(base_url: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of ``/metrics``, keyed by name and sorted labels, as Prometheus parses it."""
    from prometheus_client.parser import text_string_to_metric_families

    status, content_type, body = fetch(f"{base_url}/metrics")
    assert status == 200
    assert content_type.startswith("text/plain"), content_type
    samples = {}
    for family in text_string_to_metric_families(body):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def value(
    samples: dict[tuple[str, tuple[tuple[str, str], ...]], float], name: str, **labels: str
) -> float | None:
    return samples.get((name, tuple(sorted(labels.items()))))
