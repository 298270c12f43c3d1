"""What plugins cost a worker: drain rate with no plugins, with a lifecycle plugin that sees
every job event, and with the Prometheus exporter; and how long loading plugins takes.

    python benchmarks/plugin_overhead.py              # N=20000 no-op jobs, memory and SQLite
    python benchmarks/plugin_overhead.py --n 5000 --rounds 5

Each run drains N no-op jobs with ``Worker(workers=4).run(burst=True)`` in this
process, in a fresh temporary directory, timed from ``run()`` to the last stored
outcome (plugins start inside that time; their shutdown is not); the best of
``--rounds`` is reported.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
COUNTER_PLUGIN = """
from nuvom.plugins.contracts import Plugin


class Counter(Plugin):
    name = "counter"
    provides = ["lifecycle"]

    def __init__(self):
        self.seen = 0

    def start(self, settings, extras=None):
        pass

    def on_event(self, event):
        self.seen += 1

    def stop(self):
        pass
"""
PLUGINS = {
    "none": "",
    "lifecycle": '[plugins]\nlifecycle = ["bench_counter_plugin:Counter"]\n',
    "prometheus": (
        '[plugins]\nprometheus = ["nuvom.plugins.monitoring.prometheus:PrometheusPlugin"]\n'
    ),
}


def drain(backend: str, plugins: str, n: int) -> tuple[float, float]:
    """(jobs per second, seconds to start and stop the plugins) for one fresh run."""
    import nuvom
    from nuvom.plugins.loader import PluginManager
    from nuvom.registry import TaskRegistry
    from nuvom.task import task
    from nuvom.worker import Worker

    with tempfile.TemporaryDirectory(prefix="nuvom-bench-") as folder:
        os.chdir(folder)
        Path(folder, "bench_counter_plugin.py").write_text(COUNTER_PLUGIN, encoding="utf-8")
        Path(folder, ".nuvom_plugins.toml").write_text(PLUGINS[plugins], encoding="utf-8")
        sys.path.insert(0, folder)
        try:
            runtime = nuvom.configure(
                queue_backend=backend,
                result_backend=backend,
                registry=TaskRegistry(),
                prometheus_port=0,
                sqlite_synchronous="normal",
            )

            @task
            def noop() -> None:
                return None

            loading = time.perf_counter()
            manager = PluginManager(runtime.settings, runtime.events)
            manager.load()
            load_secs = time.perf_counter() - loading

            noop.map([() for _ in range(n)])
            last_outcome = [0.0]
            worker = Worker(
                workers=4, on_outcome=lambda _: last_outcome.__setitem__(0, time.perf_counter())
            )
            started = time.perf_counter()
            worker.run(burst=True)
            # To the last stored outcome: plugin start-up is inside, shutdown is not.
            elapsed = last_outcome[0] - started
            assert worker.stats.succeeded == n, worker.stats
            return n / elapsed, load_secs
        finally:
            nuvom.reset()
            sys.path.remove(folder)
            sys.modules.pop("bench_counter_plugin", None)
            os.chdir(HERE)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=20_000, help="jobs per drain")
    parser.add_argument("--rounds", type=int, default=3, help="runs per case; best is kept")
    args = parser.parse_args()
    print(f"{args.n} no-op jobs, Worker(workers=4).run(burst=True), best of {args.rounds}")
    print(f"{'backend':8} {'plugins':11} {'jobs/s':>9} {'vs none':>8} {'plugin load ms':>15}")
    for backend in ("memory", "sqlite"):
        baseline = None
        for plugins in PLUGINS:
            runs = [drain(backend, plugins, args.n) for _ in range(args.rounds)]
            rate = max(rate for rate, _ in runs)
            load_ms = statistics.median(load for _, load in runs) * 1000
            baseline = baseline or rate
            print(f"{backend:8} {plugins:11} {rate:9.0f} {rate / baseline:8.2f} {load_ms:15.1f}")


if __name__ == "__main__":
    main()
