"""What checking calls against declared signatures costs, and a worker's start from an
exported task list: a generated project of 500 task modules.

    python benchmarks/versions.py            # N=5000 enqueues by name
    python benchmarks/versions.py --n 20000 --tasks 500

1. Enqueue by name (``enqueue(Job(name, args))``, as a service that cannot import the
   tasks does) of N jobs cycling over the 500 declared tasks, on a fresh SQLite store:
   once with the manifest (each call bound to its task's parameters, read by ``ast``),
   once with no manifest (nothing to check against). Reported: both rates and the ratio.
2. ``nuvom runworker --burst`` on an empty queue with ``NUVOM_MANIFEST_PATH`` pointing at
   ``nuvom discover tasks --export``'s file, under ``python -X importtime``: wall time to
   exit, and how many of the 500 task modules it imported (the promise: none).
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

TASK_SOURCE = """
from nuvom import task


@task(version={version})
def task_{i}(order_id: int, amount_cents: int, currency: str = "EUR"):
    return order_id
"""
PRODUCER = """
import sys
import time

from nuvom.job import Job
from nuvom.queue import enqueue

n, tasks = int(sys.argv[1]), int(sys.argv[2])
names = [f"task_{{i}}" for i in range(tasks)]
started = time.perf_counter()
for i in range(n):
    enqueue(Job(names[i % tasks], args=(i, 100)))
print(n / (time.perf_counter() - started))
"""


def _project(tasks: int) -> Path:
    root = Path(tempfile.mkdtemp(prefix="nuvom-versions-"))
    for i in range(tasks):
        (root / f"tasks_{i}.py").write_text(TASK_SOURCE.format(i=i, version=1 + i % 3))
    (root / "produce.py").write_text(PRODUCER.format())
    return root


def _env(root: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("NUVOM_")}
    env.update(NUVOM_SQLITE_DB_PATH=str(root / f"nuvom-{time.monotonic_ns()}.db"), **extra)
    return env


def _nuvom(*args: str, root: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "nuvom", *args], cwd=root, env=env,
                          capture_output=True, text=True, check=True)  # fmt: skip


def enqueue_rates(root: Path, n: int, tasks: int) -> tuple[float, float]:
    exported = root / ".nuvom_tasks.json"
    _nuvom("discover", "tasks", "--export", str(exported), root=root, env=_env(root))
    rates = []
    for manifest in (exported, root / "no-manifest.json"):
        env = _env(root, NUVOM_MANIFEST_PATH=str(manifest))
        out = subprocess.run([sys.executable, "produce.py", str(n), str(tasks)], cwd=root,
                             env=env, capture_output=True, text=True, check=True)  # fmt: skip
        rates.append(float(out.stdout.strip()))
    return rates[0], rates[1]


def worker_start(root: Path, tasks: int) -> tuple[float, int]:
    env = _env(root, NUVOM_MANIFEST_PATH=str(root / ".nuvom_tasks.json"))
    started = time.perf_counter()
    run = subprocess.run([sys.executable, "-X", "importtime", "-m", "nuvom", "runworker",
                          "--burst"], cwd=root, env=env, capture_output=True, text=True,
                         check=True)  # fmt: skip
    took = time.perf_counter() - started
    imported = {
        line.rsplit("|", 1)[-1].strip()
        for line in run.stderr.splitlines()
        if line.startswith("import time:") and "tasks_" in line
    }
    return took, len(imported)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=5_000)
    parser.add_argument("--tasks", type=int, default=500)
    options = parser.parse_args()
    root = _project(options.tasks)
    try:
        checked, unchecked = enqueue_rates(root, options.n, options.tasks)
        took, imported = worker_start(root, options.tasks)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    print(f"enqueue by name, {options.tasks} declared tasks, sqlite, N={options.n}")
    print(f"  checked against the manifest  {checked:>10,.0f}/s")
    print(f"  no manifest (unchecked)       {unchecked:>10,.0f}/s")
    print(f"  ratio                         {checked / unchecked:>10.2f}x")
    print(f"worker start from the exported list ({options.tasks} tasks), --burst, empty queue")
    print(f"  wall time to exit             {took:>10.2f} s")
    print(f"  task modules imported         {imported:>10d}  (target: 0)")


if __name__ == "__main__":
    main()
